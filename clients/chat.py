"""Command-line chat client.

``python -m clients.chat --region us-east-1 --room lobby --user alice [--name Alice]``

Joins the room, prints frames as they arrive and sends each line you type. The WebSocket URL
comes from the sandbox's endpoints file (``--endpoints-file``, default
``sandbox-endpoints.json``) or ``--url`` (any deployment). Identity goes on the connect URL:
a token minted with the endpoints file's ``signingSecret`` when the app has auth (or
``--token``), else ``?userId=&name=`` (docs/contracts.md).

Commands: ``/join ROOM``, ``/leave [ROOM]``, ``/history [N]``, ``/who``, ``/ping``,
``/raw JSON`` (send a frame as is), ``/quit``; anything else is sent to the current room.
At the end of input the client waits for the acks of what it sent, then exits. If the
connection drops it reconnects and rejoins with ``after`` = the last message id it saw, so
nothing is missed or shown twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import threading
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from clients.tokens import mint_token

HELP = (
    "commands: /join ROOM  /leave [ROOM]  /history [N]  /who  /ping  /raw JSON  /quit;"
    " other lines are sent to the current room"
)
MAX_RECONNECTS = 5
DRAIN_SECONDS = 5.0
REPLY_SECONDS = 10.0


class ClientError(Exception):
    """A problem the CLI reports in one line (exit status 2)."""


def endpoint_url(endpoints_file: Path, region: str) -> tuple[str, str | None]:
    """The region's WebSocket URL and the signing secret (if any) from the endpoints file."""
    try:
        document = json.loads(endpoints_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClientError(
            f"{endpoints_file} not found: start the sandbox (`make local`) or pass --url"
        ) from None
    except ValueError as exc:
        raise ClientError(f"{endpoints_file} is not JSON: {exc}") from None
    regions = document.get("regions") or {}
    if region not in regions:
        raise ClientError(f"region {region} is not in {endpoints_file} (has: {', '.join(regions)})")
    return str(regions[region]["websocket"]), document.get("signingSecret")


def connect_url(
    base: str,
    user: str,
    name: str | None,
    *,
    token: str | None = None,
    secret: str | None = None,
) -> str:
    if token is None and secret is not None:
        token = mint_token(secret, user, name=name)
    if token is not None:
        query = {"token": token}
    else:
        query = {"userId": user, **({"name": name} if name else {})}
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}{urlencode(query)}"


def _clock(sent_at: str | None) -> str:
    if not sent_at:
        return "--:--:--"
    try:
        return datetime.fromisoformat(sent_at.replace("Z", "+00:00")).strftime("%H:%M:%S")
    except ValueError:
        return sent_at


def _who(member: dict[str, Any]) -> str:
    user = member.get("userId", "?")
    name = member.get("name")
    label = f"{name} ({user})" if name and name != user else str(user)
    return f"{label}@{member.get('region', '?')}"


def render(frame: Any, verbose: bool = False) -> str | None:
    """One human-readable line (or a few) for a server frame; None to show nothing."""
    if not isinstance(frame, dict):
        return f"? {json.dumps(frame)}"
    kind = frame.get("type")
    room = frame.get("room", "")
    if kind == "message":
        body = frame.get("body")
        text = body if isinstance(body, str) else json.dumps(body)
        sender = frame.get("sender") or {}
        return f"[{_clock(frame.get('sentAt'))}] #{room} {_who(sender)}: {text}"
    if kind == "joined":
        members = ", ".join(_who(m) for m in frame.get("members") or []) or "nobody"
        lines = [f"* joined #{room}; here: {members}"]
        lines += [render(m) or "" for m in frame.get("missed") or []]
        if frame.get("more"):
            lines.append("* (more were missed than shown; /history for older ones)")
        return "\n".join(lines)
    if kind == "left":
        return f"* left #{room}"
    if kind == "member":
        return f"* {_who(frame.get('member') or {})} {frame.get('event', '?')} #{room}"
    if kind == "presence":
        members = ", ".join(_who(m) for m in frame.get("members") or []) or "nobody"
        return f"* in #{room}: {members}"
    if kind == "history":
        lines = [render(m) or "" for m in frame.get("messages") or []]
        return "\n".join(lines) if lines else f"* no history in #{room}"
    if kind == "error":
        return f"! {frame.get('code')}: {frame.get('message')}"
    if kind == "ack":
        return f"  (sent {frame.get('id')})" if verbose else None
    if kind == "pong":
        return "* pong"
    if "message" in frame and "connectionId" in frame:  # an API Gateway error
        return f"! gateway: {frame['message']}"
    return f"? {json.dumps(frame)}"


class ChatSession:
    """The client's state across reconnects: current room, last id, pending refs."""

    def __init__(self, room: str, out: TextIO, verbose: bool = False) -> None:
        self.room = room
        self.out = out
        self.verbose = verbose
        self.joined: set[str] = set()
        self.last_id: dict[str, str] = {}
        self.seen: set[str] = set()
        self.pending: set[str] = set()
        self.unechoed: set[str] = set()  # acked ids whose message has not arrived yet
        self._refs = itertools.count(1)
        self.ws: ClientConnection | None = None

    def emit(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def next_ref(self) -> str:
        return f"c{next(self._refs)}"

    async def send(self, frame: dict[str, Any], wait: float = REPLY_SECONDS) -> None:
        """Send ``frame`` and wait (bounded) for its direct reply.

        API Gateway runs the integrations of one connection's frames concurrently, so a
        ``send`` typed right after ``join`` could overtake it: one request at a time keeps
        the order the user typed.
        """
        ref = self.next_ref()
        frame = {**frame, "ref": ref}
        self.pending.add(ref)
        if self.ws is None:
            raise ConnectionClosed(None, None)
        await self.ws.send(json.dumps(frame))
        deadline = asyncio.get_running_loop().time() + wait
        while ref in self.pending and asyncio.get_running_loop().time() < deadline:
            if self.ws is None:
                return
            await asyncio.sleep(0.01)

    def receive(self, raw: str | bytes) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            self.emit(f"? {raw!r}")
            return
        if isinstance(frame, dict):
            self.pending.discard(str(frame.get("ref")))
            kind = frame.get("type")
            if kind == "ack" and str(frame.get("id")) not in self.seen:
                self.unechoed.add(str(frame.get("id")))
            elif kind == "message":
                self.unechoed.discard(str(frame.get("id")))
            if kind == "joined":
                self.joined.add(str(frame.get("room")))
                frame = dict(
                    frame, missed=[m for m in frame.get("missed") or [] if self._first_time(m)]
                )
            elif kind == "left":
                self.joined.discard(str(frame.get("room")))
            elif kind == "message" and not self._first_time(frame):
                return
        line = render(frame, self.verbose)
        if line:
            self.emit(line)

    def _first_time(self, message: dict[str, Any]) -> bool:
        message_id = str(message.get("id"))
        if message_id in self.seen:
            return False
        self.seen.add(message_id)
        room = str(message.get("room"))
        if message_id > self.last_id.get(room, ""):
            self.last_id[room] = message_id
        return True

    async def command(self, line: str) -> bool:
        """Handle one input line; False to quit."""
        line = line.rstrip("\n")
        if not line.strip():
            return True
        if not line.startswith("/"):
            await self.send({"action": "send", "room": self.room, "body": line})
            return True
        verb, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if verb in ("quit", "exit"):
            return False
        if verb == "join" and argument:
            self.room = argument
            await self.send({"action": "join", "room": argument})
        elif verb == "leave":
            await self.send({"action": "leave", "room": argument or self.room})
        elif verb == "history":
            frame: dict[str, Any] = {"action": "history", "room": self.room}
            if argument.isdigit():
                frame["limit"] = int(argument)
            await self.send(frame)
        elif verb in ("who", "presence"):
            await self.send({"action": "presence", "room": self.room})
        elif verb == "ping":
            await self.send({"action": "ping"})
        elif verb == "raw" and argument:
            if self.ws is not None:
                await self.ws.send(argument)
        else:
            self.emit(HELP)
        return True

    async def rejoin(self) -> None:
        rooms = self.joined | {self.room}
        self.joined = set()
        for room in sorted(rooms):
            frame: dict[str, Any] = {"action": "join", "room": room}
            if room in self.last_id:
                frame["after"] = self.last_id[room]
            await self.send(frame)


async def _stdin_lines() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=pump, daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line


async def run_client(
    url: str,
    room: str,
    lines: AsyncIterator[str],
    out: TextIO,
    *,
    verbose: bool = False,
    drain_seconds: float = DRAIN_SECONDS,
) -> int:
    """Join ``room`` at ``url``, send ``lines``, write what arrives to ``out``; the exit status."""
    session = ChatSession(room, out, verbose)
    done = asyncio.Event()
    input_task: asyncio.Task[None] | None = None

    async def read_input() -> None:
        try:
            async for line in lines:
                try:
                    if not await session.command(line):
                        break
                except ConnectionClosed:
                    session.emit("! not connected; line dropped")
            # End of input: wait (bounded) for the replies and for our own messages to come
            # back through the bus, then a moment for anything else in flight.
            deadline = asyncio.get_running_loop().time() + drain_seconds
            while (session.pending or session.unechoed) and (
                asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.05)
            await asyncio.sleep(min(0.3, drain_seconds))
        finally:
            done.set()

    attempts = 0
    while not done.is_set():
        try:
            async with connect(url, open_timeout=10, max_size=2**20) as ws:
                session.ws = ws
                attempts = 0
                receiver = asyncio.create_task(_receive(ws, session))
                if input_task is None:
                    session.emit(f"* connected to {url.split('?')[0]}; /help for commands")
                await session.rejoin()
                if input_task is None:
                    input_task = asyncio.create_task(read_input())
                waiter = asyncio.create_task(done.wait())
                await asyncio.wait({receiver, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not receiver.done():
                    receiver.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiver
        except InvalidStatus as refused:
            session.emit(f"! connection refused: HTTP {refused.response.status_code}")
            break
        except (OSError, WebSocketException, TimeoutError) as exc:
            session.emit(f"! connection lost: {exc}")
        finally:
            session.ws = None
        if done.is_set():
            break
        attempts += 1
        if attempts > MAX_RECONNECTS:
            session.emit("! giving up")
            break
        await asyncio.sleep(min(0.25 * 2**attempts, 5.0))
    if input_task is not None:
        input_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await input_task
        return 0
    return 1


async def _receive(ws: ClientConnection, session: ChatSession) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            session.receive(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.chat",
        description="Chat from the terminal (see the module docstring).",
    )
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--user", required=True, help="user id (1-128 characters)")
    parser.add_argument("--name", default=None, help="display name")
    parser.add_argument("--endpoints-file", type=Path, default=Path("sandbox-endpoints.json"))
    parser.add_argument("--url", default=None, help="WebSocket URL (instead of the endpoints file)")
    parser.add_argument("--token", default=None, help="JWT to connect with (when the app has auth)")
    parser.add_argument("--verbose", action="store_true", help="also show acks")
    args = parser.parse_args(argv)
    try:
        secret = None
        if args.url:
            base = args.url
        else:
            base, secret = endpoint_url(args.endpoints_file, args.region)
        url = connect_url(base, args.user, args.name, token=args.token, secret=secret)
        return asyncio.run(
            run_client(url, args.room, _stdin_lines(), sys.stdout, verbose=args.verbose)
        )
    except ClientError as error:
        print(f"chat: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
