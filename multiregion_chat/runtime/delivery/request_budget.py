"""The region's ``@connections`` request budget, shared by every FanoutWorker.

API Gateway throttles ``@connections`` calls with the account's per-region
quota (10,000 requests/s by default), which the clients' own frames also use.
The workers together must stay under ``FANOUT_REQUEST_BUDGET`` requests/s
however many of them run, so the budget lives in one place they all see: a
counter item per time window in the connections table::

    BUDGET#connections / <window number>    used (N), expiresAt

A worker takes a slice of the current window's allowance with one atomic
``ADD used :n`` (returning the new total, so it knows how much of its slice
was really free) and spends it within that window; what it cannot use before
the window ends is forfeited. Windows are short (``FANOUT_BUDGET_WINDOW_MS``,
50 ms) so that no interval of any length ever sees more than the budget plus
one window's allowance (5 %), which API Gateway's token bucket (burst capacity
of about half a second of quota) absorbs. With 100 ms windows a budget of 95 %
of a strict 1 s limit went over it by up to 5 %; each 429 halves a worker's
pace (``local``), which doubled the large_room bench's time (``python -m bench
--parts large_room``: 10.4 s with 100 ms windows, 6.6 s with 50 ms, for a 5 s
bound).

No library does this: Powertools has no rate limiting, and a distributed
token bucket for Lambda needs a shared store; DynamoDB is the one the
function already has. The cost is one UpdateItem per slice (a slice is a
quarter of a window's allowance, rounded up: 63 of the default 250), so
5,000 / 63 = about 80 writes/s at the whole default budget.

On top, each worker keeps its own AIMD limiter (``local``): a 429 from API
Gateway (client traffic used the quota) halves the worker's pace, successes
raise it again, and the post is retried, never dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from multiregion_chat.runtime.delivery.engine import Limiter
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.platform.observability import logger

__all__ = ["SharedBudget", "take_slice"]

WINDOW_TTL_SECONDS = 120


class SharedBudget:
    """A :class:`Limiter` drawing from the region-wide window counters, then ``local``.

    ``grant`` and ``clock`` are injectable for tests; by default slices come
    from DynamoDB and time is the wall clock (windows must line up across
    containers, so not ``monotonic``).
    """

    def __init__(
        self,
        *,
        rate_per_second: int | None = None,
        window_ms: int | None = None,
        local: Limiter | None = None,
        grant: Callable[[int, int, int], int] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        settings = runtime_settings.get_settings()
        rate = rate_per_second or settings.fanout_request_budget
        self.window_s = (window_ms or settings.fanout_budget_window_ms) / 1000.0
        self.per_window = max(1, int(rate * self.window_s))
        # Rounded up, so four slices cover the window's allowance (250 // 4 left 2 unused).
        self.slice = max(1, -(-self.per_window // 4))
        self._local = local
        self._grant = grant or take_slice
        self._clock = clock
        self._sleep = sleep
        self._window = -1
        self._tokens = 0
        self._exhausted = False  # this window's allowance is gone
        self._pending: asyncio.Future[None] | None = None
        self.granted = 0
        self.waits = 0

    def _current_window(self) -> int:
        return int(self._clock() / self.window_s)

    async def _fetch(self, window: int) -> None:
        try:
            granted = await asyncio.to_thread(self._grant, window, self.slice, self.per_window)
        except Exception:
            # No slice (DynamoDB throttled the counter, say): the same as an
            # exhausted window, so callers wait for the next one and try again.
            logger.warning("could not reserve a budget slice; waiting for the next window")
            granted = 0
        finally:
            self._pending = None
        self.granted += granted
        if window == self._window:  # a slice of a window that has passed is forfeited
            self._tokens += granted
            self._exhausted = granted < self.slice

    def _prefetch(self, window: int) -> asyncio.Future[None]:
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._fetch(window))
        return self._pending

    async def acquire(self) -> None:
        if self._local is not None:
            await self._local.acquire()
        # One event loop runs every caller: no await between a check and its update.
        while True:
            window = self._current_window()
            if window != self._window:
                self._window, self._tokens, self._exhausted = window, 0, False
            if self._tokens > 0:
                self._tokens -= 1
                # The next slice is asked for while this one is being spent, so
                # posting does not stall on the DynamoDB round trip.
                if self._tokens <= self.slice // 2 and not self._exhausted:
                    self._prefetch(window)
                return
            if self._exhausted:
                # This window's allowance is gone: wait for the next one.
                self.waits += 1
                await self._sleep(max(0.0, (window + 1) * self.window_s - self._clock()))
                continue
            # Shielded: a caller that gives up (its deadline) must not cancel
            # the fetch the other callers are waiting for.
            await asyncio.shield(self._prefetch(window))

    def throttled(self) -> None:
        if self._local is not None:
            self._local.throttled()

    def succeeded(self) -> None:
        if self._local is not None:
            self._local.succeeded()


def take_slice(window: int, wanted: int, per_window: int) -> int:
    """Reserve up to ``wanted`` requests of ``window``; returns how many were free."""
    response = aws_clients.dynamodb().update_item(
        TableName=runtime_settings.get_settings().connections_table,
        Key={"pk": {"S": "BUDGET#connections"}, "sk": {"S": str(window)}},
        UpdateExpression="ADD used :n SET expiresAt = if_not_exists(expiresAt, :exp)",
        ExpressionAttributeValues={
            ":n": {"N": str(wanted)},
            ":exp": {"N": str(int(time.time()) + WINDOW_TTL_SECONDS)},
        },
        ReturnValues="UPDATED_NEW",
    )
    used = int(response["Attributes"]["used"]["N"])
    before = used - wanted
    return max(0, min(wanted, per_window - before))
