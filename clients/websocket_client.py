"""The WebSocket run loop: connect, re-join, read input; reconnect with backoff and fail over."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.protocol import State

from clients.endpoints import public_url
from clients.session import ChatSession, drain, until

ConnectUrl = str | Callable[[], str]


async def run_websocket(
    session: ChatSession, urls: Sequence[ConnectUrl], lines: AsyncIterator[str]
) -> int:
    """Run ``session`` over WebSocket until the input ends or it gives up; the exit status.

    A callable URL is called for every (re)connect: with a minted token it
    yields a fresh one, so a reconnect after ``token_expired`` succeeds.
    """
    options = session.options
    done = asyncio.Event()
    input_task: asyncio.Task[None] | None = None

    async def read_input() -> None:
        try:
            async for line in lines:
                if not await session.command(line):
                    break
            await drain(session, options.drain_seconds)
        finally:
            done.set()

    attempt = 0
    index = 0
    while not done.is_set():
        target = urls[index]
        url = target() if callable(target) else target
        opened = False
        try:
            async with connect(url, open_timeout=10, max_size=2**20) as ws:
                opened = True
                session.attach(ws)
                receiver = asyncio.create_task(_receive(ws, session))
                if input_task is None:
                    session.emit(f"* connected to {public_url(url)}; /help for commands")
                else:
                    session.emit(f"* reconnected to {public_url(url)}")
                await session.rejoin()
                if ws.state is State.OPEN:
                    attempt = 0
                    session.ready.set()
                pinger = asyncio.create_task(session.keepalive())
                refresher = asyncio.create_task(session.keep_token_fresh())
                if input_task is None:
                    input_task = asyncio.create_task(read_input())
                waiter = asyncio.create_task(done.wait())
                await asyncio.wait({receiver, waiter}, return_when=asyncio.FIRST_COMPLETED)
                for task in (waiter, pinger, refresher, receiver):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if not done.is_set():
                    session.emit(f"! connection lost (code {ws.close_code})")
        except InvalidStatus as refused:
            status = refused.response.status_code
            session.emit(f"! connection refused: HTTP {status}")
            if status < 500 and status != 429:
                break  # the request is wrong (identity, stage): retrying cannot help
        except (OSError, WebSocketException, TimeoutError) as exc:
            what = "connection lost" if opened else f"cannot connect to {public_url(url)}"
            session.emit(f"! {what}: {exc}")
        finally:
            session.detach()
        if done.is_set():
            break
        if not opened:
            index = (index + 1) % len(urls)  # try the next region
        attempt += 1
        if attempt > options.backoff.attempts:
            session.emit(f"! giving up after {options.backoff.attempts} attempts")
            break
        delay = options.backoff.delay(attempt)
        session.emit(
            f"* reconnecting in {delay:.1f}s (attempt {attempt} of {options.backoff.attempts})"
        )
        await until(done, options.sleep(delay))
    if input_task is not None and not input_task.done():
        input_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await input_task
    return 0 if done.is_set() else 1


async def _receive(ws: ClientConnection, session: ChatSession) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            session.receive(raw)
