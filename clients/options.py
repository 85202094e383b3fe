"""The CLI client's settings: timings, paging, and the reconnect backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from clients.resume import RESUME_WINDOW_MS

DRAIN_SECONDS = 5.0
REPLY_SECONDS = 10.0
PING_SECONDS = 300.0  # API Gateway closes a connection idle for 10 minutes
# How often a minting client sends ``refresh`` with a fresh token: well inside
# the minted tokens' lifetime (clients.tokens: 1 hour), so `exp` never passes.
REFRESH_SECONDS = 1200.0
READY_SECONDS = 60.0  # how long a typed line waits for a reconnect before it is dropped
HISTORY_PAGE = 100
MAX_CATCH_UP_PAGES = 200  # 20,000 messages per catch-up; beyond that, /history
POLL_WAIT_SECONDS = 20.0  # the protocol's maximum long poll

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: exponential from ``base`` to ``cap`` seconds, with equal jitter.

    ``attempts`` failed attempts in a row (connecting, or a connection that dropped before it
    was usable) make the client give up.
    """

    attempts: int = 8
    base: float = 0.5
    cap: float = 15.0

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds before attempt ``attempt`` (1, 2, ...): half the step fixed, half random."""
        step = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return step / 2 + rng() * step / 2


@dataclass
class ClientOptions:
    """What ``run_client`` takes: a field per CLI flag, and timings a test can shorten."""

    http: bool = False  # the HTTP fallback instead of WebSocket
    verbose: bool = False  # also show acks
    drain_seconds: float = DRAIN_SECONDS
    reply_seconds: float = REPLY_SECONDS
    ping_seconds: float = PING_SECONDS
    ready_seconds: float = READY_SECONDS
    backoff: Backoff = field(default_factory=Backoff)
    resume_window_ms: int = RESUME_WINDOW_MS
    poll_wait: float = POLL_WAIT_SECONDS
    sleep: Sleep = asyncio.sleep  # the backoff's waits (a test can hold one to widen a gap)
    # A minter of fresh tokens (the sandbox's secret): the open connection is
    # extended with ``refresh`` every ``refresh_seconds`` (docs/protocol.md).
    fresh_token: Callable[[], str] | None = None
    refresh_seconds: float = REFRESH_SECONDS
