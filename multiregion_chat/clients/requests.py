"""Requests on the current WebSocket connection, and telling a slow region from a dead one.

``RequestChannel`` (a base of ``ChatSession``) sends frames with a ``ref`` and matches the
replies. A reply that comes after its requester stopped waiting is dropped, never shown as if
unasked. Under overload a region answers late, not never: a ``join`` without an answer is
followed by a ``ping``; a ``pong`` (or a ``rate_limited`` answer) means the region is slow, so
the join is asked again on the same connection with a growing, jittered, capped wait
(``ClientOptions.rejoin``), and an answer to any of the attempts counts. Only when the ping
goes unanswered too (``alive_seconds``) is the region taken for down: the connection is
dropped and the reconnect loop fails over. Asking again is safe: a join is idempotent
server-side and every attempt carries the same ``after``, so its ``missed`` covers any gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from multiregion_chat.clients.options import ClientOptions

Message = dict[str, Any]
Answer = asyncio.Future[Message | None]


def is_alive_answer(reply: Message | None) -> bool:
    """A ``ping``'s answer that shows the region's app at work: ``pong``, or ``rate_limited``
    (busy, and saying so)."""
    return reply is not None and (reply.get("type") == "pong" or _retry_hint(reply) is not None)


def _retry_hint(reply: Message) -> float | None:
    """Seconds a ``rate_limited`` answer asks to wait; None for any other answer."""
    if reply.get("type") != "error" or reply.get("code") != "rate_limited":
        return None
    hint = reply.get("retryAfterMs")
    return min(hint, 30_000) / 1000 if isinstance(hint, int) and hint > 0 else 0.0


class RequestChannel:
    """Frames with a ``ref`` and their replies, on the connection ``ws`` (None: none)."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self.ws: ClientConnection | None = None
        self.waiting: dict[str, Answer] = {}
        self.quiet: set[str] = set()  # refs whose reply the requester shows itself
        self.stale: set[str] = set()  # refs given up on: a late reply is dropped
        self.unhealthy: str | None = None  # why this connection's region looks down
        self._refs = itertools.count(1)

    def emit(self, text: str) -> None:  # pragma: no cover - ChatSession prints
        raise NotImplementedError

    async def drop_connection(self) -> None:
        """Close the connection (the reconnect loop opens a new one)."""
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()

    def next_ref(self) -> str:
        return f"c{next(self._refs)}"

    def take_reply(self, ref: Any, reply: Message) -> None:
        """Hand ``reply`` to whoever waits for ``ref``."""
        future = self.waiting.pop(ref, None) if isinstance(ref, str) else None
        if future is not None and not future.done():
            future.set_result(reply)

    def fail_requests(self) -> None:
        """The connection is gone: every waiting request ends without a reply."""
        for future in self.waiting.values():
            if not future.done():
                future.set_result(None)
        self.waiting.clear()
        self.quiet.clear()
        self.stale.clear()

    async def open_request(self, frame: Message, *, quiet: bool) -> tuple[str, Answer] | None:
        """Send ``frame`` with a fresh ref; the ref and the future of its reply (None: no
        connection)."""
        ws = self.ws
        if ws is None:
            return None
        ref = self.next_ref()
        future: Answer = asyncio.get_running_loop().create_future()
        self.waiting[ref] = future
        if quiet:
            self.quiet.add(ref)
        try:
            # UTF-8, not ASCII-escaped: a frame over 32 KB would close the connection
            # (1009); the largest allowed body stays well inside one frame this way.
            await ws.send(json.dumps({**frame, "ref": ref}, ensure_ascii=False))
        except ConnectionClosed:
            self.close_request(ref)
            return None
        return ref, future

    def close_request(self, ref: str) -> None:
        """Stop waiting for ``ref``; a reply that still comes is dropped."""
        if self.waiting.pop(ref, None) is not None:
            self.stale.add(ref)
        self.quiet.discard(ref)

    async def request(
        self, frame: Message, *, quiet: bool = False, seconds: float | None = None
    ) -> Message | None:
        """Send ``frame``; its direct reply within ``seconds`` (default ``reply_seconds``),
        None without one."""
        opened = await self.open_request(frame, quiet=quiet)
        if opened is None:
            return None
        ref, future = opened
        try:
            return await asyncio.wait_for(future, seconds or self.options.reply_seconds)
        except TimeoutError:
            return None
        finally:
            self.close_request(ref)

    async def probe(self) -> Message | None:
        """A ``ping``'s answer within ``alive_seconds`` (API Gateway's integration timeout is
        29 s: later, no answer can come); None without one."""
        ping = {"action": "ping"}
        return await self.request(ping, quiet=True, seconds=self.options.alive_seconds)

    async def ask_until_answered(self, frame: Message, what: str) -> Message | None:
        """``frame``'s answer, asked again while the region is slow but alive (module doc).

        None: the connection is gone, or was dropped here (no ``pong`` either: the region is
        down, ``unhealthy`` says so; or still no answer after ``rejoin.attempts`` tries).
        """
        asked: dict[str, Answer] = {}
        backoff = self.options.rejoin
        try:
            for attempt in itertools.count(1):
                opened = await self.open_request(frame, quiet=True)
                if opened is None:
                    return None
                asked[opened[0]] = opened[1]
                reply = await _first_answer(asked, self.options.reply_seconds)
                if reply is None and self.ws is not None:
                    alive = is_alive_answer(await self.probe())
                    reply = await _first_answer(asked, 0)  # it may have come meanwhile
                    if reply is None and not alive and self.ws is not None:
                        self.unhealthy = f"no answer to {what}, nor to ping"
                        self.emit(f"! no answer to {what}, nor to ping; reconnecting")
                        await self.drop_connection()
                        return None
                if self.ws is None:
                    return None
                hint = None if reply is None else _retry_hint(reply)
                if reply is not None and hint is None:
                    return reply
                if attempt >= backoff.attempts:
                    self.emit(f"! still no answer to {what} after {attempt} tries; reconnecting")
                    await self.drop_connection()
                    return None
                delay = backoff.delay(attempt, hint=hint)
                why = "rate limited" if hint is not None else "no answer yet; ping answered: slow"
                self.emit(f"* {what}: {why}; asking again in {delay:.1f}s")
                reply = await _first_answer(asked, delay)  # a late answer ends the wait
                if reply is not None and _retry_hint(reply) is None:
                    return reply
            return None  # pragma: no cover - the loop returns
        finally:
            for ref in asked:
                self.close_request(ref)


async def _first_answer(asked: dict[str, Answer], seconds: float) -> Message | None:
    """The first answer among ``asked`` within ``seconds``; answered ones leave ``asked``."""
    pending: Iterable[Answer] = asked.values()
    if not asked:
        await asyncio.sleep(seconds)  # nothing left to wait for: only the pause
    elif seconds > 0 and not any(future.done() for future in pending):
        await asyncio.wait(list(pending), timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    answers = [(ref, future.result()) for ref, future in asked.items() if future.done()]
    for ref, _ in answers:
        del asked[ref]
    return next((reply for _, reply in answers if reply is not None), None)
