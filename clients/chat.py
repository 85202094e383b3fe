"""Command-line chat client.

``python -m clients.chat --region us-east-1 --room lobby --user alice [--name Alice] [--http]``

Joins the room, prints frames as they arrive and sends each line you type. The URL comes from
the sandbox's endpoints file (``--endpoints-file``, default ``sandbox-endpoints.json``) or
``--url`` (any deployment). Identity is a token (docs/protocol.md, "Connecting"): minted for
``--user``/``--name`` (and ``--rooms``) with the endpoints file's ``signingSecret``, or given
with ``--token`` (a deployment in AWS: README, "Tokens"). Over WebSocket it goes on the connect
URL (``?token=``), over ``--http`` in ``Authorization: Bearer``. Without either the client
refuses to start. (``connect_url`` still builds ``?userId=&name=`` without a token, for test
servers without auth.)

Commands: ``/join ROOM``, ``/leave [ROOM]``, ``/history [N]``, ``/who``, ``/ping``,
``/raw JSON`` (send a frame as is), ``/quit``; anything else is sent to the current room. At
the end of input the client waits (bounded) for the replies to what it sent and for its own
messages to come back, then exits.

Continuity (docs/protocol.md, "Resuming after a disconnect"):

- When the connection drops, the client reconnects with exponential backoff and jitter
  (``--reconnect-attempts`` failures in a row, then it gives up with status 1). With several
  ``--region`` values (``a,b``) a region that cannot be reached is skipped for the next.
- It re-joins every room with ``after`` = the resume point ``--resume-window-ms`` (5 s) before
  the newest id it saw (``chat.ids.resume_after``, loaded from ``lambdas/chat/ids.py``), pages
  on with ``history`` while ``more``, and prints every message it had not seen once, in id
  order. Live messages that arrive meanwhile are held back and merged in.
- It pings every ``--ping-interval`` seconds (default 5 minutes: API Gateway closes idle
  connections after 10, and ``ping`` renews the user's presence in the other regions); a ping
  without ``pong`` drops the connection and reconnects.
- Presence: the members are printed on join, then every ``member`` frame; the client keeps
  them as a map by ``userId`` (``ChatSession.presence``).

``--http`` uses the HTTP fallback instead (for networks that block WebSockets): a line is a
``POST``; each joined room is read with long-poll ``GET``s (``after`` = the newest id seen,
``wait`` = ``--poll-wait``). Output is the same. No presence, no ``ping``. While the newest
message is younger than the resume window the client also looks back from the resume point,
so a message that reached the region late (with a smaller id) is still shown. It starts with
the room's last 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote

import aiohttp

from clients.endpoints import ClientError, connect_url, endpoint_url
from clients.options import (
    HISTORY_PAGE,
    MAX_CATCH_UP_PAGES,
    PING_SECONDS,
    POLL_WAIT_SECONDS,
    Backoff,
    ClientOptions,
)
from clients.render import render
from clients.resume import RESUME_WINDOW_MS, id_timestamp_ms, resume_after, resume_from_now
from clients.session import HELP, ChatSession, Message, _drain, _until
from clients.websocket_client import _run_websocket

LOOK_BACK_MARGIN_MS = 1000  # HTTP: keep looking back this long beyond the resume window
LOOK_BACK_POLL_SECONDS = 1.0  # HTTP: long-poll slice while looking back


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
    url: str | Sequence[str],
    room: str,
    lines: AsyncIterator[str],
    out: TextIO,
    options: ClientOptions | None = None,
) -> int:
    """Join ``room``, send ``lines``, write what arrives to ``out``; the exit status.

    ``url``: a WebSocket URL with identity (:func:`connect_url`), or several to fail over
    between; with ``options.http`` the HTTP API's base URL(s) instead, identity in the query.
    0 when the input ran out (or ``/quit``), 1 when the client gave up or was refused.
    """
    urls = [url] if isinstance(url, str) else list(url)
    if not urls:
        raise ValueError("no URL")
    session = ChatSession(room, out, options)
    if session.options.http:
        async with aiohttp.ClientSession() as http:
            return await HttpChat(session, urls, http).run(lines)
    return await _run_websocket(session, urls, lines)


class HttpError(Exception):
    def __init__(self, status: int, document: Any) -> None:
        self.status = status
        self.document = document
        if isinstance(document, dict) and "code" in document:
            text = f"{document.get('code')}: {document.get('message')}"
        else:
            text = json.dumps(document)[:200]
        super().__init__(f"HTTP {status} {text}")


class HttpChat:
    """The same client over the HTTP fallback: POST to send, long-poll GET per room."""

    def __init__(self, session: ChatSession, urls: list[str], http: aiohttp.ClientSession) -> None:
        self.session = session
        self.http = http
        self.bases: list[str] = []
        self.identity: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        for url in urls:
            base, _, query = url.partition("?")
            self.bases.append(base.rstrip("/"))
            self.identity = dict(parse_qsl(query))
        token = self.identity.pop("token", None)
        if token:
            self.headers["authorization"] = f"Bearer {token}"
        self.index = 0
        self.pollers: dict[str, asyncio.Task[None]] = {}
        self.gave_up = asyncio.Event()
        self.started_ms = int(time.time() * 1000)

    @property
    def options(self) -> ClientOptions:
        return self.session.options

    def _url(self, room: str) -> str:
        return f"{self.bases[self.index]}/rooms/{quote(room, safe='')}/messages"

    async def _call(
        self,
        method: str,
        room: str,
        params: dict[str, str],
        timeout: float,
        body: Any = None,
    ) -> tuple[int, Any]:
        async with self.http.request(
            method,
            self._url(room),
            params=params,
            json=body,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as answer:
            try:
                document = await answer.json(content_type=None)
            except ValueError:
                document = await answer.text()
            return answer.status, document

    async def post(self, room: str, text: str) -> None:
        try:
            status, document = await self._call(
                "POST", room, self.identity, self.options.reply_seconds, body={"body": text}
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.session.emit(f"! not sent: {exc or type(exc).__name__}")
            self._next_base()
            return
        if status == 202 and isinstance(document, dict) and isinstance(document.get("id"), str):
            message_id = document["id"]
            if message_id not in self.session.seen:
                self.session.unechoed.add(message_id)
            if self.options.verbose:
                self.session.emit(f"  (sent {message_id})")
        else:
            self.session.emit(f"! {HttpError(status, document)}")

    async def read(self, room: str, after: str | None, wait: float = 0.0) -> list[Message]:
        """Messages after ``after`` (all pages, bounded); long-polls ``wait`` s for the first."""
        collected: list[Message] = []
        for _ in range(MAX_CATCH_UP_PAGES):
            params = {"limit": str(HISTORY_PAGE), "wait": f"{wait:g}"}
            if after:
                params["after"] = after
            status, document = await self._call(
                "GET", room, params, wait + self.options.reply_seconds
            )
            if status != 200 or not isinstance(document, dict):
                raise HttpError(status, document)
            messages = [m for m in document.get("messages") or [] if isinstance(m, dict)]
            collected += messages
            if not (document.get("more") and messages):
                break
            after, wait = str(messages[-1]["id"]), 0.0
        return collected

    def _next_base(self) -> None:
        self.index = (self.index + 1) % len(self.bases)

    def _looking_back(self, room: str) -> bool:
        """True while a message could still reach the region late (inside the resume window)."""
        last = self.session.last_id.get(room)
        newest_ms = id_timestamp_ms(last) if last else self.started_ms
        age_ms = time.time() * 1000 - newest_ms
        return age_ms < self.options.resume_window_ms + LOOK_BACK_MARGIN_MS

    async def poll(self, room: str) -> None:
        session = self.session
        window = self.options.resume_window_ms
        cursor = session.last_id.get(room) or resume_from_now(window)
        session.emit(f"* joined #{room} over HTTP (no presence)")
        failures = 0
        while True:  # until /leave, the end of input, or too many failures in a row
            looking_back = self._looking_back(room)
            wait = self.options.poll_wait
            if looking_back:
                wait = min(wait, LOOK_BACK_POLL_SECONDS)
            try:
                got = await self.read(room, cursor, wait)
                last = session.last_id.get(room)
                if looking_back and last:
                    got += await self.read(room, resume_after(last, window))
            except (aiohttp.ClientError, TimeoutError, HttpError) as exc:
                failures += 1
                if failures > self.options.backoff.attempts:
                    session.emit(f"! #{room}: giving up after {failures - 1} retries: {exc}")
                    self.gave_up.set()
                    return
                delay = self.options.backoff.delay(failures)
                session.emit(f"! #{room}: {exc or type(exc).__name__}; retrying in {delay:.1f}s")
                self._next_base()
                await self.options.sleep(delay)
                continue
            failures = 0
            session.show(got)
            cursor = max([cursor, *(str(m.get("id", "")) for m in got)])

    def follow(self, room: str) -> None:
        if room not in self.pollers or self.pollers[room].done():
            self.pollers[room] = asyncio.create_task(self.poll(room))

    async def unfollow(self, room: str) -> None:
        task = self.pollers.pop(room, None)
        if task is None:
            self.session.emit(f"! not_member: not polling #{room}")
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.session.emit(f"* left #{room}")

    async def command(self, line: str) -> bool:
        session = self.session
        line = line.rstrip("\n")
        if not line.strip():
            return True
        if not line.startswith("/"):
            await self.post(session.room, line)
            return True
        verb, _, argument = line[1:].partition(" ")
        argument = argument.strip()
        if verb in ("quit", "exit"):
            return False
        if verb == "join" and argument:
            session.room = argument
            self.follow(argument)
        elif verb == "leave":
            await self.unfollow(argument or session.room)
        elif verb == "history":
            try:
                status, document = await self._call(
                    "GET",
                    session.room,
                    {"limit": argument if argument.isdigit() else "50"},
                    self.options.reply_seconds,
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                session.emit(f"! history: {exc or type(exc).__name__}")
                return True
            if status == 200 and isinstance(document, dict):
                frame = {"type": "history", "room": session.room, **document}
                session.emit(render(frame) or "")
            else:
                session.emit(f"! {HttpError(status, document)}")
        elif verb in ("who", "presence", "ping", "raw"):
            session.emit(f"! /{verb} is not available over HTTP")
        else:
            session.emit(HELP)
        return True

    async def run(self, lines: AsyncIterator[str]) -> int:
        session = self.session
        session.emit(f"* using the HTTP API at {self.bases[0]}; /help for commands")
        self.follow(session.room)
        finished = False

        async def read_input() -> None:
            nonlocal finished
            async for line in lines:
                if not await self.command(line):
                    break
            await _drain(session, self.options.drain_seconds)
            finished = True

        reader = asyncio.create_task(read_input())
        await _until(self.gave_up, reader)
        for task in self.pollers.values():
            task.cancel()
        for task in self.pollers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return 0 if finished else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.chat",
        description="Chat from the terminal (see the module docstring).",
    )
    parser.add_argument(
        "--region",
        default="us-east-1",
        help="region in the endpoints file; several (a,b) to fail over when one is unreachable",
    )
    parser.add_argument("--room", default="lobby")
    parser.add_argument("--user", required=True, help="user id (1-128 characters)")
    parser.add_argument("--name", default=None, help="display name")
    parser.add_argument("--endpoints-file", type=Path, default=Path("sandbox-endpoints.json"))
    parser.add_argument(
        "--url",
        action="append",
        default=None,
        help="WebSocket URL, or with --http the HTTP API's URL (instead of the endpoints file;"
        " repeat to fail over)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="JWT to connect with (a deployment in AWS); else one is minted from the endpoints"
        " file's signingSecret",
    )
    parser.add_argument(
        "--rooms",
        default=None,
        help="comma-separated room patterns for the minted token (e.g. lobby,team-*);"
        " default: every room",
    )
    parser.add_argument(
        "--http", action="store_true", help="use the HTTP fallback API instead of WebSocket"
    )
    parser.add_argument("--verbose", action="store_true", help="also show acks")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=PING_SECONDS,
        metavar="SECONDS",
        help="seconds between pings (default 300)",
    )
    parser.add_argument(
        "--reconnect-attempts",
        type=int,
        default=Backoff.attempts,
        metavar="N",
        help="failed reconnects in a row before giving up (default 8)",
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=Backoff.base,
        metavar="SECONDS",
        help="first reconnect delay, doubled each attempt, with jitter (default 0.5)",
    )
    parser.add_argument(
        "--backoff-max",
        type=float,
        default=Backoff.cap,
        metavar="SECONDS",
        help="longest reconnect delay (default 15)",
    )
    parser.add_argument(
        "--resume-window-ms",
        type=int,
        default=RESUME_WINDOW_MS,
        metavar="MS",
        help="resume this long before the newest id seen (default 5000)",
    )
    parser.add_argument(
        "--poll-wait",
        type=float,
        default=POLL_WAIT_SECONDS,
        metavar="SECONDS",
        help="--http: long-poll wait, 0-20 (default 20)",
    )
    args = parser.parse_args(argv)
    if args.ping_interval <= 0 or args.reconnect_attempts < 0 or args.backoff < 0:
        parser.error("--ping-interval must be > 0; --reconnect-attempts, --backoff >= 0")
    if not 0 <= args.poll_wait <= 20 or args.resume_window_ms < 0:
        parser.error("--poll-wait must be 0-20; --resume-window-ms >= 0")
    options = ClientOptions(
        http=args.http,
        verbose=args.verbose,
        ping_seconds=args.ping_interval,
        backoff=Backoff(args.reconnect_attempts, args.backoff, max(args.backoff, args.backoff_max)),
        resume_window_ms=args.resume_window_ms,
        poll_wait=args.poll_wait,
    )
    kind = "http" if args.http else "websocket"
    try:
        secret = None
        if args.url:
            bases = list(args.url)
        else:
            bases = []
            for region in (r.strip() for r in args.region.split(",") if r.strip()):
                base, secret = endpoint_url(args.endpoints_file, region, kind)
                bases.append(base)
            if not bases:
                raise ClientError("--region names no region")
        if args.token is None and secret is None:
            raise ClientError(
                "no token: pass --token (see README, Tokens), or use a sandbox endpoints file"
                " that has a signingSecret"
            )
        rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
        urls = [
            connect_url(base, args.user, args.name, token=args.token, secret=secret, rooms=rooms)
            for base in bases
        ]
        return asyncio.run(run_client(urls, args.room, _stdin_lines(), sys.stdout, options))
    except ClientError as error:
        print(f"chat: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
