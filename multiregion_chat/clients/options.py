"""The CLI client's settings: timings, paging, and the reconnect backoff."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from multiregion_chat.clients.resume import RESUME_WINDOW_MS

DRAIN_SECONDS = 5.0
REPLY_SECONDS = 10.0
# How long a liveness ``ping`` waits for its answer before the region is taken for down: API
# Gateway's integration timeout is 29 s, so after 30 s no answer can come any more.
ALIVE_SECONDS = 30.0
PING_SECONDS = 300.0  # API Gateway closes a connection idle for 10 minutes
# How often a minting client sends ``refresh`` with a fresh token: well inside
# the minted tokens' lifetime (clients.tokens: 1 hour), so `exp` never passes.
REFRESH_SECONDS = 1200.0
READY_SECONDS = 60.0  # how long a typed line waits for a reconnect before it is dropped
HISTORY_PAGE = 100
MAX_CATCH_UP_PAGES = 200  # 20,000 messages per catch-up; beyond that, /history
POLL_WAIT_SECONDS = 20.0  # the protocol's maximum long poll
REORDER_SECONDS = 0.25  # the CLI holds live messages this long to print them in id order
STABLE_SECONDS = 30.0  # a connection that lasted this long was not a failure of its region
REGION_FAILURES = 2  # failures in a row (refused, dropped early, no pong) before the next region
MAX_HINT_SECONDS = 300.0  # the longest server hint (Retry-After) honoured

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

    def delay(
        self, attempt: int, rng: Callable[[], float] = random.random, hint: float | None = None
    ) -> float:
        """Seconds before attempt ``attempt`` (1, 2, ...): half the step fixed, half random.

        ``hint``: the server asked for at least this long (``Retry-After``); the client waits
        that plus up to half as much again (spread, so the clients it refused together do not
        come back together), at most MAX_HINT_SECONDS.
        """
        if hint is not None and hint > 0:
            hint = min(hint, MAX_HINT_SECONDS)
            return hint + rng() * hint / 2
        step = min(self.cap, self.base * 2 ** max(0, attempt - 1))
        return step / 2 + rng() * step / 2


# Joins asked again on a slow region (a ping answered, the join not): 1, 2, 4, ... up to 30 s,
# jittered, 10 tries (about 4 minutes with the waits for answers) before reconnecting.
REJOIN_BACKOFF = Backoff(attempts=10, base=1.0, cap=30.0)


@dataclass
class ClientOptions:
    """What ``run_client`` takes: a field per CLI flag, and timings a test can shorten."""

    http: bool = False  # the HTTP fallback instead of WebSocket
    verbose: bool = False  # also show acks
    drain_seconds: float = DRAIN_SECONDS
    reply_seconds: float = REPLY_SECONDS
    alive_seconds: float = ALIVE_SECONDS
    rejoin: Backoff = REJOIN_BACKOFF
    ping_seconds: float = PING_SECONDS
    ready_seconds: float = READY_SECONDS
    backoff: Backoff = field(default_factory=Backoff)
    resume_window_ms: int = RESUME_WINDOW_MS
    poll_wait: float = POLL_WAIT_SECONDS
    reorder_seconds: float = 0.0  # hold live messages to print them in id order (CLI: 0.25)
    nearest: bool = False  # order the regions by measured connect time first
    stable_seconds: float = STABLE_SECONDS
    region_failures: int = REGION_FAILURES
    sleep: Sleep = asyncio.sleep  # the backoff's waits (a test can hold one to widen a gap)
    # A minter of fresh tokens (the sandbox's secret): the open connection is
    # extended with ``refresh`` every ``refresh_seconds`` (docs/protocol.md).
    fresh_token: Callable[[], str] | None = None
    refresh_seconds: float = REFRESH_SECONDS
