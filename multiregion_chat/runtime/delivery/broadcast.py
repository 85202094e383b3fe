"""One frame to every local member of a room: in this invocation, or sharded.

EventBusMessageHandler calls :func:`broadcast` for every frame it pushes.
The room's local connection ids are read in projected Query pages of
``FANOUT_SHARD_SIZE`` ids (with each token's ``exp``: members whose token
has expired are closed, not delivered to; :mod:`runtime.auth.token_expiry`), then:

* up to ``FANOUT_SHARD_THRESHOLD`` members: delivered here, by
  :func:`runtime.delivery.engine.deliver` (one invocation easily posts a few thousand
  frames in well under a second);
* more: sliced into jobs of ``FANOUT_SHARD_SIZE`` ids on the fan-out queue,
  where FanoutWorkers deliver them in parallel within the region's request
  budget (:mod:`runtime.delivery.request_budget`). Jobs are queued as the pages arrive, so the
  first workers start while the rest of a very big room is still being read.

Connections that API Gateway still throttled after the engine's retries are
never dropped: they are handed to the queue as a shard of their own (when the
function has one), so a FanoutWorker retries them later, within the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiregion_chat.runtime.auth import token_expiry
from multiregion_chat.runtime.delivery import engine, fanout_queue
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import logger
from multiregion_chat.runtime.presence import transitions

__all__ = ["BroadcastResult", "broadcast"]


@dataclass(slots=True)
class BroadcastResult:
    members: int = 0
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    retries: int = 0
    shards: int = 0  # jobs put on the queue (the sharded path, or a throttled remainder)
    handed_on: int = 0  # connection ids in those jobs

    @property
    def sharded(self) -> bool:
        return self.shards > 0 and self.delivered + self.gone + self.failed == 0


def broadcast(room: str, frame: str, *, job_id: str) -> BroadcastResult:
    """Deliver ``frame`` (compact JSON) to the room's local connections.

    ``job_id`` names the shards (``<room>/<job_id>:<n>``) and must be unique per
    frame in the room: the message id for a message, the bus event id for
    presence. The room is part of the name so that one id reused in two rooms
    (a forged or replayed event) can never share a shard's progress item.
    Raises if the members cannot be read or the shard jobs cannot be queued
    (the caller counts ``FanoutErrors``); never raises for a single post.
    """
    settings = runtime_settings.get_settings()
    job_id = f"{room}/{job_id}"
    sharding = bool(settings.fanout_queue_url)
    shard_size = settings.fanout_shard_size
    result = BroadcastResult()
    ids: list[str] = []
    # Pages of one shard's size: in a big room the first shards are queued
    # (and workers start) while later pages are still being read.
    big = False
    # Members whose token has expired are closed instead (runtime.auth.token_expiry).
    for page in token_expiry.live_connection_ids(room, shard_size if sharding else None):
        ids.extend(page)
        result.members += len(page)
        big = big or (sharding and result.members > settings.fanout_shard_threshold)
        if big:
            full = len(ids) - len(ids) % shard_size
            if full:
                _queue(room, frame, ids[:full], job_id, result)
                del ids[:full]
    if big:
        if ids:
            _queue(room, frame, ids, job_id, result)
        return result
    if not ids:
        return result

    delivered = engine.deliver(
        room, frame.encode("utf-8"), connection_ids=ids, on_gone=transitions.cleanup_gone
    )
    result.delivered, result.gone = delivered.delivered, delivered.gone
    result.failed, result.retries = delivered.failed, delivered.retries
    if delivered.unsent:
        if sharding:
            remainder = fanout_queue.ShardJob(
                room=room,
                shard_id=f"{job_id}:throttled",
                frame=frame,
                connection_ids=delivered.unsent,
                attempt=1,
            )
            fanout_queue.send_job(remainder)
            result.shards, result.handed_on = 1, len(delivered.unsent)
        else:
            logger.warning(
                "throttled deliveries with no fan-out queue to hand them to",
                extra={"count": len(delivered.unsent)},
            )
            result.failed += len(delivered.unsent)
    return result


def _queue(room: str, frame: str, ids: list[str], job_id: str, result: BroadcastResult) -> None:
    """Queue ``ids`` as shard jobs numbered on from ``result.shards``."""
    settings = runtime_settings.get_settings()
    jobs = fanout_queue.shard_jobs(
        room,
        frame,
        ids,
        job_id=job_id,
        shard_size=settings.fanout_shard_size,
        first_number=result.shards,
    )
    fanout_queue.send_jobs(jobs)
    result.shards += len(jobs)
    result.handed_on += len(ids)
