"""The CLI client's pieces: rendering, de-duplication, URLs and tokens, backoff, the resume
point, presence, catching up after a reconnect (against a scripted socket)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from multiregion_chat.clients.chat import main as chat_main
from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.endpoints import ClientError, connect_url, endpoint_url
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.render import render
from multiregion_chat.clients.resume import RESUME_WINDOW_MS, resume_from_now
from multiregion_chat.clients.resume import resume_after as client_resume_after
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.clients.tokens import hmac_key_id, mint_token
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.protocol.ids import new_id
from multiregion_chat.runtime.protocol.ids import resume_after as ids_resume_after

MESSAGE = {
    "type": "message",
    "room": "lobby",
    "id": "01ABC",
    "sender": {"userId": "bob", "name": "Bob", "region": "eu-west-1"},
    "body": "hi there",
    "sentAt": "2026-11-21T10:11:12.123Z",
}


def test_render_frames() -> None:
    assert render(MESSAGE) == "[10:11:12] #lobby Bob (bob)@eu-west-1: hi there"
    joined = {
        "type": "joined",
        "room": "lobby",
        "members": [MESSAGE["sender"]],
        "missed": [MESSAGE],
        "more": False,
    }
    assert render(joined).splitlines() == [
        "* joined #lobby; here: Bob (bob)@eu-west-1",
        "[10:11:12] #lobby Bob (bob)@eu-west-1: hi there",
    ]
    assert render({"type": "error", "code": "not_member", "message": "join first"}) == (
        "! not_member: join first"
    )
    assert render({"type": "ack", "id": "1"}) is None
    assert render({"type": "ack", "id": "1"}, verbose=True) == "  (sent 1)"
    assert render({"message": "Internal server error", "connectionId": "x"}) == (
        "! gateway: Internal server error"
    )
    assert (
        render(
            {
                "type": "member",
                "room": "r",
                "event": "joined",
                "member": {"userId": "a", "region": "us-east-1"},
            }
        )
        == "* a@us-east-1 joined #r"
    )


def test_session_shows_each_message_once_and_remembers_the_last_id() -> None:
    out = io.StringIO()
    session = ChatSession("lobby", out)
    session.receive(json.dumps(MESSAGE))
    session.receive(
        json.dumps(
            {"type": "joined", "room": "lobby", "members": [], "missed": [MESSAGE], "more": False}
        )
    )
    session.receive(json.dumps(MESSAGE))
    assert out.getvalue().count("hi there") == 1
    assert session.last_id == {"lobby": "01ABC"}
    assert session.joined == {"lobby"}


def test_connect_url_with_query_identity_or_token() -> None:
    assert connect_url("ws://h:1/prod", "alice", "Alice A") == (
        "ws://h:1/prod?userId=alice&name=Alice+A"
    )
    url = connect_url("ws://h:1/prod", "alice", None, secret="s3cret")
    token = url.split("token=")[1]
    header, payload, signature = token.split(".")
    expected = hmac.new(b"s3cret", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["sub"] == "alice" and claims["exp"] > 0
    head = json.loads(base64.urlsafe_b64decode(header + "=="))
    assert head["alg"] == "HS256" and head["kid"] == hmac_key_id("s3cret")


def test_mint_token_claims() -> None:
    token = mint_token("k", "bob", name="Bob", rooms=["team-*"], ttl_seconds=60, now=1000)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {"sub": "bob", "iat": 1000, "exp": 1060, "name": "Bob", "rooms": ["team-*"]}


def test_mint_token_signs_with_the_current_key_of_a_rotation_document() -> None:
    document = json.dumps({"current": "new-key", "previous": "old-key"})
    header = json.loads(base64.urlsafe_b64decode(mint_token(document, "b").split(".")[0] + "=="))
    assert header["kid"] == hmac_key_id("new-key")


def test_endpoints_file(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    with pytest.raises(ClientError, match="start the sandbox"):
        endpoint_url(path, "us-east-1")
    path.write_text(
        json.dumps({"regions": {"us-east-1": {"websocket": "ws://x/prod"}}, "signingSecret": "s"})
    )
    url, mint = endpoint_url(path, "us-east-1")
    assert url == "ws://x/prod" and mint is not None
    assert mint("u").count(".") == 2
    with pytest.raises(ClientError, match="eu-west-1 is not in"):
        endpoint_url(path, "eu-west-1")


# ------------------------------------------------------------------ continuity pieces


def test_history_and_missed_entries_render_like_messages() -> None:
    entry = {k: v for k, v in MESSAGE.items() if k != "type"}
    assert render({"type": "history", "room": "lobby", "messages": [entry]}) == render(MESSAGE)
    joined = {"type": "joined", "room": "lobby", "members": [], "missed": [entry], "more": True}
    assert render(joined).splitlines()[1:] == [
        render(MESSAGE),
        "* (more were missed than shown; /history for older ones)",
    ]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(attempts=5, base=0.5, cap=3.0)
    assert [backoff.delay(n, rng=lambda: 0.0) for n in range(1, 6)] == [0.25, 0.5, 1.0, 1.5, 1.5]
    assert [backoff.delay(n, rng=lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0.25 <= backoff.delay(1) <= 0.5 for _ in range(100))


def test_the_clients_resume_point_is_chat_ids_resume_after() -> None:
    """One implementation: clients.resume loads runtime/protocol/ids.py."""
    for message_id in (new_id(), new_id(1_000), "01M80BAD5QET6J63GD4WN9REGA"):
        for window in (0, 1, 5000):
            assert client_resume_after(message_id, window) == ids.resume_after(message_id, window)
    assert RESUME_WINDOW_MS == ids.DEFAULT_RESUME_WINDOW_MS == 5000
    now_ms = ids.now_ms()
    start = ids.id_timestamp_ms(resume_from_now())
    assert now_ms - 5000 - 1 <= start <= now_ms  # the millisecond before (now - window)


def _member_frame(event: str, user: str, region: str) -> str:
    return json.dumps(
        {
            "type": "member",
            "room": "r",
            "event": event,
            "member": {"userId": user, "region": region},
        }
    )


def test_presence_is_kept_as_a_map_by_user() -> None:
    out = io.StringIO()
    session = ChatSession("r", out)
    members = [{"userId": "a", "region": "us-east-1"}, {"userId": "b", "region": "eu-west-1"}]
    session.receive(json.dumps({"type": "joined", "room": "r", "members": members, "missed": []}))
    session.receive(_member_frame("joined", "c", "ap-northeast-1"))
    session.receive(_member_frame("joined", "b", "us-east-1"))  # b left eu-west-1, is in us
    session.receive(_member_frame("left", "a", "us-east-1"))
    session.receive(_member_frame("left", "zed", "us-east-1"))  # unknown: harmless
    assert session.members("r") == [
        {"userId": "b", "region": "us-east-1"},
        {"userId": "c", "region": "ap-northeast-1"},
    ]
    assert "* c@ap-northeast-1 joined #r" in out.getvalue()
    assert "* a@us-east-1 left #r" in out.getvalue()


def _ids(count: int) -> list[str]:
    return [new_id(1_790_000_000_000 + 10 * n) for n in range(count)]


def _entry(message_id: str, room: str = "r") -> dict[str, Any]:
    return {
        "room": room,
        "id": message_id,
        "sender": {"userId": "u", "region": "us-east-1"},
        "body": message_id,
        "sentAt": "2026-11-21T10:11:12.123Z",
    }


class FakeSocket:
    """Stands in for the WebSocket: ``answer`` turns each frame sent into frames received."""

    def __init__(self, session: ChatSession, answer: Any) -> None:
        self.session = session
        self.answer = answer
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        self.sent.append(frame)
        loop = asyncio.get_running_loop()
        for reply in self.answer(frame):
            loop.call_soon(self.session.receive, json.dumps(reply))

    async def close(self) -> None:
        self.closed = True


def join_refused(session: ChatSession, answer: Any) -> FakeSocket:
    """Join ``r`` over a socket answering with ``answer``; the join must fail."""

    async def scenario() -> FakeSocket:
        socket = FakeSocket(session, answer)
        session.ws = socket  # type: ignore[assignment]
        assert await session.join_room("r") is False
        return socket

    return asyncio.run(scenario())


def _shown(out: io.StringIO) -> list[str]:
    return [line.rsplit(": ", 1)[1] for line in out.getvalue().splitlines() if "u@" in line]


def test_rejoin_catches_up_from_the_resume_point_merges_live_messages_once_in_id_order() -> None:
    ids = _ids(160)
    out = io.StringIO()
    session = ChatSession("r", out)
    session.show([_entry(i) for i in ids[:10]])
    assert session.last_id == {"r": ids[9]}

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        ref = frame["ref"]
        if frame["action"] == "join":
            assert frame["after"] == ids_resume_after(ids[9], 5000)
            live = [{"type": "message", **_entry(i)} for i in (ids[150], ids[20], ids[3])]
            missed = [_entry(i) for i in ids[5:105]]  # the window repeats 5..9
            joined = {"type": "joined", "room": "r", "members": [], "missed": missed}
            return [*live, {**joined, "more": True, "ref": ref}]
        assert frame == {
            "action": "history",
            "room": "r",
            "after": ids[104],
            "limit": 100,
            "ref": ref,
        }
        messages = [_entry(i) for i in ids[105:150]]
        return [{"type": "history", "room": "r", "messages": messages, "more": False, "ref": ref}]

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)  # type: ignore[assignment]
        await session.rejoin()
        session.receive(json.dumps({"type": "message", **_entry(ids[151])}))  # live, after

    asyncio.run(scenario())
    assert _shown(out) == ids[:152]
    assert session.last_id == {"r": ids[151]}
    assert not session.held and not session.waiting


def test_an_interrupted_catch_up_shows_no_live_message_beyond_it() -> None:
    """The connection goes during paging: the next resume must still start before the pages
    not fetched, so newer live messages are not shown (they come again)."""
    ids = _ids(120)
    out = io.StringIO()
    session = ChatSession("r", out)
    session.show([_entry(ids[0])])

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        if frame["action"] == "join":
            live = {"type": "message", **_entry(ids[119])}
            missed = [_entry(i) for i in ids[1:101]]
            joined = {"type": "joined", "room": "r", "members": [], "missed": missed}
            return [live, {**joined, "more": True, "ref": frame["ref"]}]
        asyncio.get_running_loop().call_soon(session.detach)  # lost before the reply
        return []

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)  # type: ignore[assignment]
        await session.rejoin()

    asyncio.run(scenario())
    assert _shown(out) == ids[:101]
    assert session.last_id == {"r": ids[100]}


def test_a_room_with_no_message_seen_resumes_from_when_it_was_joined() -> None:
    """A quiet client fails over: it must still get what was sent while it was away."""
    out = io.StringIO()
    session = ChatSession("r", out)
    sent: list[dict[str, Any]] = []

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        sent.append(frame)
        return [{"type": "joined", "room": "r", "members": [], "missed": [], "ref": frame["ref"]}]

    async def scenario() -> None:
        session.ws = FakeSocket(session, answer)  # type: ignore[assignment]
        before = client_resume_after(str(new_id()), 0)
        await session.join_room("r")  # the first join: nothing to resume from
        await session.rejoin()  # after a reconnect, no message seen yet
        first, second = sent
        assert "after" not in first
        # From the first join, less the resume window (late replicas).
        assert second["after"] >= client_resume_after(before, 5000)
        assert second["after"] < before

    asyncio.run(scenario())


def test_a_join_without_an_answer_and_no_pong_drops_the_connection_to_resume() -> None:
    """API Gateway's "Internal server error" frame has no ref: the join may have happened
    server-side. With the ping unanswered too the region is down: the client reconnects (and
    fails over) and resumes rather than carry on with a gap."""
    out = io.StringIO()
    session = ChatSession("r", out, ClientOptions(reply_seconds=0.05, alive_seconds=0.05))

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"message": "Internal server error", "connectionId": "c", "requestId": "q"}]

    assert join_refused(session, answer).closed
    assert "r" in session.rooms  # joined again after the reconnect
    assert session.unhealthy == "no answer to join #r, nor to ping"


def test_join_answered_internal_drops_the_connection() -> None:
    out = io.StringIO()
    session = ChatSession("r", out)

    def answer(frame: dict[str, Any]) -> list[dict[str, Any]]:
        error = {"type": "error", "code": "internal", "message": "reconnect"}
        return [{**error, "ref": frame["ref"]}]

    assert join_refused(session, answer).closed
    assert "! internal: reconnect" in out.getvalue()
    assert "r" in session.rooms  # joined again after the reconnect


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_run_client_fails_over_and_gives_up_after_bounded_attempts() -> None:
    urls = [f"ws://127.0.0.1:{_closed_port()}/prod?userId=a" for _ in range(2)]
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    async def no_lines() -> AsyncIterator[str]:
        for line in ():
            yield line

    out = io.StringIO()
    options = ClientOptions(backoff=Backoff(attempts=3, base=0.1, cap=0.2), sleep=no_wait)
    assert asyncio.run(run_client(urls, "r", no_lines(), out, options)) == 1
    lines = out.getvalue().splitlines()
    tried = [line.split("connect to ")[1].split(": ")[0] for line in lines if "cannot" in line]
    bases = [url.split("?")[0] for url in urls]
    assert tried == [bases[0], bases[1], bases[0], bases[1]]  # the next region after a failure
    assert len(delays) == 3 and all(0.05 <= d <= 0.2 for d in delays)
    assert lines[-1] == "! giving up after 3 attempts"


def test_http_mode_posts_long_polls_retries_and_looks_back_for_late_messages() -> None:
    """--http against a scripted HTTP API: a failed GET is retried after a backoff; while the
    newest message is inside the resume window the client also reads from the resume point,
    so a message that reached the region late (smaller id) is still shown, once."""
    late, first = new_id(), new_id()  # late < first, both "now"
    calls: list[dict[str, str]] = []
    posted: list[Any] = []

    async def scenario() -> str:
        async def get(request: web.Request) -> web.Response:
            calls.append(dict(request.query))
            if len(calls) == 1:
                return web.json_response({"code": "internal", "message": "boom"}, status=500)
            after = request.query.get("after", "")
            known = [first] if len(calls) < 5 else [late, first]  # `late` arrives at call 5
            messages = [_entry(i) for i in sorted(known) if i > after]
            if not messages and request.query.get("wait") not in ("0", None):
                await asyncio.sleep(float(request.query["wait"]))
            return web.json_response({"messages": messages, "more": False})

        async def post(request: web.Request) -> web.Response:
            posted.append((dict(request.query), await request.json()))
            return web.json_response({"id": first}, status=202)

        app = web.Application()
        app.router.add_get("/rooms/{room}/messages", get)
        app.router.add_post("/rooms/{room}/messages", post)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        out = io.StringIO()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def lines() -> AsyncIterator[str]:
            while (line := await queue.get()) is not None:
                yield line

        delays: list[float] = []

        async def no_wait(seconds: float) -> None:
            delays.append(seconds)

        options = ClientOptions(http=True, poll_wait=1, sleep=no_wait, drain_seconds=2)
        url = connect_url(f"http://127.0.0.1:{port}", "alice", "Alice")
        client = asyncio.create_task(run_client(url, "r", lines(), out, options))
        try:
            for _ in range(200):
                if late in out.getvalue():
                    break
                await asyncio.sleep(0.05)
            queue.put_nowait("hello\n")
            queue.put_nowait(None)
            assert await asyncio.wait_for(client, 20) == 0
        finally:
            client.cancel()
            await runner.cleanup()
        assert len(delays) == 1
        return out.getvalue()

    output = asyncio.run(scenario())
    assert "! #r: HTTP 500 internal: boom; retrying in" in output
    assert [line.rsplit(": ", 1)[1] for line in output.splitlines() if "u@" in line] == [
        first,
        late,  # late: shown when it arrived, once
    ]
    ((query, body),) = posted
    assert query == {"userId": "alice", "name": "Alice"}
    assert body["body"] == "hello" and body["seq"] == 1  # numbered: a retry is not a second one
    assert body["clientId"].startswith("cli-")
    assert calls[1]["wait"] == "1" and calls[1]["limit"] == "100"
    assert any(c.get("wait") == "0" and c["after"] == ids_resume_after(first) for c in calls)


def test_connect_url_token_carries_rooms() -> None:
    url = connect_url("ws://h:1/prod", "alice", None, secret="s3cret", rooms=["team-*"])
    token = url.split("token=")[1]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "alice" and claims["rooms"] == ["team-*"]


def test_cli_needs_a_token_or_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps({"regions": {"us-east-1": {"websocket": "ws://x/prod"}}}))
    assert chat_main(["--user", "a", "--endpoints-file", str(endpoints)]) == 2
    assert "no token" in capsys.readouterr().err


def test_tokens_cli_mints_a_token_the_authorizer_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from multiregion_chat.clients.tokens import main as tokens_main
    from multiregion_chat.runtime.auth.tokens import HmacKeys
    from multiregion_chat.runtime.auth.tokens import verify as verify_with

    def verify(token: str, secret: str, now: float) -> Any:
        return verify_with(token, HmacKeys.from_secret(secret), now)

    monkeypatch.setattr("sys.stdin", io.StringIO("the-secret\n"))
    assert tokens_main(["--secret-file", "-", "--sub", "alice", "--rooms", "lobby,team-*"]) == 0
    token = capsys.readouterr().out.strip()
    claims = verify(token, "the-secret", time.time())
    assert (claims.user_id, claims.rooms) == ("alice", ("lobby", "team-*"))
    monkeypatch.setenv("CHAT_SIGNING_SECRET", "env-secret")
    assert tokens_main(["--sub", "bob", "--name", "Bob", "--ttl", "60"]) == 0
    claims = verify(capsys.readouterr().out.strip(), "env-secret", time.time())
    assert (claims.user_id, claims.name) == ("bob", "Bob")


def test_render_shows_member_pages_counts_and_mode_switches() -> None:
    """Big rooms (docs/protocol.md, "Presence in big rooms"): a page, its count, the mode."""
    from multiregion_chat.clients.render import render

    joined = {"type": "joined", "room": "r", "members": [{"userId": "a", "region": "x"}]}
    page = {**joined, "missed": [], "membersNext": "a", "memberCount": 900, "live": False}
    assert render(page) == (
        "* joined #r; here: a@x ... (900 in all; /who a for more)\n"
        "* big room (900 members): no live join/leave events"
    )
    small = {"type": "presence", "room": "r", "members": [], "memberCount": 0, "live": True}
    assert render(small) == "* in #r: nobody"
    switch = {"type": "members", "room": "r", "live": True, "memberCount": 7}
    assert render(switch) == "* #r has 7 members; live join/leave events on"
