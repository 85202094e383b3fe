"""The ``soak`` scenario: clients in every region through a region outage and a cut link.

``clients_per_region`` clients in each of the sandbox's regions, in rooms of ``room_size`` with
members in every region, run the bundled client library (``clients.session.ChatSession`` over
``clients.websocket_client.run_websocket``: reconnect with back-off, fail over to the next
region's URL, resume with ``after``). Each client sends ``messages_per_client`` numbered
messages (``<user>#<n>``, waiting for each ``ack`` as the CLI does), at ``rate`` messages/s in
all. While they send, the sandbox's chaos controls (docs/sandbox.md, "Chaos"):

* cut replication from the first region to the second at 20 % of the messages and heal it at
  45 %;
* take the last region down at 25 % and bring it back at 50 %, once each of its clients has
  failed over to the next region in its list and resumed there.

At the end every client must show every acknowledged message of its room exactly once
(``lost``, ``duplicated``: (message, client) pairs), and its view of the room in id order must
keep each sender's order (``order_violations``). ``unacked`` sends (the connection was lost
before the ack) may show at most once. Informational: ``redelivered`` (message frames that
showed nothing: a second copy, or the live frame of a message already shown from history;
resume overlap, late replicas), ``live_out_of_order`` (pairs
shown live in an order different from the sender's: messages held back by the cut arrive
after later ones), ``failovers`` (reconnects that landed in another region).

Chaos steps are driven by how many messages were sent, not by the clock, so the run means the
same on a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.clients.websocket_client import run_websocket
from tests.e2e.harness import SandboxProcess, room_name

DEBUG_LINES: list[Any] | None = None
CONNECT_WAVE = 25


class _Lines:
    """Where a session writes what it would print: kept, for the failover count."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.extend(line for line in text.splitlines() if line)
        return len(text)

    def flush(self) -> None:
        pass


class SoakSession(ChatSession):
    """The library's session, recording what it shows and which sends were acknowledged."""

    def __init__(self, room: str, options: ClientOptions) -> None:
        self.sink = _Lines()
        super().__init__(room, self.sink, options)  # type: ignore[arg-type]
        self.shown: list[tuple[str, str]] = []  # (id, body) in the order shown
        self.acked: dict[str, str] = {}  # body -> id
        self.message_frames: Counter[str] = Counter()  # id -> message frames received
        self.shown_by_frame: set[str] = set()  # ids shown from their own live frame
        # The live message frames received, by identity (kept, so no id() is reused): a
        # frame held during a join is shown later, by ``show``, as the same object.
        self._live_frames: dict[int, dict[str, Any]] = {}

    def _first_time(self, message: dict[str, Any]) -> bool:
        first = super()._first_time(message)
        if first and isinstance(message.get("id"), str):
            self.shown.append((str(message["id"]), str(message.get("body"))))
            if id(message) in self._live_frames:
                self.shown_by_frame.add(str(message["id"]))
        return first

    def receive_frame(self, frame: Any) -> None:
        if isinstance(frame, dict) and frame.get("type") == "message":
            self.message_frames[str(frame.get("id"))] += 1
            self._live_frames[id(frame)] = frame
        if isinstance(frame, dict) and frame.get("type") == "ack":
            # Numbered sends are pipelined: the ack names the seq of a frame still outgoing.
            sent = self.outgoing.get(frame["seq"]) if isinstance(frame.get("seq"), int) else None
            if sent is not None:
                self.acked[str(sent.get("body"))] = str(frame.get("id"))
        super().receive_frame(frame)


@dataclass
class SoakClient:
    user: str
    region: str
    room: str
    session: SoakSession
    home_url: str
    lines_sent: int = 0
    lines: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[int] | None = None

    async def input(self) -> AsyncIterator[str]:
        while (line := await self.lines.get()) is not None:
            yield line


def control(sandbox: SandboxProcess, method: str, path: str) -> dict[str, Any]:
    request = urllib.request.Request(f"{sandbox.web.rstrip('/')}{path}", method=method)
    with urllib.request.urlopen(request, timeout=30) as answer:
        document: dict[str, Any] = json.loads(answer.read())
        return document


def _options() -> ClientOptions:
    # Ride out a region outage: enough attempts for the back-off to reach another region.
    # Replies and reconnects get more time than the CLI's defaults: a loaded sandbox (one
    # process per function, moto for every table) answers slowly, and slow is not lost.
    return ClientOptions(
        backoff=Backoff(attempts=30, base=0.2, cap=2.0),
        drain_seconds=1.0,
        reply_seconds=30.0,
        ready_seconds=300.0,
    )


async def _open_clients(
    sandbox: SandboxProcess, regions: tuple[str, ...], clients_per_region: int, room_size: int
) -> list[SoakClient]:
    secret = sandbox.signing_secret
    total = clients_per_region * len(regions)
    rooms = [room_name() for _ in range(max(1, total // room_size))]
    clients = []
    for number in range(total):
        region = regions[number % len(regions)]
        user = f"soak-{region}-{number}"
        order = [region, *(r for r in regions if r != region)]  # home first, then the others
        urls = [connect_url(sandbox.url(r), user, None, secret=secret) for r in order]
        room = rooms[(number // room_size) % len(rooms)]
        client = SoakClient(
            user, region, room, SoakSession(room, _options()), home_url=sandbox.url(region)
        )
        client.task = asyncio.create_task(run_websocket(client.session, urls, client.input()))
        clients.append(client)
        if len(clients) % CONNECT_WAVE == 0 or number == total - 1:
            # In waves: the sandbox runs each function in one process, and a storm of
            # connects would time its joins out (a storm is the chaos, not the setup).
            wave = clients[-CONNECT_WAVE:]
            if not all(await asyncio.gather(*(c.session.wait_ready() for c in wave))):
                raise RuntimeError("not every soak client connected and joined")
    return clients


def tally(clients: list[SoakClient], seconds: float) -> dict[str, Any]:
    lost = duplicated = order_violations = live_out_of_order = redelivered = unacked = 0
    failovers = 0
    samples: list[str] = []
    by_room: dict[str, list[SoakClient]] = {}
    for client in clients:
        by_room.setdefault(client.room, []).append(client)
    for members in by_room.values():
        acked = {body: mid for c in members for body, mid in c.session.acked.items()}
        sent = sum(c.lines_sent for c in members)
        unacked += sent - sum(len(c.session.acked) for c in members)
        for client in members:
            shown = client.session.shown
            counts = Counter(mid for mid, _ in shown)
            duplicated += sum(n - 1 for n in counts.values() if n > 1)
            missing = [(body, mid) for body, mid in acked.items() if mid not in counts]
            lost += len(missing)
            samples.extend(
                f"{client.user} missed {body} ({mid}; frames {client.session.message_frames[mid]}"
                f", joined {sum('joined #' in line for line in client.session.sink.lines)}x)"
                for body, mid in missing[:2]
            )
            # Every frame but the one that showed its message. Not "one per shown id": a
            # message shown from history or ``joined.missed`` has no such frame, and a live
            # frame of it that comes later is a redelivery too.
            frames = client.session.message_frames
            redelivered += sum(frames.values()) - len(client.session.shown_by_frame)
            order_violations += _sender_order_breaks(sorted(shown))
            live_out_of_order += _sender_order_breaks(shown)
            failovers += _failovers(client)
    return {
        "clients": len(clients),
        "rooms": len(by_room),
        "messages": sum(len(c.session.acked) for c in clients),
        "unacked": unacked,
        "lost": lost,
        "duplicated": duplicated,
        "order_violations": order_violations,
        "live_out_of_order": live_out_of_order,
        "redelivered": redelivered,
        "failovers": failovers,
        "seconds": round(seconds, 1),
        "lost_samples": samples[:20],
    }


def _sender_order_breaks(shown: list[tuple[str, str]]) -> int:
    """Messages shown after a later one of the same sender (bodies ``<user>#<n>``)."""
    newest: dict[str, int] = {}
    breaks = 0
    for _, body in shown:
        sender, _, number = body.rpartition("#")
        if not number.isdigit():
            continue
        if int(number) < newest.get(sender, -1):
            breaks += 1
        newest[sender] = max(newest.get(sender, -1), int(number))
    return breaks


async def run_soak(
    sandbox: SandboxProcess,
    regions: tuple[str, ...],
    clients_per_region: int = 100,
    messages_per_client: int = 5,
    rate: float = 10.0,
    room_size: int = 10,
    settle_s: float = 120.0,
) -> dict[str, Any]:
    """One soak run (see the module docstring); the figures."""
    if len(regions) < 3:
        raise ValueError("the soak needs 3 regions: a link to cut and a region to take down")
    cut_from, cut_to, down = regions[0], regions[1], regions[-1]
    started = time.perf_counter()
    clients = await _open_clients(sandbox, regions, clients_per_region, room_size)
    total = len(clients) * messages_per_client
    stranded = [c for c in clients if c.region == down]

    def moved() -> bool:  # every client of the region that is down resumed elsewhere
        return all(c.session.ready.is_set() and _failovers(c) for c in stranded)

    steps: list[tuple[float, str, Callable[[], bool]]] = [
        (0.20, f"/control/links/{cut_from}/{cut_to}/cut", lambda: True),
        (0.25, f"/control/regions/{down}/down", lambda: True),
        (0.45, f"/control/links/{cut_from}/{cut_to}/heal", lambda: True),
        (0.50, f"/control/regions/{down}/up", moved),
    ]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s

    async def advance(number: int | None) -> None:
        """Take the chaos steps that are due: by progress (all when ``number`` is None)."""
        while steps:
            share, path, ready = steps[0]
            if number is not None and number < share * total:
                return
            if not ready():
                if number is not None and loop.time() < deadline:
                    return  # keep sending; try again after the next message
                while not ready() and loop.time() < deadline:
                    await asyncio.sleep(0.1)
            steps.pop(0)
            await asyncio.to_thread(control, sandbox, "POST", path)

    try:
        for number in range(total):
            await advance(number)
            client = clients[number % len(clients)]
            body = f"{client.user}#{client.lines_sent}"
            client.lines_sent += 1
            client.lines.put_nowait(body)
            await asyncio.sleep(1 / rate)
            deadline = max(deadline, loop.time() + settle_s)
        await advance(None)
        await _settle(clients, settle_s)
        result = tally(clients, time.perf_counter() - started)
        state = await asyncio.to_thread(control, sandbox, "GET", "/control/state")
        # Forwards that outlived the retry window: in the DLQ, so "lost" until replayed.
        result["dead_lettered"] = sum(r["deadLetterQueued"] for r in state["regions"].values())
        result["converged"] = _converged(clients)
        if DEBUG_LINES is not None:
            DEBUG_LINES.extend((c.user, c.session.sink.lines) for c in clients)
        return result
    finally:
        await _stop(sandbox, clients, f"/control/links/{cut_from}/{cut_to}/heal", down)


async def _settle(clients: list[SoakClient], settle_s: float) -> None:
    """Wait (bounded) until every client has taken its lines (its sends done, acked or not),
    then until every acknowledged message has reached every member."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    while any(not c.lines.empty() or c.session.busy() for c in clients):
        if loop.time() > deadline:
            return
        await asyncio.sleep(0.2)
    while loop.time() < deadline and not _converged(clients):
        await asyncio.sleep(0.2)


async def _stop(
    sandbox: SandboxProcess, clients: list[SoakClient], heal_path: str, down: str
) -> None:
    """Heal the link, bring the region back, end every client."""
    with contextlib.suppress(Exception):
        await asyncio.to_thread(control, sandbox, "POST", heal_path)
        await asyncio.to_thread(control, sandbox, "POST", f"/control/regions/{down}/up")
    for client in clients:
        client.lines.put_nowait(None)
    await asyncio.gather(*(c.task for c in clients if c.task), return_exceptions=True)


def _failovers(client: SoakClient) -> int:
    """Reconnects of ``client`` that landed in a region other than its own."""
    return sum(
        1
        for line in client.session.sink.lines
        if line.startswith("* reconnected to") and client.home_url not in line
    )


def _converged(clients: list[SoakClient]) -> bool:
    by_room: dict[str, set[str]] = {}
    for client in clients:
        by_room.setdefault(client.room, set()).update(client.session.acked.values())
    return all(by_room[c.room] <= {mid for mid, _ in c.session.shown} for c in clients)
