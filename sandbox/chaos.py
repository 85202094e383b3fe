"""Chaos controls: take a region's API front doors down and up, cut and heal replication links.

A region that is **down** stops listening on its WebSocket and HTTP API ports (a connect is
refused, as a client sees a dead region) and loses every open connection abruptly, without
``$disconnect``; its bus, tables, handlers and ``@connections`` keep running (an API Gateway
outage is not an EventBridge one). A **cut link** ``A -> B`` makes every forward from A's bus to
B's fail with ``CONNECTION_FAILURE``; EventBridge's retry policy of the target then applies
(sandbox.eventbus), and what exhausts it lands in the target's dead-letter queue. Healing the
link lets the retries still running through.

The controls know nothing of the app: regions and links are the ones of the templates.
``POST /control/regions/{region}/down|up``, ``POST /control/links/{from}/{to}/cut|heal``,
``PUT /control/retry-time-scale`` and ``GET /control/state`` on the sandbox's web port
(docs/sandbox.md, "Chaos").
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sandbox.errors import SandboxError
from sandbox.eventbus import ForwardFailure

if TYPE_CHECKING:
    from sandbox.runtime import RegionRuntime, Sandbox

log = logging.getLogger("sandbox.chaos")


class ChaosError(SandboxError):
    """A control request naming a region that is not running, or a link to itself."""


class Chaos:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self.down: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        self._lock = asyncio.Lock()

    def _runtime(self, region: str) -> RegionRuntime:
        for runtime in self._sandbox.regions:
            if runtime.region == region:
                return runtime
        raise ChaosError(f"no region {region} in this sandbox")

    # ----------------------------------------------------------------- regions

    async def region_down(self, region: str) -> dict[str, Any]:
        runtime = self._runtime(region)
        async with self._lock:
            lost = 0
            if region not in self.down:
                self.down.add(region)
                if runtime.websocket is not None:
                    lost = await runtime.websocket.go_down()
                await self._sandbox.stop_http(runtime)
                log.warning("%s is down (chaos): %d connections lost", region, lost)
        return {"region": region, "state": "down", "connectionsLost": lost}

    async def region_up(self, region: str) -> dict[str, Any]:
        runtime = self._runtime(region)
        async with self._lock:
            if region in self.down:
                if runtime.websocket is not None:
                    await runtime.websocket.go_up()
                await self._sandbox.start_http(runtime)
                self.down.discard(region)
                log.warning("%s is up again (chaos)", region)
        return {"region": region, "state": "up"}

    # ----------------------------------------------------------------- links

    def _link(self, source: str, target: str) -> tuple[str, str]:
        self._runtime(source)
        self._runtime(target)
        if source == target:
            raise ChaosError("a link joins two different regions")
        return source, target

    def cut_link(self, source: str, target: str) -> dict[str, Any]:
        self.cut.add(self._link(source, target))
        log.warning("link %s -> %s cut (chaos)", source, target)
        return {"from": source, "to": target, "state": "cut"}

    def heal_link(self, source: str, target: str) -> dict[str, Any]:
        self.cut.discard(self._link(source, target))
        log.warning("link %s -> %s healed (chaos)", source, target)
        return {"from": source, "to": target, "state": "open"}

    def forward_failure(self, source: str, target: str) -> ForwardFailure | None:
        """Why a forward from ``source``'s bus to ``target``'s fails now, if it does."""
        if (source, target) in self.cut:
            return ForwardFailure(
                "CONNECTION_FAILURE", f"the link {source} -> {target} is cut (sandbox chaos)", True
            )
        return None

    def set_retry_time_scale(self, scale: float) -> dict[str, Any]:
        """Change ``--retry-time-scale`` for deliveries that start from now on."""
        if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
            raise ValueError("scale must be a positive number")
        self._sandbox.options.retry_time_scale = float(scale)
        for runtime in self._sandbox.regions:
            if runtime.bus is not None:
                runtime.bus.retry_time_scale = float(scale)
        return {"retryTimeScale": float(scale)}

    # ----------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        regions: dict[str, Any] = {}
        for runtime in self._sandbox.regions:
            counters = runtime.bus.counters if runtime.bus is not None else {}
            regions[runtime.region] = {
                "state": "down" if runtime.region in self.down else "up",
                "connections": len(runtime.websocket.connections) if runtime.websocket else 0,
                "connectThrottled": (
                    runtime.websocket.counters["connect_throttled"] if runtime.websocket else 0
                ),
                "forwardRetries": counters.get("forward_retries", 0),
                "forwardedAfterRetry": counters.get("forwarded_after_retry", 0),
                "deadLetterQueued": counters.get("dead_letter_queued", 0),
                "deadLetterLost": counters.get("dead_letter_lost", 0),
            }
        options = self._sandbox.options
        return {
            "regions": regions,
            "cutLinks": [{"from": a, "to": b} for a, b in sorted(self.cut)],
            "retryTimeScale": options.retry_time_scale,
            "connectRateLimit": options.connect_rate_limit,
        }


def add_control_routes(app: web.Application, chaos: Chaos) -> None:
    def answer(work: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                result = work(**request.match_info)
                if asyncio.iscoroutine(result):
                    result = await result
            except ChaosError as error:
                return web.json_response({"message": str(error)}, status=404)
            return web.json_response(result)

        return handler

    async def state(_: web.Request) -> web.Response:
        return web.json_response(chaos.state())

    async def retry_time_scale(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            return web.json_response(chaos.set_retry_time_scale(body["scale"]))
        except (ValueError, KeyError, TypeError) as error:
            message = f'expected {{"scale": <positive number>}}: {error}'
            return web.json_response({"message": message}, status=400)

    app.router.add_post("/control/regions/{region}/down", answer(chaos.region_down))
    app.router.add_post("/control/regions/{region}/up", answer(chaos.region_up))
    app.router.add_post("/control/links/{source}/{target}/cut", answer(chaos.cut_link))
    app.router.add_post("/control/links/{source}/{target}/heal", answer(chaos.heal_link))
    app.router.add_get("/control/state", state)
    app.router.add_put("/control/retry-time-scale", retry_time_scale)
