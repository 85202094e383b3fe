"""Progress of one fan-out shard, so a repeated shard never posts a frame twice.

SQS delivers a job at least once, and a job whose worker failed (or crashed)
comes back after the visibility timeout. The worker therefore records, in the
connections table, which connections of the shard are finished::

    FANOUT#<shardId> / PROGRESS    done (SS), complete (BOOL)?, expiresAt

and a repeated job skips them. ``done`` is written in batches (ADD to a string
set, idempotent) from a background thread while the shard is being delivered,
every ``flush_interval`` seconds and at the end; ``complete`` is set once the
shard is finished or handed on, after which a repeat does nothing.

Limitation (documented in docs/architecture.md): if the worker dies between a
post and the next flush, the connections posted in that interval (at most one
flush interval's worth) get the frame again when the shard is retried. The
frame's ``id`` lets clients drop that duplicate; an exactly-once post would
need API Gateway to accept an idempotency key, which it does not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.platform.observability import logger
from multiregion_chat.runtime.protocol.ids import epoch_seconds

__all__ = ["Checkpoint", "ShardState", "load", "mark_complete", "record_done"]

# The record only has to outlive the job's retries (SQS retention is far
# longer, but a frame older than this is history, not live chat).
PROGRESS_TTL_SECONDS = 6 * 3600
DONE_BATCH = 500  # ids per UpdateItem: keeps each write well under 400 KB


class ShardState:
    __slots__ = ("complete", "done")

    def __init__(self, complete: bool, done: set[str]) -> None:
        self.complete = complete
        self.done = done


def _key(shard_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"FANOUT#{shard_id}"}, "sk": {"S": "PROGRESS"}}


def _table() -> str:
    return runtime_settings.get_settings().connections_table


def load(shard_id: str) -> ShardState:
    """The shard's recorded progress (consistent read: the previous attempt's last flush)."""
    item = (
        aws_clients.dynamodb()
        .get_item(TableName=_table(), Key=_key(shard_id), ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return ShardState(False, set())
    return ShardState(
        bool(item.get("complete", {}).get("BOOL")), set(item.get("done", {}).get("SS", []))
    )


def record_done(shard_id: str, connection_ids: Iterable[str]) -> None:
    """Add ``connection_ids`` to the shard's ``done`` set (idempotent)."""
    ids = sorted(set(connection_ids))
    expires = str(epoch_seconds() + PROGRESS_TTL_SECONDS)
    for start in range(0, len(ids), DONE_BATCH):
        aws_clients.dynamodb().update_item(
            TableName=_table(),
            Key=_key(shard_id),
            UpdateExpression="ADD done :ids SET expiresAt = :exp",
            ExpressionAttributeValues={
                ":ids": {"SS": ids[start : start + DONE_BATCH]},
                ":exp": {"N": expires},
            },
        )


def mark_complete(shard_id: str) -> None:
    """Mark the shard finished: a repeated job does nothing from now on."""
    aws_clients.dynamodb().update_item(
        TableName=_table(),
        Key=_key(shard_id),
        UpdateExpression="SET complete = :yes, expiresAt = :exp",
        ExpressionAttributeValues={
            ":yes": {"BOOL": True},
            ":exp": {"N": str(epoch_seconds() + PROGRESS_TTL_SECONDS)},
        },
    )


class Checkpoint:
    """Collects finished ids (from the engine's thread) and flushes them in the background.

    Use as a context manager; ``add`` is the engine's ``on_done`` callback.
    Leaving the block stops the flusher and writes what is left; a failed
    final write raises, so the job is retried rather than marked complete
    with progress unrecorded.
    """

    def __init__(self, shard_id: str, flush_interval: float = 0.5) -> None:
        self.shard_id = shard_id
        self._interval = flush_interval
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shard-checkpoint", daemon=True)

    def add(self, connection_id: str, outcome: str = "") -> None:
        with self._lock:
            self._pending.append(connection_id)

    def _take(self) -> list[str]:
        with self._lock:
            taken, self._pending = self._pending, []
        return taken

    def flush(self) -> None:
        taken = self._take()
        if not taken:
            return
        try:
            record_done(self.shard_id, taken)
        except Exception:
            with self._lock:  # keep them for the next flush
                self._pending[:0] = taken
            raise

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception:  # the final flush on exit raises if it still fails
                logger.warning("shard progress flush failed; retrying at the next interval")

    def __enter__(self) -> Checkpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()
