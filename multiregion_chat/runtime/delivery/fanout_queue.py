"""Jobs on the region's fan-out queue (``FANOUT_QUEUE_URL``), consumed by FanoutWorker.

A job is one JSON message body with a ``kind``. The only kind built in is
``shard``: post one frame to a list of connections::

    {"kind": "shard", "room": str, "shardId": str, "frame": str,
     "connectionIds": [str, ...], "attempt": int}

``shardId`` is unique per (frame, slice of members) and names the job's
progress record (:mod:`runtime.store.shard_progress`), which is what makes a retried or
duplicated job deliver each member at most once. A hand-off (the worker ran out
of time, or API Gateway kept throttling) is a new job whose id is the parent's
plus ``.<attempt>``, carrying only what was not delivered.

Messages are sent with SendMessageBatch (10 entries, and at most
``MAX_BATCH_BYTES`` of bodies per call). Entries that a successful call
reports as failed are retried with backoff; what still fails raises
:class:`QueueError`, so the caller's own retry (Lambda's, SQS's) takes over
rather than a shard vanishing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from multiregion_chat.runtime.platform import aws_clients, retry, runtime_settings
from multiregion_chat.runtime.protocol.json_codec import compact_json, loads_strict

__all__ = [
    "SHARD_KIND",
    "JobError",
    "QueueError",
    "ShardJob",
    "send_job",
    "send_jobs",
    "shard_jobs",
]

SHARD_KIND = "shard"
MAX_BATCH_ENTRIES = 10  # SendMessageBatch maximum
# SQS accepts 1 MiB per message and per batch (since 2025); staying at the old
# 256 KiB keeps the queue usable with any client or proxy that still enforces it.
MAX_BATCH_BYTES = 256 * 1024
SEND_ATTEMPTS = 4
# API Gateway connection ids are 16-character base64; this bounds a hostile or
# corrupt job, not a real one.
MAX_CONNECTION_ID_LENGTH = 128


class QueueError(RuntimeError):
    """Jobs the queue did not accept after retries (the caller should fail and be retried)."""


class JobError(ValueError):
    """A message body that is not a valid job (dropped: a retry cannot fix it)."""


class ShardJob:
    """A validated ``shard`` job."""

    __slots__ = ("attempt", "connection_ids", "frame", "room", "shard_id")

    def __init__(
        self, *, room: str, shard_id: str, frame: str, connection_ids: Sequence[str], attempt: int
    ) -> None:
        self.room = room
        self.shard_id = shard_id
        self.frame = frame
        self.connection_ids = list(connection_ids)
        self.attempt = attempt

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ShardJob:
        room, shard_id, frame = body.get("room"), body.get("shardId"), body.get("frame")
        ids, attempt = body.get("connectionIds"), body.get("attempt", 0)
        if not isinstance(room, str) or not room:
            raise JobError("room must be a non-empty string")
        if not isinstance(shard_id, str) or not shard_id or len(shard_id) > 512:
            raise JobError("shardId must be a string of 1-512 characters")
        if not isinstance(frame, str) or not frame:
            raise JobError("frame must be a non-empty string")
        if not isinstance(ids, list) or not all(
            isinstance(cid, str) and 0 < len(cid) <= MAX_CONNECTION_ID_LENGTH for cid in ids
        ):
            raise JobError("connectionIds must be a list of connection ids")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise JobError("attempt must be a non-negative integer")
        return cls(room=room, shard_id=shard_id, frame=frame, connection_ids=ids, attempt=attempt)

    def to_body(self) -> dict[str, Any]:
        return {
            "kind": SHARD_KIND,
            "room": self.room,
            "shardId": self.shard_id,
            "frame": self.frame,
            "connectionIds": self.connection_ids,
            "attempt": self.attempt,
        }

    def handed_on(self, connection_ids: Sequence[str]) -> ShardJob:
        """The job that carries ``connection_ids`` (what this one did not finish) onwards."""
        attempt = self.attempt + 1
        return ShardJob(
            room=self.room,
            shard_id=f"{self.shard_id}.{attempt}",
            frame=self.frame,
            connection_ids=connection_ids,
            attempt=attempt,
        )


def parse_job(raw: str) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` of a message body; :class:`JobError` if it is not a job."""
    try:
        body = loads_strict(raw)
    except (TypeError, ValueError):
        raise JobError("the message body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise JobError("the message body has no kind")
    return body["kind"], body


def shard_jobs(
    room: str,
    frame: str,
    connection_ids: Sequence[str],
    *,
    job_id: str,
    shard_size: int,
    first_number: int = 0,
) -> list[ShardJob]:
    """Slice ``connection_ids`` into jobs of at most ``shard_size`` ids
    (``<job_id>:<n>``, ``n`` counting from ``first_number``)."""
    return [
        ShardJob(
            room=room,
            shard_id=f"{job_id}:{number}",
            frame=frame,
            connection_ids=connection_ids[start : start + shard_size],
            attempt=0,
        )
        for number, start in enumerate(
            range(0, len(connection_ids), shard_size), start=first_number
        )
    ]


def _batches(bodies: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for body in bodies:
        length = len(body.encode("utf-8"))
        if batch and (len(batch) == MAX_BATCH_ENTRIES or size + length > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(body)
        size += length
    if batch:
        yield batch


def send_jobs(jobs: Iterable[ShardJob | Mapping[str, Any]], delay_seconds: int = 0) -> int:
    """Put every job on the fan-out queue; returns how many were sent.

    Raises :class:`QueueError` when some entries are still refused after
    ``SEND_ATTEMPTS`` (jobs sent before stay sent: their ids make a repeat
    harmless, see :mod:`runtime.store.shard_progress`).
    """
    queue_url = runtime_settings.get_settings().fanout_queue_url
    if not queue_url:
        raise QueueError("FANOUT_QUEUE_URL is not set: this function cannot shard a fan-out")
    bodies = (
        compact_json(job.to_body() if isinstance(job, ShardJob) else dict(job)) for job in jobs
    )
    sent = 0
    for batch in _batches(bodies):
        pending = {str(index): body for index, body in enumerate(batch)}
        for attempt in range(1, SEND_ATTEMPTS + 1):
            response = aws_clients.sqs().send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": entry_id, "MessageBody": body, "DelaySeconds": delay_seconds}
                    for entry_id, body in pending.items()
                ],
            )
            for entry in response.get("Successful", []):
                pending.pop(entry["Id"], None)
            if not pending:
                break
            if attempt < SEND_ATTEMPTS:
                retry.pause(attempt)
        if pending:
            raise QueueError(f"{len(pending)} fan-out jobs were refused by the queue")
        sent += len(batch)
    return sent


def send_job(job: ShardJob | Mapping[str, Any], delay_seconds: int = 0) -> None:
    """Put one job on the queue (``delay_seconds``: SQS DelaySeconds, 0-900)."""
    send_jobs([job], delay_seconds=delay_seconds)
