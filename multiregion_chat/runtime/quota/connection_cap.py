"""At most ``maxConnectionsPerUser`` open WebSocket connections per user in this region.

Every message to a room costs one ``@connections`` POST per member connection, drawn from
the region's shared fan-out budget, so one user with hundreds of connections in a busy room
would spend it alone (issue 18). ``$connect`` admits a connection only while the user has
fewer; the handshake is refused otherwise (HTTP 429, no connection is opened).

One item per user in the connections table::

    CONNS#<userId> / CONNS   conns (M: connectionId -> expiry, epoch s), expiresAt

Admission is one UpdateItem conditional on ``size(conns) < cap``: DynamoDB serialises the
updates of an item, so concurrent connects can never pass the cap together. An entry's
expiry is the connection record's (``connectionTtlHours``, longer than API Gateway's 2-hour
connection limit), so it never needs renewing; ``$disconnect`` removes it, and an entry
whose connection ended without ``$disconnect`` (best effort in API Gateway) stops counting
at its expiry: it is pruned when it stands in the way of a connect.

Written by hand: a bounded set per key with expiring members is not something DynamoDB or
Powertools offers, and a count from the ``ConnectionsByUser`` index would be eventually
consistent, so a burst of connects could all pass.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.protocol.ids import epoch_seconds
from multiregion_chat.runtime.store.layout import (
    Item,
    connection_expires_at,
    connections_table,
    is_conditional_failure,
)

__all__ = ["admit", "release"]

ATTEMPTS = 5  # rounds of a race (first connect of a user, pruning) before refusing


def _key(user_id: str) -> Item:
    return {"pk": {"S": f"CONNS#{user_id}"}, "sk": {"S": "CONNS"}}


def _add(user_id: str, connection_id: str, expires: int, cap: int) -> Item | None:
    """Add the entry while there are fewer than ``cap``; None when added, else the item
    as it was (``{}`` when there is none yet)."""
    try:
        aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=_key(user_id),
            UpdateExpression="SET conns.#c = :exp, expiresAt = :exp",
            ConditionExpression=(
                "attribute_exists(conns) AND (size(conns) < :cap OR attribute_exists(conns.#c))"
            ),
            ExpressionAttributeNames={"#c": connection_id},
            ExpressionAttributeValues={":exp": {"N": str(expires)}, ":cap": {"N": str(cap)}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
        old: Item = dict(error.response.get("Item") or {})  # type: ignore[call-overload]
        return old
    return None


def _create(user_id: str, connection_id: str, expires: int) -> bool:
    """The user's first entry; False when a concurrent connect created the item first."""
    item: Item = {
        **_key(user_id),
        "conns": {"M": {connection_id: {"N": str(expires)}}},
        "expiresAt": {"N": str(expires)},
    }
    try:
        aws_clients.dynamodb().put_item(
            TableName=connections_table(),
            Item=item,
            ConditionExpression="attribute_not_exists(pk)",
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
        return False
    return True


def _prune(user_id: str, stale: list[str]) -> None:
    names = {f"#s{n}": connection_id for n, connection_id in enumerate(stale)}
    aws_clients.dynamodb().update_item(
        TableName=connections_table(),
        Key=_key(user_id),
        UpdateExpression="REMOVE " + ", ".join(f"conns.{name}" for name in names),
        ExpressionAttributeNames=names,
    )


def admit(user_id: str, connection_id: str, cap: int, now: int | None = None) -> bool:
    """Count ``connection_id`` among the user's open connections; False when it already
    has ``cap`` live ones (nothing is recorded then)."""
    expires = connection_expires_at()
    for _ in range(ATTEMPTS):
        found = _add(user_id, connection_id, expires, cap)
        if found is None:
            return True
        entries: dict[str, Any] = (found.get("conns") or {}).get("M") or {}
        if "conns" not in found:
            if _create(user_id, connection_id, expires):
                return True
            continue  # a concurrent connect created it: add to it
        at = epoch_seconds() if now is None else now
        stale = [cid for cid, value in entries.items() if int(value.get("N", "0")) <= at]
        if not stale:
            return False
        _prune(user_id, stale)
    return False


def release(user_id: str, connection_id: str) -> None:
    """Stop counting ``connection_id`` (``$disconnect``; idempotent)."""
    try:
        aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=_key(user_id),
            UpdateExpression="REMOVE conns.#c",
            ConditionExpression="attribute_exists(conns)",
            ExpressionAttributeNames={"#c": connection_id},
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
