"""Per-connection and per-user message rates (docs/protocol.md, "Limits").

Every client frame charges its connection's bucket and its user's bucket;
every HTTP fallback request charges the user's bucket. A request over either
budget is refused (``rate_limited`` with ``retryAfterMs``) and does nothing
else. The budgets must hold across concurrent invocations and containers, so
they live in DynamoDB, one item per user in the connections table::

    RATE#<userId> / RATE     u (N), c:<connectionId> (N, one per busy connection),
                             expiresAt

Each bucket is stored as the generic cell rate algorithm's "theoretical
arrival time" (epoch ms), which is a token bucket (rate ``r``/s, capacity
``burst``) kept in one number: a request at ``now`` is allowed when
``tat - now <= (burst - 1) / r``, and moves ``tat`` to ``max(tat, now) + 1/r``.
DynamoDB's update expressions have no ``max``, so the new values are computed
here from a consistent read and written with an UpdateItem conditional on
``u`` being unchanged (every accepted request moves ``u`` forward, so the
condition serialises all of a user's requests, across containers). A writer
that loses the race pauses (jittered) and reads again (bounded attempts).

Cost per frame: the item is read with the frame's other items in one consistent
BatchGetItem (:mod:`runtime.intake.frame_state`; an HTTP request reads it alone) and, when
the frame is accepted, one UpdateItem (1 WCU; a lost race adds a GetItem and an
UpdateItem).
A refused frame writes nothing, so a flood above the budget costs reads only.
Connection entries whose ``tat`` has passed (a full bucket) are removed on the
next write, so the item holds only the user's busy connections; TTL deletes
an idle user's item.

No library does this for Lambda: Powertools has no rate limiting, and the
bucket needs a store shared by every container, which DynamoDB already is.

If DynamoDB fails (throttled, say), the request is allowed and
``RateLimitErrors`` counted: a broken limiter must not take the chat down;
API Gateway's stage throttle still bounds the total.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger

__all__ = [
    "Bucket",
    "Decision",
    "RateLimitedError",
    "charge",
    "connection_bucket",
    "enforce",
    "enforce_upload_slot",
    "item_key",
    "user_bucket",
]

# Reads+conditional writes before a contended request counts as over budget. Every round of
# a race has one winner, so a burst arriving at once (API Gateway invokes a pipelined
# connection's frames concurrently) needs about as many rounds as it has frames; the jittered
# pause between attempts spreads the contenders so most rounds are not races at all.
ATTEMPTS = 16
RETRY_PAUSE_MS = 5  # times the attempt number, jittered, at most MAX_RETRY_PAUSE_MS
MAX_RETRY_PAUSE_MS = 50
USER_ATTRIBUTE = "u"
CONNECTION_PREFIX = "c:"
EXPIRY_MARGIN_SECONDS = 60

# Looked up at call time so tests can move time.
clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)  # noqa: E731
sleep: Callable[[float], None] = time.sleep


class RateLimitedError(Exception):
    """Over budget; ``retry_after_ms`` is when the next request will be allowed."""

    def __init__(self, retry_after_ms: int, message: str) -> None:
        super().__init__(message)
        self.retry_after_ms = max(1, retry_after_ms)
        self.message = message

    @property
    def retry_after_seconds(self) -> int:
        """For HTTP's ``Retry-After`` (whole seconds, at least 1)."""
        return max(1, math.ceil(self.retry_after_ms / 1000))


class Bucket(NamedTuple):
    """A token bucket: ``rate`` requests/s sustained, ``burst`` at once."""

    rate: float
    burst: int

    @property
    def interval_ms(self) -> float:
        return 1000.0 / self.rate

    @property
    def tolerance_ms(self) -> float:
        return (self.burst - 1) * self.interval_ms

    def take(self, tat: int | None, now: int) -> tuple[int, int]:
        """``(new tat, 0)`` when allowed, ``(tat, wait ms)`` when not."""
        start = now if tat is None else max(tat, now)
        excess = start - now - self.tolerance_ms
        if excess > 0:
            return start, math.ceil(excess)
        return math.ceil(start + self.interval_ms), 0


class Decision(NamedTuple):
    allowed: bool
    retry_after_ms: int = 0


def user_bucket() -> Bucket:
    settings = runtime_settings.get_settings()
    return Bucket(settings.user_rate_per_second, settings.user_burst)


def connection_bucket() -> Bucket:
    settings = runtime_settings.get_settings()
    return Bucket(settings.connection_rate_per_second, settings.connection_burst)


def upload_slot_bucket() -> Bucket:
    """Upload slots (runtime.attachments.transfers): ``uploadSlotsPerUserPerMinute`` at once,
    refilled evenly over a minute."""
    per_minute = runtime_settings.get_settings().upload_slots_per_user_per_minute
    return Bucket(per_minute / 60, per_minute)


def item_key(user_id: str) -> dict[str, Any]:
    """The key of the user's budget item (read with the frame's other items,
    runtime.intake.frame_state)."""
    return {"pk": {"S": f"RATE#{user_id}"}, "sk": {"S": "RATE"}}


def upload_slot_key(user_id: str) -> dict[str, Any]:
    """The user's upload-slot budget: an item of its own beside the request budget, so a slot
    costs its own write and never races the user's frames."""
    return {"pk": {"S": f"RATE#{user_id}"}, "sk": {"S": "SLOTS"}}


def _number(item: Mapping[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else None


def _attempt(
    key: dict[str, Any],
    bucket: Bucket,
    connection_id: str | None,
    item: Mapping[str, Any] | None = None,
) -> Decision | None:
    """One read of the budget item ``key`` (unless ``item`` was read already) and, when
    allowed, one conditional write; None: lost a race."""
    ddb = aws_clients.dynamodb()
    table = runtime_settings.get_settings().connections_table
    if item is None:
        item = ddb.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item") or {}
    now = clock_ms()
    old_user = _number(item, USER_ATTRIBUTE)
    new_user, user_wait = bucket.take(old_user, now)
    own = CONNECTION_PREFIX + connection_id if connection_id else None
    new_conn, conn_wait = (0, 0)
    if own is not None:
        new_conn, conn_wait = connection_bucket().take(_number(item, own), now)
    if user_wait or conn_wait:
        return Decision(False, max(user_wait, conn_wait))
    names = {"#u": USER_ATTRIBUTE}
    values: dict[str, Any] = {":u": {"N": str(new_user)}}
    sets = ["#u = :u"]
    latest = new_user
    if own is not None:
        names["#c"] = own
        values[":c"] = {"N": str(new_conn)}
        sets.append("#c = :c")
        latest = max(latest, new_conn)
    values[":exp"] = {"N": str(latest // 1000 + EXPIRY_MARGIN_SECONDS)}
    sets.append("expiresAt = :exp")
    # Connections whose bucket is full again (tat passed) need no entry.
    idle = [
        name
        for name in item
        if name.startswith(CONNECTION_PREFIX) and name != own and (_number(item, name) or 0) <= now
    ]
    removes = []
    for n, name in enumerate(idle):
        names[f"#r{n}"] = name
        removes.append(f"#r{n}")
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    if old_user is None:
        condition = "attribute_not_exists(#u)"
    else:
        condition = "#u = :old"
        values[":old"] = {"N": str(old_user)}
    try:
        ddb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return None
        raise
    return Decision(True)


def charge(
    user_id: str, connection_id: str | None = None, item: Mapping[str, Any] | None = None
) -> Decision:
    """Take one request from the user's bucket (and the connection's, when given).

    ``item``: the budget item as just read consistently (:mod:`runtime.intake.frame_state`), ``{}``
    when there is none; the first attempt then makes no read of its own.
    """
    return _charge(item_key(user_id), user_bucket(), connection_id, item)


def _charge(
    key: dict[str, Any],
    bucket: Bucket,
    connection_id: str | None = None,
    item: Mapping[str, Any] | None = None,
) -> Decision:
    try:
        for attempt in range(ATTEMPTS):
            if attempt:
                pause_ms = min(RETRY_PAUSE_MS * attempt, MAX_RETRY_PAUSE_MS)
                sleep(random.uniform(0, pause_ms) / 1000)
            decision = _attempt(key, bucket, connection_id, item if attempt == 0 else None)
            if decision is not None:
                return decision
    except Exception:
        logger.warning("rate limiter unavailable; request allowed", exc_info=True)
        count("RateLimitErrors")
        return Decision(True)
    # Every attempt lost to a concurrent request of the same user: it is
    # sending faster than we can record, which is what the limit is for.
    return Decision(False, math.ceil(bucket.interval_ms))


def enforce(
    user_id: str, connection_id: str | None = None, item: Mapping[str, Any] | None = None
) -> None:
    """:func:`charge`, raising RateLimitedError (and counting ``RateLimited``) when refused."""
    _refuse_unless_allowed(charge(user_id, connection_id, item), "requests")


def enforce_upload_slot(user_id: str) -> None:
    """One of the user's upload slots (``uploadSlotsPerUserPerMinute``); RateLimitedError
    (counted as ``RateLimited``) when none is left."""
    _refuse_unless_allowed(_charge(upload_slot_key(user_id), upload_slot_bucket()), "upload slots")


def _refuse_unless_allowed(decision: Decision, what: str) -> None:
    if not decision.allowed:
        count("RateLimited")
        raise RateLimitedError(
            decision.retry_after_ms,
            f"too many {what}; retry in {decision.retry_after_ms} ms",
        )
