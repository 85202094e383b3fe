"""The HTTP fallback's long poll: a per-user cap on open polls, and a cheap wait.

Leases. A user may hold at most ``MAX_LONG_POLLS_PER_USER`` long polls at
once (a poll holds a HttpHandler execution for up to 20 s). The count must
hold across containers and survive invocations that crash or time out
without releasing, so each open poll holds one of the user's numbered slots,
an item in the connections table::

    POLL#<userId> / <slot>    leaseId, expiresAt (epoch s)

:func:`acquire` takes the first free slot with a PutItem conditional on the
slot being absent or its lease expired (``expiresAt < now``; the condition
does not wait for DynamoDB's lazy TTL deletion), so a crashed poll's slot is
free again once its lease, sized to the poll's longest duration, runs out.
:func:`release` deletes the slot only if it still holds this poll's lease.
Cost: one write to take a slot (more only while the user's other slots are
busy) and one to release it.

Waiting. Before, every 250 ms the poll made a strongly consistent Query of
the messages table: 81 Queries for a 20 s poll of a quiet room. Now it
probes with an eventually consistent Query of at most one key
(``Limit=1``, the id only), backing off from ``HTTP_POLL_INTERVAL_MS``
(250 ms) to ``HTTP_POLL_MAX_INTERVAL_MS`` (2 s): 12 probes and no consistent
read for a quiet 20 s poll. When a probe sees a newer message the answer is
read with one consistent Query (an eventually consistent read could show a
later message but miss an earlier one, and the client would move ``after``
past it for good). The price is latency: a message is seen up to one
interval (2 s at most) plus replication lag (well under a second) after it
is stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import NamedTuple

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings

__all__ = ["Lease", "acquire", "backoff_intervals", "has_messages_after", "release"]

# Looked up at call time so tests can move time.
clock: Callable[[], float] = time.time


class Lease(NamedTuple):
    user_id: str
    slot: int
    lease_id: str


def _key(user_id: str, slot: int) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"POLL#{user_id}"}, "sk": {"S": str(slot)}}


def _conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def acquire(user_id: str, lease_seconds: float) -> Lease | None:
    """A slot for one long poll lasting at most ``lease_seconds``; None when all are held."""
    settings = runtime_settings.get_settings()
    now = int(clock())
    lease_id = uuid.uuid4().hex
    expires = now + max(1, int(lease_seconds) + 1)
    for slot in range(settings.max_long_polls_per_user):
        try:
            aws_clients.dynamodb().put_item(
                TableName=settings.connections_table,
                Item={
                    **_key(user_id, slot),
                    "leaseId": {"S": lease_id},
                    "expiresAt": {"N": str(expires)},
                },
                ConditionExpression="attribute_not_exists(pk) OR expiresAt < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as error:
            if _conditional_failure(error):
                continue
            raise
        return Lease(user_id, slot, lease_id)
    return None


def release(lease: Lease) -> None:
    """Free the slot, unless its lease ran out and another poll took it."""
    try:
        aws_clients.dynamodb().delete_item(
            TableName=runtime_settings.get_settings().connections_table,
            Key=_key(lease.user_id, lease.slot),
            ConditionExpression="leaseId = :id",
            ExpressionAttributeValues={":id": {"S": lease.lease_id}},
        )
    except ClientError as error:
        if not _conditional_failure(error):
            raise


def has_messages_after(room: str, after: str | None) -> bool:
    """Whether ``room`` has a message with id > ``after``: one eventually consistent key read."""
    key = "#room = :room"
    names = {"#room": "room", "#id": "id"}
    values: dict[str, dict[str, str]] = {":room": {"S": room}}
    if after:
        key += " AND #id > :after"
        values[":after"] = {"S": after}
    response = aws_clients.dynamodb().query(
        TableName=runtime_settings.get_settings().messages_table,
        KeyConditionExpression=key,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ProjectionExpression="#id",
        Limit=1,
        ConsistentRead=False,
    )
    return bool(response.get("Items"))


def backoff_intervals() -> Callable[[], float]:
    """Seconds to wait before each next probe: doubling from the first interval to the cap."""
    settings = runtime_settings.get_settings()
    current = settings.http_poll_interval_ms / 1000
    cap = max(current, settings.http_poll_max_interval_ms / 1000)

    def next_interval() -> float:
        nonlocal current
        interval, current = current, min(cap, current * 2)
        return interval

    return next_interval
