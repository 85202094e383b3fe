"""The WebSocket run loop: connect, re-join, read input; reconnect with backoff and fail over.

When is a region "failed", so that the client moves to the next URL?

- it cannot be reached, or refuses the handshake with a 5xx (API Gateway down, or a region
  taken down in the sandbox): at once;
- a ``ping`` gets no answer within ``alive_seconds`` (30 s): at once (answered late, or
  ``rate_limited``, the region is slow, not down: clients/requests.py);
- connections to it drop before they are usable or within ``stable_seconds``,
  ``region_failures`` times in a row ("repeated close").

A 429 at the handshake (too many new connections: API Gateway's connect quota) is not a region
failure: the client waits (the server's ``Retry-After`` when it sends one) and tries the same
region again. A close with a reason ``retry-after=N`` is honoured the same way. Every wait is
jittered and grows (``Backoff``); ``backoff.attempts`` failures in a row make the client give
up. After a move the client re-joins from its resume point, so nothing is lost and nothing is
shown twice (``ChatSession``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from multiregion_chat.clients.endpoints import public_url
from multiregion_chat.clients.failover import close_hint, retry_after
from multiregion_chat.clients.session import ChatSession, drain, until

__all__ = ["ConnectUrl", "resolve_url", "run_websocket"]

# A callable URL is called for every (re)connect: with a minted token it yields a
# fresh one, so a reconnect after ``token_expired`` succeeds.
ConnectUrl = str | Callable[[], str]


def resolve_url(target: ConnectUrl) -> str:
    """The URL to connect to now (a callable mints a fresh token each time)."""
    return target() if callable(target) else target


@dataclass
class Attempt:
    """How one connection attempt ended."""

    opened: bool = False
    usable: bool = False  # every room was re-joined on it
    lasted: float = 0.0  # seconds it stayed open
    hint: float | None = None  # the server asked to wait this long
    fatal: bool = False  # refused for a reason retrying cannot fix (identity, stage)
    region_down: bool = False  # unreachable, 5xx, or no pong: move on at once


class WebSocketRunner:
    """One client's connections over time: which URL, when to retry, when to give up."""

    def __init__(
        self, session: ChatSession, urls: Sequence[ConnectUrl], lines: AsyncIterator[str]
    ) -> None:
        self.session = session
        self.urls = urls
        self.lines = lines
        self.options = session.options
        self.done = asyncio.Event()
        self.input_task: asyncio.Task[None] | None = None
        self.index = 0
        self.failures = 0  # attempts in a row that failed (reset by a usable connection)
        self.early_drops = 0  # connections to the current region that dropped early, in a row

    async def run(self) -> int:
        try:
            while not self.done.is_set():
                attempt = await self._connect(resolve_url(self.urls[self.index]))
                if self.done.is_set() or attempt.fatal or not await self._wait_before_next(attempt):
                    break
        finally:
            await self._stop_input()
        return 0 if self.done.is_set() else 1

    async def _read_input(self) -> None:
        try:
            async for line in self.lines:
                if not await self.session.command(line):
                    break
            await drain(self.session, self.options.drain_seconds)
        finally:
            self.done.set()

    async def _stop_input(self) -> None:
        if self.input_task is not None and not self.input_task.done():
            self.input_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.input_task

    async def _connect(self, url: str) -> Attempt:
        """One connection: open, re-join, run until it ends; how it ended."""
        session = self.session
        attempt = Attempt()
        try:
            async with connect(url, open_timeout=10, max_size=2**20) as ws:
                attempt.opened = True
                await self._use(ws, url, attempt)
        except InvalidStatus as refused:
            status = refused.response.status_code
            session.emit(f"! connection refused: HTTP {status}")
            attempt.hint = retry_after(refused.response.headers)
            attempt.fatal = status < 500 and status != 429
            attempt.region_down = status >= 500
        except (OSError, WebSocketException, TimeoutError) as exc:
            what = "connection lost" if attempt.opened else f"cannot connect to {public_url(url)}"
            session.emit(f"! {what}: {exc}")
            attempt.region_down = not attempt.opened
        finally:
            session.detach()
        return attempt

    async def _use(self, ws: ClientConnection, url: str, attempt: Attempt) -> None:
        session = self.session
        loop = asyncio.get_running_loop()
        started = loop.time()
        session.attach(ws)
        receiver = asyncio.create_task(_receive(ws, session))
        first = self.input_task is None
        session.emit(
            f"* {'connected' if first else 'reconnected'} to {public_url(url)}"
            + ("; /help for commands" if first else "")
        )
        await session.rejoin()
        if ws.state is State.OPEN:
            attempt.usable = True
            session.ready.set()
        pinger = asyncio.create_task(session.keepalive())
        refresher = asyncio.create_task(session.keep_token_fresh())
        if self.input_task is None:
            self.input_task = asyncio.create_task(self._read_input())
        waiter = asyncio.create_task(self.done.wait())
        await asyncio.wait({receiver, waiter, pinger}, return_when=asyncio.FIRST_COMPLETED)
        attempt.region_down = session.unhealthy is not None
        for task in (waiter, pinger, refresher, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        attempt.lasted = loop.time() - started
        if not self.done.is_set():
            attempt.hint = close_hint(ws.close_reason)
            session.emit(f"! connection lost (code {ws.close_code})")

    def _region_failed(self, attempt: Attempt) -> bool:
        if attempt.region_down:
            return True
        if not attempt.opened:
            return False  # a 429: the region is up, only busy
        if attempt.usable and attempt.lasted >= self.options.stable_seconds:
            self.early_drops = 0
            return False
        self.early_drops += 1
        return self.early_drops >= self.options.region_failures

    async def _wait_before_next(self, attempt: Attempt) -> bool:
        """Pick the URL and wait for the next attempt; False to give up."""
        options = self.options
        if self._region_failed(attempt) and len(self.urls) > 1:
            self.index = (self.index + 1) % len(self.urls)
            self.early_drops = 0
            if attempt.opened:  # unreachable ones say so already
                next_url = public_url(resolve_url(self.urls[self.index]))
                self.session.emit(f"* failing over to {next_url}")
        self.failures = 1 if attempt.usable and attempt.lasted > 0 else self.failures + 1
        if self.failures > options.backoff.attempts:
            self.session.emit(f"! giving up after {options.backoff.attempts} attempts")
            return False
        delay = options.backoff.delay(self.failures, hint=attempt.hint)
        of = f"attempt {self.failures} of {options.backoff.attempts}"
        self.session.emit(f"* reconnecting in {delay:.1f}s ({of})")
        await until(self.done, options.sleep(delay))
        return not self.done.is_set()


async def run_websocket(
    session: ChatSession, urls: Sequence[ConnectUrl], lines: AsyncIterator[str]
) -> int:
    """Run ``session`` over WebSocket until the input ends or it gives up; the exit status."""
    return await WebSocketRunner(session, urls, lines).run()


async def _receive(ws: ClientConnection, session: ChatSession) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            session.receive(raw)
