"""The ``@connections`` management API of one region's WebSocket API.

``POST|GET|DELETE [/<stage>]/@connections/<connectionId>`` with API Gateway's answers: 200 (POST),
the connection's info (GET), 204 (DELETE); 410 ``GoneException`` for an unknown or closed
connection, 413 ``PayloadTooLargeException`` over 128 KiB, 403 for another stage. boto3's
``apigatewaymanagementapi`` client with ``endpoint_url=<callback URL>`` (which ends in the
stage) sends exactly these paths.

For benchmarks:

* ``latency_ms`` delays every answer;
* ``rate_limit`` (``--mgmt-rate-limit N``) admits a request when a token bucket (capacity
  ``rate_burst``, default N; refilled continuously at N/s, like API Gateway's throttle) has a
  token *and* fewer than N requests were admitted in the last second; the others are answered
  (after the same latency) with 429 ``LimitExceededException`` ``{"message": "Rate
  exceeded"}``. The second condition makes N a hard bound over any 1 s window (a bare bucket
  lets up to burst + N through in the second after an idle spell): "never over the limit" is
  then a property of the sandbox, and what a benchmark learns about its client is how often
  it was throttled. With or without a limit, the peak number of requests admitted in any
  sliding 1 s window is recorded (``admitted_peak_1s``);
* virtual connections: ids registered on the control routes (``/_sandbox/...``, which no API
  path reaches: those all contain ``/@connections/``) exist only as table items written by the
  benchmark; POSTs to them get 200 after the same latency and limit and are counted instead of
  sent, so a 5,000-member room needs no sockets. See docs/sandbox.md for the routes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from sandbox.websocket_api import MAX_MESSAGE_BYTES, WebSocketApi, iso_ms

MARKER = "/@connections/"
CONTROL = "/_sandbox/"
WINDOW_SECONDS = 1.0


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"message": message}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": kind},
    )


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` stored; one token per request."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("the rate must be positive")
        self.rate = float(rate)
        self.capacity = float(capacity if capacity else rate)
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def admit(self, now: float | None = None) -> bool:
        now = self._clock() if now is None else now
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def reset(self) -> None:
        self._tokens = self.capacity
        self._updated = self._clock()


class RateLimit:
    """``--mgmt-rate-limit``: a token bucket, and never more than ``rate`` in any window."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bucket = TokenBucket(rate, burst, clock)
        self.rate = self.bucket.rate
        self.capacity = self.bucket.capacity
        self._clock = clock
        self._admitted = SlidingPeak()

    def admit(self) -> bool:
        now = self._clock()
        if self._admitted.count(now) >= self.rate or not self.bucket.admit(now):
            return False
        self._admitted.record(now)
        return True

    def reset(self) -> None:
        self.bucket.reset()
        self._admitted.reset()


class SlidingPeak:
    """The largest number of events seen in any window of ``window`` seconds."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self.peak = 0
        self._times: deque[float] = deque()

    def count(self, now: float) -> int:
        """Events in the window that ends now."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        return len(self._times)

    def record(self, now: float) -> None:
        self._times.append(now)
        self.peak = max(self.peak, self.count(now))

    def reset(self) -> None:
        self.peak = 0
        self._times.clear()


@dataclass
class VirtualConnection:
    registered_at: float
    posts: int = 0
    digests: set[bytes] = field(default_factory=set)


class VirtualConnections:
    """Connection ids without sockets: their posts are counted (per id and per payload)."""

    def __init__(self) -> None:
        self.ids: dict[str, VirtualConnection] = {}
        self._reset_counts()

    def _reset_counts(self) -> None:
        self.posts = 0
        self.duplicate_posts = 0
        self.deleted = 0
        self.first_post_at: float | None = None
        self.last_post_at: float | None = None

    def add(self, ids: list[str]) -> int:
        now = time.time()
        added = 0
        for connection_id in ids:
            if connection_id not in self.ids:
                self.ids[connection_id] = VirtualConnection(now)
                added += 1
        return added

    def clear(self) -> int:
        removed = len(self.ids)
        self.ids = {}
        self._reset_counts()
        return removed

    def post(self, connection_id: str, data: bytes) -> None:
        connection = self.ids[connection_id]
        now = time.time()
        digest = hashlib.blake2b(data, digest_size=12).digest()
        if digest in connection.digests:
            self.duplicate_posts += 1  # the same payload to the same id again
        connection.digests.add(digest)
        connection.posts += 1
        self.posts += 1
        if self.first_post_at is None:
            self.first_post_at = now
        self.last_post_at = now

    def delete(self, connection_id: str) -> bool:
        if self.ids.pop(connection_id, None) is None:
            return False
        self.deleted += 1
        return True

    def summary(self, detail: bool = False) -> dict[str, Any]:
        posted = [c.posts for c in self.ids.values() if c.posts]
        document: dict[str, Any] = {
            "registered": len(self.ids),
            "posts": self.posts,
            "idsPosted": len(posted),
            "idsPostedMoreThanOnce": sum(1 for n in posted if n > 1),
            "duplicatePosts": self.duplicate_posts,
            "deleted": self.deleted,
            "firstPostAt": self.first_post_at,
            "lastPostAt": self.last_post_at,
        }
        if detail:
            document["counts"] = {i: c.posts for i, c in self.ids.items()}
        return document


class ManagementApi:
    def __init__(
        self,
        api: WebSocketApi,
        latency_ms: float = 0.0,
        rate_limit: float | None = None,
        rate_burst: float | None = None,
    ) -> None:
        self.api = api
        self.latency = max(0.0, latency_ms) / 1000.0
        self.counters: Counter[str] = Counter()
        self.limiter = RateLimit(rate_limit, rate_burst) if rate_limit else None
        self.peak = SlidingPeak()
        self.virtual = VirtualConnections()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=max(4 * MAX_MESSAGE_BYTES, 16 * 1024 * 1024))
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def stats(self) -> dict[str, Any]:
        """The counters, with the sliding-window peak (for /_sandbox/stats)."""
        return {**self.counters, "admitted_peak_1s": self.peak.peak}

    def describe(self) -> dict[str, Any]:
        return {
            "counters": self.stats(),
            "rateLimit": self.limiter.rate if self.limiter else None,
            "rateBurst": self.limiter.capacity if self.limiter else None,
            "latencyMs": self.latency * 1000.0,
            "admittedPeak1s": self.peak.peak,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.split("?", 1)[0]
        if raw.startswith(CONTROL) and MARKER not in raw:
            return await self._control(request, raw)
        admitted = self.limiter.admit() if self.limiter else True
        if admitted:
            self.counters["admitted"] += 1
            self.peak.record(time.monotonic())
        if self.latency:
            await asyncio.sleep(self.latency)
        if not admitted:
            self.counters["throttled"] += 1
            self.counters[f"{request.method.lower()}_throttled"] += 1
            return _error(429, "LimitExceededException", "Rate exceeded")
        return await self._api(request, raw)

    async def _api(self, request: web.Request, raw: str) -> web.StreamResponse:
        prefix, marker, encoded_id = raw.partition(MARKER)
        if not marker or prefix.rstrip("/") not in ("", f"/{self.api.api.stage}"):
            self.counters["forbidden"] += 1
            return _error(403, "ForbiddenException", "Forbidden")
        connection_id = unquote(encoded_id)
        virtual = self.virtual.ids.get(connection_id)
        method = request.method
        if method == "POST":
            data = await request.read()
            if len(data) > MAX_MESSAGE_BYTES:
                self.counters["post_too_large"] += 1
                return _error(413, "PayloadTooLargeException", "Request entity too large")
            if virtual is not None:
                self.virtual.post(connection_id, data)
                self.counters["post_ok"] += 1
                self.counters["post_virtual"] += 1
                return web.Response(status=200)
            if await self.api.post(connection_id, data):
                self.counters["post_ok"] += 1
                return web.Response(status=200)
            self.counters["post_gone"] += 1
            return _error(410, "GoneException", f"Connection {connection_id} is gone")
        if method == "GET":
            if virtual is not None:
                self.counters["get_ok"] += 1
                at = iso_ms(virtual.registered_at)
                return web.json_response(
                    {
                        "connectedAt": at,
                        "identity": {"sourceIp": "127.0.0.1", "userAgent": "sandbox-virtual"},
                        "lastActiveAt": at,
                    }
                )
            connection = self.api.info(connection_id)
            if connection is None:
                self.counters["get_gone"] += 1
                return _error(410, "GoneException", f"Connection {connection_id} is gone")
            self.counters["get_ok"] += 1
            return web.json_response(
                {
                    "connectedAt": iso_ms(connection.connected_at),
                    "identity": {
                        "sourceIp": connection.source_ip,
                        "userAgent": connection.user_agent,
                    },
                    "lastActiveAt": iso_ms(connection.last_active_at),
                }
            )
        if method == "DELETE":
            if self.virtual.delete(connection_id) or await self.api.delete(connection_id):
                self.counters["delete_ok"] += 1
                return web.Response(status=204)
            self.counters["delete_gone"] += 1
            return _error(410, "GoneException", f"Connection {connection_id} is gone")
        return _error(405, "MethodNotAllowedException", f"{method} is not allowed")

    # ----------------------------------------------------------------- control routes

    async def _control(self, request: web.Request, raw: str) -> web.StreamResponse:
        route = raw[len(CONTROL) :].rstrip("/")
        method = request.method
        if route == "virtual-connections":
            if method == "POST":
                try:
                    document = await request.json()
                    ids = document["ids"]
                    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
                        raise ValueError
                except (ValueError, KeyError, TypeError):
                    return web.json_response(
                        {"message": 'expected {"ids": ["<connection id>", ...]}'}, status=400
                    )
                added = self.virtual.add(ids)
                return web.json_response({"added": added, "registered": len(self.virtual.ids)})
            if method == "GET":
                detail = request.query.get("detail", "") not in ("", "0", "false")
                return web.json_response(self.virtual.summary(detail))
            if method == "DELETE":
                return web.json_response({"removed": self.virtual.clear()})
        elif route == "management":
            if method == "GET":
                return web.json_response(self.describe())
            if method == "DELETE":
                self.counters.clear()
                self.peak.reset()
                if self.limiter:
                    self.limiter.reset()
                return web.json_response(self.describe())
        else:
            return web.json_response({"message": f"no control route {raw}"}, status=404)
        return web.json_response({"message": f"{method} is not allowed on {raw}"}, status=405)
