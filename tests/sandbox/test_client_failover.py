"""The CLI client across regions: failover with resume, server wait hints, numbered sends,
live messages in id order, and the one /command parser (against scripted local servers)."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.commands import Command, parse_command
from multiregion_chat.clients.endpoints import load_regions, region_names
from multiregion_chat.clients.failover import close_hint, nearest_first, retry_after
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.runtime.protocol.ids import new_id

Frame = dict[str, Any]


class World:
    """Regions sharing one history; a message sent in any is pushed to every open socket."""

    def __init__(self) -> None:
        self.history: list[Frame] = []
        self.regions: list[FakeRegion] = []

    def publish(self, body: str, user: str = "talker", live: bool = True) -> Frame:
        entry = {
            "room": "r",
            "id": new_id(),
            "sender": {"userId": user, "region": "x"},
            "body": body,
            "sentAt": "2026-11-29T05:00:00.000Z",
        }
        self.history.append(entry)
        if live:
            for region in self.regions:
                region.push({"type": "message", **entry})
        return entry


class FakeRegion:
    """One region's WebSocket API: join (with ``after``), send (numbered), ping, history."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.sockets: set[ServerConnection] = set()
        self.server: Server | None = None
        self.port = 0
        self.answer_pings = True
        self.refusals: list[Response] = []  # handshakes to refuse, in order
        self.close_with: tuple[int, str] | None = None  # close each connection after its join
        self.connects = 0
        self.tasks: set[asyncio.Future[None]] = set()
        world.regions.append(self)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/prod?userId=cli"

    async def start(self) -> FakeRegion:
        self.server = await serve(
            self.handle, "127.0.0.1", self.port, process_request=self.process_request
        )
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        """The region goes away: open connections close, new ones are refused."""
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.connects += 1
        return self.refusals.pop(0) if self.refusals else None

    def push(self, frame: Frame) -> None:
        for ws in list(self.sockets):
            task = asyncio.ensure_future(ws.send(json.dumps(frame)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def handle(self, ws: ServerConnection) -> None:
        self.sockets.add(ws)
        try:
            async for raw in ws:
                frame = json.loads(raw)
                reply = self.reply(frame)
                if reply is not None:
                    await ws.send(json.dumps({**reply, "ref": frame.get("ref")}))
                if frame["action"] == "join" and self.close_with is not None:
                    await ws.close(*self.close_with)
        finally:
            self.sockets.discard(ws)

    def reply(self, frame: Frame) -> Frame | None:
        match frame["action"]:
            case "join":
                after = frame.get("after")
                missed = [m for m in self.world.history if after and m["id"] > after]
                return {"type": "joined", "room": "r", "members": [], "missed": missed}
            case "send":
                entry = self.world.publish(frame["body"], user="cli")
                return {"type": "ack", "room": "r", "id": entry["id"], "seq": frame.get("seq")}
            case "ping":
                return {"type": "pong"} if self.answer_pings else None
        return {"type": "error", "code": "bad_request", "message": "unexpected"}


def refusal(status: int, headers: dict[str, str]) -> Response:
    return Response(status, HTTPStatus(status).phrase, Headers(headers), b"refused\n")


class Lines:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def stream(self) -> AsyncIterator[str]:
        while (line := await self.queue.get()) is not None:
            yield line

    def send(self, line: str) -> None:
        self.queue.put_nowait(line + "\n")

    def end(self) -> None:
        self.queue.put_nowait(None)


async def until_true(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def shown(out: io.StringIO) -> list[str]:
    return [line.rsplit(": ", 1)[1] for line in out.getvalue().splitlines() if "@x: " in line]


def test_the_client_fails_over_when_its_region_goes_away_without_loss_or_duplicate() -> None:
    async def scenario() -> tuple[str, list[float]]:
        world = World()
        first, second = await FakeRegion(world, "a").start(), await FakeRegion(world, "b").start()
        gate = asyncio.Event()
        delays: list[float] = []

        async def held(seconds: float) -> None:  # the backoff, held while the test acts
            delays.append(seconds)
            await gate.wait()

        out, lines = io.StringIO(), Lines()
        options = ClientOptions(backoff=Backoff(attempts=4, base=0.1, cap=0.2), sleep=held)
        client = asyncio.create_task(
            run_client([first.url, second.url], "r", lines.stream(), out, options)
        )
        try:
            await until_true(lambda: "* joined #r" in out.getvalue(), "the join")
            world.publish("m0")
            await until_true(lambda: shown(out) == ["m0"], "m0 live")
            await first.stop()
            await until_true(lambda: "* reconnecting in" in out.getvalue(), "the first backoff")
            world.publish("m1", live=False)  # sent while the client is away
            world.publish("m2", live=False)
            gate.set()
            await until_true(lambda: "* reconnected to" in out.getvalue(), "the failover")
            await until_true(lambda: shown(out) == ["m0", "m1", "m2"], "the catch-up")
            lines.send("mine")
            world.publish("m3")
            await until_true(lambda: "m3" in shown(out) and "mine" in shown(out), "live again")
            lines.end()
            assert await asyncio.wait_for(client, 20) == 0
        finally:
            client.cancel()
            await second.stop()
        return out.getvalue(), delays

    output, delays = asyncio.run(scenario())
    texts = [line.rsplit(": ", 1)[1] for line in output.splitlines() if "@x: " in line]
    assert texts[:3] == ["m0", "m1", "m2"] and sorted(texts[3:]) == ["m3", "mine"]  # each once
    assert "! cannot connect to ws://127.0.0.1:" in output  # region a refused ...
    assert output.count("* reconnected to") == 1  # ... so b took over at the next attempt
    assert len(delays) == 2


def test_no_pong_moves_to_the_next_region() -> None:
    async def scenario() -> str:
        world = World()
        mute, healthy = await FakeRegion(world, "a").start(), await FakeRegion(world, "b").start()
        mute.answer_pings = False

        async def no_wait(seconds: float) -> None:
            return None

        out, lines = io.StringIO(), Lines()
        options = ClientOptions(
            backoff=Backoff(attempts=3, base=0.1, cap=0.2),
            sleep=no_wait,
            ping_seconds=0.05,
            alive_seconds=0.5,  # no pong ever comes: how long it waits changes nothing
        )
        client = asyncio.create_task(
            run_client([mute.url, healthy.url], "r", lines.stream(), out, options)
        )
        try:
            await until_true(lambda: healthy.connects >= 1, "a connection to region b")
            await until_true(lambda: out.getvalue().count("* joined #r") >= 2, "joined in b")
            lines.end()
            assert await asyncio.wait_for(client, 20) == 0
        finally:
            client.cancel()
            await mute.stop()
            await healthy.stop()
        return out.getvalue()

    output = asyncio.run(scenario())
    assert "! ping failed (no reply); reconnecting" in output
    assert "* failing over to ws://127.0.0.1:" in output


def test_a_429_with_retry_after_is_waited_out_on_the_same_region() -> None:
    async def scenario() -> tuple[str, list[float], int]:
        world = World()
        busy, other = await FakeRegion(world, "a").start(), await FakeRegion(world, "b").start()
        busy.refusals = [refusal(429, {"Retry-After": "7"}), refusal(429, {})]
        delays: list[float] = []

        async def no_wait(seconds: float) -> None:
            delays.append(seconds)

        out, lines = io.StringIO(), Lines()
        options = ClientOptions(backoff=Backoff(attempts=4, base=0.5, cap=4.0), sleep=no_wait)
        client = asyncio.create_task(
            run_client([busy.url, other.url], "r", lines.stream(), out, options)
        )
        try:
            await until_true(lambda: "* connected to" in out.getvalue(), "the connection")
            lines.end()
            assert await asyncio.wait_for(client, 20) == 0
        finally:
            client.cancel()
            await busy.stop()
            await other.stop()
        return out.getvalue(), delays, other.connects

    output, delays, other_connects = asyncio.run(scenario())
    assert output.count("! connection refused: HTTP 429") == 2
    assert 7 <= delays[0] <= 10.5  # the hint, plus up to half of it (spread)
    assert 0.5 <= delays[1] <= 1.0  # no hint: the growing backoff (second step 1 s, jittered)
    assert other_connects == 0  # a busy region is not a failed one


def test_a_close_reason_hint_is_honoured() -> None:
    async def scenario() -> list[float]:
        world = World()
        region = await FakeRegion(world, "a").start()
        region.close_with = (1013, "try again later; retry-after=4")
        delays: list[float] = []

        async def first_only(seconds: float) -> None:
            delays.append(seconds)
            region.close_with = None

        out, lines = io.StringIO(), Lines()
        options = ClientOptions(backoff=Backoff(attempts=3, base=0.1, cap=0.2), sleep=first_only)
        client = asyncio.create_task(run_client(region.url, "r", lines.stream(), out, options))
        try:
            await until_true(lambda: "* reconnected to" in out.getvalue(), "the reconnect")
            lines.end()
            assert await asyncio.wait_for(client, 20) == 0
        finally:
            client.cancel()
            await region.stop()
        return delays

    delays = asyncio.run(scenario())
    assert 4 <= delays[0] <= 6


def test_retry_after_and_close_hints_parse() -> None:
    assert retry_after({"Retry-After": "12"}) == 12
    assert retry_after({}) is None and retry_after(None) is None
    assert retry_after({"Retry-After": "soon"}) is None
    now = datetime(2026, 11, 29, 5, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after({"Retry-After": later}, now=now.timestamp()) == 30
    assert close_hint("retry-after=2.5") == 2.5
    assert close_hint("Retry After: 3") == 3
    assert close_hint("going away") is None and close_hint(None) is None
    assert Backoff().delay(3, rng=lambda: 1.0, hint=1000) == 450  # capped at 300 s, +50 %


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_nearest_first_puts_unreachable_regions_last() -> None:
    async def scenario() -> list[tuple[str, float | None]]:
        world = World()
        up = await FakeRegion(world, "a").start()
        try:
            down = f"ws://127.0.0.1:{_closed_port()}/prod"
            return await nearest_first([down, up.url])
        finally:
            await up.stop()

    ranked = asyncio.run(scenario())
    assert ranked[1][1] is None and ranked[0][1] is not None
    assert "?userId=cli" in ranked[0][0]


def test_endpoints_from_the_stacks_outputs_file(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "Chat-us-east-1": {
                    "WebSocketUrl": "wss://a1.execute-api.us-east-1.amazonaws.com/prod",
                    "HttpUrl": "https://h1.execute-api.us-east-1.amazonaws.com/",
                },
                "Chat-eu-west-1": {
                    "WebSocketUrl": "wss://a2.execute-api.eu-west-1.amazonaws.com/prod"
                },
            }
        )
    )
    regions, mint = load_regions(outputs)
    assert mint is None
    assert regions["us-east-1"]["http"].startswith("https://h1.")
    assert region_names(outputs, "all") == ["us-east-1", "eu-west-1"]
    assert region_names(outputs, " eu-west-1 ,us-east-1") == ["eu-west-1", "us-east-1"]


# --- the session: numbered sends, id order, commands -----------------------------------------


class ScriptedSocket:
    """Stands in for the WebSocket: ``answer`` turns each frame sent into frames received."""

    def __init__(self, session: ChatSession, answer: Callable[[Frame], list[Frame]]) -> None:
        self.session = session
        self.answer = answer
        self.sent: list[Frame] = []

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        self.sent.append(frame)
        loop = asyncio.get_running_loop()
        for reply in self.answer(frame):
            loop.call_soon(self.session.receive, json.dumps(reply))

    async def close(self) -> None:
        return None


def test_pipelined_sends_are_numbered_and_resent_from_the_gap() -> None:
    """Lines go out without waiting for acks; a sequence_gap resends from the expected seq and
    an internal error resends that seq; a final error is shown once."""
    out = io.StringIO()
    session = ChatSession("r", out)
    answered: dict[int, int] = {}

    def answer(frame: Frame) -> list[Frame]:
        seq = frame["seq"]
        answered[seq] = answered.get(seq, 0) + 1
        ref = frame["ref"]
        if seq == 2 and answered[seq] == 1:
            return [{"type": "error", "code": "internal", "message": "retry", "ref": ref}]
        if seq == 3 and answered[seq] == 1:
            gap = {"type": "error", "code": "sequence_gap", "message": "gap", "expected": 2}
            return [{**gap, "ref": ref}]
        if seq == 4:
            return [{"type": "error", "code": "too_large", "message": "big", "ref": ref}]
        return [{"type": "ack", "room": "r", "id": f"id{seq}", "seq": seq, "ref": ref}]

    async def scenario() -> ScriptedSocket:
        socket_ = ScriptedSocket(session, answer)
        session.ws = socket_  # type: ignore[assignment]
        session.ready.set()
        for text in ("one", "two", "three", "four"):
            await session.command(text)
        await until_true(lambda: not session.outgoing, "every send final")
        return socket_

    sent = asyncio.run(scenario()).sent
    firsts = list(dict.fromkeys(f["seq"] for f in sent))
    assert firsts == [1, 2, 3, 4]  # numbered in typed order
    assert [f["body"] for f in sent if f["seq"] in (1, 3, 4)][:1] == ["one"]
    assert all(f["ref"] == f"s{f['seq']}" and f["action"] == "send" for f in sent)
    assert answered[2] >= 2 and answered[3] >= 2  # resent as is (same seq, same body)
    assert {f["body"] for f in sent if f["seq"] == 2} == {"two"}
    assert out.getvalue().count("! too_large: big (seq 4)") == 1
    assert "internal" not in out.getvalue() and "sequence_gap" not in out.getvalue()


def test_a_rate_limited_numbered_send_goes_again_after_the_hint() -> None:
    """rate_limited used up no seq: that send and the ones behind it are resent after
    ``retryAfterMs`` and every line is acked once, in typed order."""
    out = io.StringIO()
    session = ChatSession("r", out)
    answered: dict[int, int] = {}
    acked: list[int] = []

    def answer(frame: Frame) -> list[Frame]:
        seq = frame["seq"]
        answered[seq] = answered.get(seq, 0) + 1
        ref = frame["ref"]
        if seq == 1 and answered[seq] == 1:
            limited = {"type": "error", "code": "rate_limited", "message": "slow down"}
            return [{**limited, "retryAfterMs": 50, "ref": ref}]
        if seq == 2 and answered[seq] == 1:
            gap = {"type": "error", "code": "sequence_gap", "message": "gap", "expected": 1}
            return [{**gap, "ref": ref}]
        if seq in acked:
            return []
        acked.append(seq)
        return [{"type": "ack", "room": "r", "id": f"id{seq}", "seq": seq, "ref": ref}]

    async def scenario() -> None:
        session.ws = ScriptedSocket(session, answer)  # type: ignore[assignment]
        session.ready.set()
        for text in ("one", "two"):
            await session.command(text)
        await until_true(lambda: not session.outgoing, "every send final")

    asyncio.run(scenario())
    assert acked == [1, 2]
    assert answered[1] >= 2 and answered[2] >= 2
    assert "rate_limited" not in out.getvalue() and "sequence_gap" not in out.getvalue()


def test_unconfirmed_sends_are_reported_when_the_connection_goes() -> None:
    out = io.StringIO()
    session = ChatSession("r", out)

    async def scenario() -> None:
        session.ws = ScriptedSocket(session, lambda frame: [])  # type: ignore[assignment]
        session.ready.set()
        await session.command("lost in flight")
        session.detach()

    asyncio.run(scenario())
    assert "! not confirmed (connection lost): lost in flight" in out.getvalue()
    assert session.next_seq == 1 and not session.outgoing  # a new connection, a new sequence


def test_live_messages_are_printed_in_id_order() -> None:
    out = io.StringIO()
    session = ChatSession("r", out, ClientOptions(reorder_seconds=0.05))
    ids = sorted(new_id() for _ in range(5))

    def message(message_id: str) -> str:
        entry = {"room": "r", "id": message_id, "sender": {"userId": "u", "region": "x"}}
        return json.dumps({"type": "message", **entry, "body": message_id})

    async def scenario() -> None:
        for index in (1, 0, 3, 4, 2):  # as two concurrent deliveries might post them
            session.receive(message(ids[index]))
        await until_true(lambda: not session.unshown, "the hold to pass")

    asyncio.run(scenario())
    assert shown_ids(out) == ids


def shown_ids(out: io.StringIO) -> list[str]:
    return [line.rsplit(": ", 1)[1] for line in out.getvalue().splitlines() if "@x: " in line]


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello\n", Command("send", "hello")),
        ("   \n", None),
        ("/quit", Command("quit")),
        ("/exit", Command("quit")),
        ("/join  team-a ", Command("join", "team-a")),
        ("/join", Command("help")),
        ("/leave", Command("leave")),
        ("/history 20", Command("history", "20")),
        ("/presence abc", Command("who", "abc")),
        ("/raw", Command("help")),
        ("/nope", Command("help")),
    ],
)
def test_one_command_parser(line: str, command: Command | None) -> None:
    assert parse_command(line) == command


def test_history_limit_is_read_only_from_digits() -> None:
    assert Command("history", "20").limit == 20
    assert Command("history", "x").limit is None
