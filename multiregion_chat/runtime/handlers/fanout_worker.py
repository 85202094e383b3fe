"""Fan-out queue -> ``@connections`` (handler ``runtime.handlers.fanout_worker.handler``).

Invoked by the SQS event source mapping of the region's fan-out queue with a
batch of jobs (:mod:`runtime.delivery.fanout_queue`), reported back as a partial batch
response (``batchItemFailures``) so only the jobs that failed come back. The
loop is ours (:func:`_partial_batch`), not Powertools' ``BatchProcessor``: the
batch utility imports the ``utilities.data_classes`` package, whose
``__init__`` loads every event class of every service (about 8 ms of cold
start, ``python -X importtime``), for a loop of a few lines.

For a ``shard`` job:

1. Read its progress record (:mod:`runtime.store.shard_progress`). A complete shard
   (SQS delivered the job twice, or a retry after it finished) is skipped
   (``DuplicateShards``); otherwise the connections already done are skipped.
2. Post the frame to the rest with :func:`runtime.delivery.engine.deliver`, paced by the
   region's shared request budget (:class:`runtime.delivery.request_budget.SharedBudget`) and an
   AIMD limiter, no post started after the deadline (the remaining time
   minus ``HANDOFF_MARGIN_S``), finished ids checkpointed as they complete.
3. Whatever is not finished (out of time, or still throttled) is handed on as
   a new job with the rest of the ids (``HandedOffConnections``); after
   ``MAX_HANDOFFS`` the remainder is counted as ``FailedDeliveries`` and
   logged (the message stays in history for clients that resume).
4. Mark the shard complete.

A job whose processing raises (its progress could not be read or written,
the hand-off could not be queued) is reported as a batch item failure and
counted (``ShardFailures``): SQS makes it visible again after the visibility
timeout, and the progress record keeps the retry from posting twice. A malformed job is counted
(``MalformedJobs``) and dropped, since no retry can fix it.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import threading
from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.delivery import engine, fanout_queue
from multiregion_chat.runtime.delivery.request_budget import SharedBudget
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger, metrics, tracer
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.store import shard_progress

# Time kept back from the function's timeout for in-flight posts to finish
# (their read timeout), the last checkpoint and the hand-off.
HANDOFF_MARGIN_S = 6.0
# A remainder that is still throttled after this many hand-offs is given up.
MAX_HANDOFFS = 20
THROTTLED_HANDOFF_DELAY_S = 1

_local = threading.local()  # the invocation's context (the sandbox runs invocations in threads)


def _deadline() -> float:
    context: LambdaContext | None = getattr(_local, "context", None)
    now = engine.clock()  # the clock the engine checks the deadline against
    if context is None:
        return now + 60.0
    remaining = context.get_remaining_time_in_millis() / 1000.0
    return now + max(0.0, remaining - HANDOFF_MARGIN_S)


_aimd: engine.AimdLimiter | None = None


def _limiter() -> SharedBudget:
    """The shared budget over this container's AIMD limiter, which outlives a job:
    a slow-down that API Gateway's 429s taught carries over to the next shard."""
    global _aimd
    if _aimd is None:
        budget = float(runtime_settings.get_settings().fanout_request_budget)
        _aimd = engine.AimdLimiter(budget, max_rate=budget)
    return SharedBudget(local=_aimd)


def handle_shard(job: fanout_queue.ShardJob, deadline: float) -> dict[str, int]:
    """Deliver one shard job (steps 1-4 of the module docstring); returns its counts."""
    state = shard_progress.load(job.shard_id)
    if state.complete:
        logger.info("shard already complete; skipped", extra={"shardId": job.shard_id})
        count("DuplicateShards")
        return {"skipped": len(job.connection_ids)}
    todo = [cid for cid in dict.fromkeys(job.connection_ids) if cid not in state.done]
    with shard_progress.Checkpoint(job.shard_id) as checkpoint:
        result = engine.deliver(
            job.room,
            job.frame.encode("utf-8"),
            connection_ids=todo,
            on_gone=transitions.cleanup_gone,
            deadline=deadline,
            limiter=_limiter(),
            on_done=checkpoint.add,
        )
    count("DeliveredMessages", result.delivered)
    count("GoneConnections", result.gone)
    count("FailedDeliveries", result.failed)
    count("DeliveryRetries", result.retries)
    counts = {
        "delivered": result.delivered,
        "gone": result.gone,
        "failed": result.failed,
        "skipped": len(job.connection_ids) - len(todo),
        "handedOn": 0,
    }
    if result.unsent:
        if job.attempt >= MAX_HANDOFFS:
            logger.error(
                "shard remainder given up after repeated hand-offs",
                extra={"shardId": job.shard_id, "count": len(result.unsent)},
            )
            count("FailedDeliveries", len(result.unsent))
            counts["failed"] += len(result.unsent)
        else:
            out_of_time = engine.clock() >= deadline
            fanout_queue.send_job(
                job.handed_on(result.unsent),
                delay_seconds=0 if out_of_time else THROTTLED_HANDOFF_DELAY_S,
            )
            # Now the child job owns them: a retry of this job must not post them too.
            shard_progress.record_done(job.shard_id, result.unsent)
            count("HandedOffConnections", len(result.unsent))
            counts["handedOn"] = len(result.unsent)
    shard_progress.mark_complete(job.shard_id)
    logger.info("shard delivered", extra={"shardId": job.shard_id, **counts})
    return counts


def _record(record: dict[str, Any]) -> dict[str, int]:
    try:
        kind, body = fanout_queue.parse_job(record["body"])
        if kind != fanout_queue.SHARD_KIND:
            raise fanout_queue.JobError(f"unknown job kind {kind[:32]!r}")
        job = fanout_queue.ShardJob.from_body(body)
    except fanout_queue.JobError as error:
        logger.warning(
            "malformed fan-out job dropped",
            extra={"reason": str(error), "messageId": record["messageId"]},
        )
        count("MalformedJobs")
        return {}
    try:
        return handle_shard(job, _deadline())
    except Exception:
        # Reported as this record's failure (SQS retries it; its progress record
        # keeps the retry from posting twice). Counted: the alarm on
        # FanoutWorkerErrors does not see a failure reported this way.
        logger.exception("shard failed; it will be retried", extra={"shardId": job.shard_id})
        count("ShardFailures")
        raise


def _partial_batch(event: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """Each SQS record through :func:`_record`; the ones that raised are the batch item
    failures (SQS makes only those visible again). Never raises for a batch whose every
    record failed: the partial response says the same, without a Lambda error per retry."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        raise ValueError("not an SQS batch: no Records")  # a wiring error, not a job
    failures = []
    for record in records:
        try:
            _record(record)
        except Exception:  # logged and counted by _record
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, list[dict[str, str]]]:
    _local.context = context
    try:
        return _partial_batch(event)
    finally:
        _local.context = None


init_phase.end()
