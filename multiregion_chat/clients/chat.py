"""Command-line chat client.

``python -m multiregion_chat.clients.chat --region us-east-1 --room lobby --user alice [--name
Alice] [--http]``

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
  the newest id it saw (``runtime.protocol.ids.resume_after``, loaded from
  ``runtime/protocol/ids.py``), pages
  on with ``history`` while ``more``, and prints every message it had not seen once, in id
  order. Live messages that arrive meanwhile are held back and merged in.
- It pings every ``--ping-interval`` seconds (default 5 minutes: API Gateway closes idle
  connections after 10, and ``ping`` renews the user's presence in the other regions); a ping
  without ``pong`` drops the connection and reconnects.
- A slow region is not a dead one (clients/requests.py): a ``join`` or ``history`` page without
  an answer is followed by a ``ping``; while that is answered the request is asked again on
  the same connection with a jittered, capped backoff, instead of reconnecting.
- What other users wrote is printed with controls and bidi characters escaped
  (clients/safe_text.py).
- Presence: the members are printed on join, then every ``member`` frame; the client keeps
  them as a map by ``userId`` (``ChatSession.presence``, clients/session.py).

``--http`` uses the HTTP fallback instead (for networks that block WebSockets): a line is a
``POST``; each joined room is read with long-poll ``GET``s (``after`` = the newest id seen, ``wait``
= ``--poll-wait``). Output is the same. No presence, no ``ping``. While the newest message is
younger than the resume window the client also looks back from the resume point, so a message that
reached the region late (with a smaller id) is still shown. It starts with the room's last 5 s.

This module is the CLI (``main``) and ``run_client``; the rest is in ``clients/``:
``endpoints.py`` (URLs, the endpoints file), ``options.py`` (``ClientOptions``, ``Backoff``),
``render.py`` (frames as lines), ``session.py`` (``ChatSession``), ``websocket_client.py``
(the reconnect loop) and ``http_client.py`` (``HttpChat``, the HTTP fallback).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import sys
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TextIO

import aiohttp

from multiregion_chat.clients.endpoints import (
    ClientError,
    connect_url,
    endpoint_url,
    public_url,
    region_names,
)
from multiregion_chat.clients.failover import nearest_first
from multiregion_chat.clients.http_client import HttpChat
from multiregion_chat.clients.options import (
    PING_SECONDS,
    POLL_WAIT_SECONDS,
    REORDER_SECONDS,
    Backoff,
    ClientOptions,
)
from multiregion_chat.clients.resume import RESUME_WINDOW_MS
from multiregion_chat.clients.session import ChatSession
from multiregion_chat.clients.websocket_client import ConnectUrl, resolve_url, run_websocket

__all__ = ["ChatSession", "ClientOptions", "main", "run_client"]  # as docs/sandbox.md names them


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
    url: ConnectUrl | Sequence[ConnectUrl],
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
    urls = [url] if isinstance(url, str) or callable(url) else list(url)
    if not urls:
        raise ValueError("no URL")
    session = ChatSession(room, out, options)
    if session.options.nearest and len(urls) > 1:
        ranked = await nearest_first(urls, url_of=resolve_url)
        urls = [url for url, _ in ranked]
        shown = ", ".join(
            f"{public_url(resolve_url(u))} ({'unreachable' if t is None else f'{t * 1000:.1f} ms'})"
            for u, t in ranked
        )
        session.emit(f"* regions, nearest first: {shown}")
    if session.options.http:
        async with aiohttp.ClientSession() as http:
            fixed = [resolve_url(u) for u in urls]
            return await HttpChat(session, fixed, http).run(lines)
    return await run_websocket(session, urls, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multiregion_chat.clients.chat",
        description="Chat from the terminal (see the module docstring).",
    )
    parser.add_argument(
        "--region",
        default="us-east-1",
        help="region in the endpoints file; several (a,b) to fail over in that order, or"
        " 'all': every region of the file, nearest first",
    )
    parser.add_argument(
        "--nearest",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="order the regions by measured connect time (default: with --region all)",
    )
    parser.add_argument(
        "--reorder-ms",
        type=int,
        default=int(REORDER_SECONDS * 1000),
        metavar="MS",
        help="hold live messages this long to print them in id order (default 250; 0: off)",
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
        " file (its oidc key or signingSecret)",
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
    if not 0 <= args.poll_wait <= 20 or args.resume_window_ms < 0 or args.reorder_ms < 0:
        parser.error("--poll-wait must be 0-20; --resume-window-ms, --reorder-ms >= 0")
    options = ClientOptions(
        http=args.http,
        verbose=args.verbose,
        ping_seconds=args.ping_interval,
        backoff=Backoff(args.reconnect_attempts, args.backoff, max(args.backoff, args.backoff_max)),
        resume_window_ms=args.resume_window_ms,
        poll_wait=args.poll_wait,
        reorder_seconds=args.reorder_ms / 1000,
        nearest=args.region.strip() == "all" if args.nearest is None else args.nearest,
    )
    kind = "http" if args.http else "websocket"
    try:
        mint = None
        if args.url:
            bases = list(args.url)
        else:
            bases = []
            for region in region_names(args.endpoints_file, args.region):
                base, mint = endpoint_url(args.endpoints_file, region, kind)
                bases.append(base)
            if not bases:
                raise ClientError("--region names no region")
        if args.token is None and mint is None:
            raise ClientError(
                "no token: pass --token (see README, Tokens), or use a sandbox endpoints file"
                " that has a signingSecret or an oidc key"
            )
        rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
        # With the sandbox's key, every (re)connect mints a fresh token: a
        # connection closed with token_expired comes back at once.
        urls: list[ConnectUrl] = [
            functools.partial(
                connect_url,
                base,
                args.user,
                args.name,
                token=args.token,
                mint=mint,
                rooms=rooms,
            )
            for base in bases
        ]
        if args.token is None and mint is not None:
            # ... and the open connection is extended before its token expires.
            options = dataclasses.replace(
                options,
                fresh_token=functools.partial(mint, args.user, name=args.name, rooms=rooms),
            )
        return asyncio.run(run_client(urls, args.room, _stdin_lines(), sys.stdout, options))
    except ClientError as error:
        print(f"chat: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
