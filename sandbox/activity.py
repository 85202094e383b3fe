"""Whether the sandbox is quiet, and the functions' request counts (``/_sandbox/calls``).

Quiet ("idle") is decided from the sandbox's own bookkeeping, not from a pause: no function
invocation in flight, no WebSocket frame or ``$disconnect`` being handled, no bus delivery or
forward pending (delayed ones included), every queue of the templates empty, and no invocation
started or finished while the queues were read. Then every request a function made has been
received, and counted, by the service it went to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp

from sandbox.calls import CALLS_PATH, merge, totals

if TYPE_CHECKING:
    from sandbox.runtime import Sandbox


def _activity(sandbox: Sandbox) -> tuple[int, int]:
    """(work in flight, invocations so far), read in one step of the event loop."""
    busy = 0
    invocations = 0
    for runtime in sandbox.regions:
        for worker in runtime.workers.values():
            busy += worker.in_flight
            invocations += worker.invocations
        if runtime.bus is not None:
            busy += runtime.bus.in_flight
        if runtime.websocket is not None:
            busy += runtime.websocket.tasks_in_flight
        busy += sum(poller.in_flight for poller in runtime.pollers)
    return busy, invocations


async def idle(sandbox: Sandbox) -> bool:
    before = _activity(sandbox)
    if before[0]:
        return False
    if any(runtime.model.queues for runtime in sandbox.regions):
        depths = await sandbox.queue_depths()
        waiting = sum(
            queue["messages"] + queue["inFlight"] + queue["delayed"]
            for queues in depths.values()
            for queue in queues.values()
        )
        if waiting:
            return False
    return _activity(sandbox) == before


async def _moto_calls(sandbox: Sandbox, method: str) -> dict[str, Any]:
    url = sandbox.endpoints()["dynamodb"] + CALLS_PATH
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        response.raise_for_status()
        document: dict[str, Any] = await response.json()
        return document


async def calls_document(sandbox: Sandbox) -> dict[str, Any]:
    """``{"idle", "calls": region -> function -> "service:Operation" -> figures, "totals"}``;
    ``idle`` is read first, so counts read while it is true are complete."""
    quiet = await idle(sandbox)
    tree = merge(await _moto_calls(sandbox, "GET"), sandbox.calls.snapshot())
    return {"idle": quiet, "calls": tree, "totals": totals(tree)}


async def reset_calls(sandbox: Sandbox) -> None:
    await _moto_calls(sandbox, "DELETE")
    sandbox.calls.reset()
