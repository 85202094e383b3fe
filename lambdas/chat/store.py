"""DynamoDB access: the connections table and the messages (history) table.

Item layout (docs/contracts.md)::

    connections  CONN#<id>   / META                userId, name?, rooms (SS), connectedAt, expiresAt
                 ROOM#<room> / CONN#<id>           connectionId, userId, name?, joinedAt, expiresAt
                 ROOM#<room> / REMOTE#<region>#<u> userId, name?, region, expiresAt
    messages     <room>      / <id>                sender (M), body (JSON string), sentAt,
                                                   originRegion, expiresAt

Consistency choices:

* META is written before memberships (``join`` adds the room to META, then
  puts the membership) and removed after them (cleanup deletes memberships,
  then META), so META's ``rooms`` is always a superset of the connection's
  memberships and a cleanup finds them all. A membership orphaned by a race
  with ``$disconnect`` is removed by the fan-out's 410 cleanup or by TTL.
* Every update of META is conditional on META existing: an UpdateItem never
  resurrects a connection that ``$disconnect`` removed.
* Membership checks read with ``ConsistentRead`` so ``send`` right after
  ``join`` never sees a stale "not a member".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chat import clients, config, retry
from chat.ids import epoch_seconds, iso_from_ms, now_ms
from chat.observability import logger
from chat.protocol import ChatMessage, Sender, compact_json

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "Connection",
    "UnknownConnectionError",
    "delete_connection_records",
    "get_connection",
    "get_membership",
    "iter_room_connection_ids",
    "join_room",
    "leave_room",
    "put_connection",
    "put_message",
    "query_messages",
    "refresh_connection",
    "room_members",
]

META = "META"
BATCH_SIZE = 25  # BatchWriteItem maximum
BATCH_ATTEMPTS = 5
FANOUT_PAGE_SIZE: int | None = None  # Query Limit of the fan-out (None: 1 MB pages)

Item = dict[str, Any]  # a DynamoDB item in low-level (typed attribute value) form


class UnknownConnectionError(Exception):
    """The connection has no META item (never connected, expired or cleaned up)."""


@dataclass(frozen=True, slots=True)
class Connection:
    connection_id: str
    user_id: str
    name: str | None
    rooms: frozenset[str]


def conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def room_pk(room: str) -> str:
    return f"ROOM#{room}"


def _s(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.get("S") if value else None


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _connection_from_item(connection_id: str, item: Item) -> Connection:
    return Connection(
        connection_id=connection_id,
        user_id=_s(item, "userId") or "",
        name=_s(item, "name"),
        rooms=frozenset(item.get("rooms", {}).get("SS", [])),
    )


def _table() -> str:
    return config.get_settings().connections_table


def _expires_at() -> int:
    return epoch_seconds() + config.get_settings().connection_ttl_seconds


# --- connections --------------------------------------------------------------


def put_connection(connection_id: str, user_id: str, name: str | None) -> None:
    """Register a new connection (``$connect``)."""
    item: Item = {
        "pk": {"S": conn_pk(connection_id)},
        "sk": {"S": META},
        "userId": {"S": user_id},
        "connectedAt": {"S": iso_from_ms(now_ms())},
        "expiresAt": {"N": str(_expires_at())},
    }
    if name:
        item["name"] = {"S": name}
    clients.dynamodb().put_item(TableName=_table(), Item=item)


def get_connection(connection_id: str) -> Connection | None:
    response = clients.dynamodb().get_item(
        TableName=_table(),
        Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return _connection_from_item(connection_id, item) if item else None


def join_room(connection_id: str, room: str) -> Connection:
    """Add the membership (idempotent); raises UnknownConnectionError without META."""
    table, expires = _table(), _expires_at()
    try:
        response = clients.dynamodb().update_item(
            TableName=table,
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
            UpdateExpression="SET expiresAt = :exp ADD rooms :rooms",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":exp": {"N": str(expires)}, ":rooms": {"SS": [room]}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            raise UnknownConnectionError(connection_id) from None
        raise
    connection = _connection_from_item(connection_id, response.get("Attributes", {}))
    item: Item = {
        "pk": {"S": room_pk(room)},
        "sk": {"S": conn_pk(connection_id)},
        "connectionId": {"S": connection_id},
        "userId": {"S": connection.user_id},
        "joinedAt": {"S": iso_from_ms(now_ms())},
        "expiresAt": {"N": str(expires)},
    }
    if connection.name:
        item["name"] = {"S": connection.name}
    clients.dynamodb().put_item(TableName=table, Item=item)
    return connection


def leave_room(connection_id: str, room: str) -> bool:
    """Remove the membership; False when the connection was not a member."""
    table = _table()
    response = clients.dynamodb().delete_item(
        TableName=table,
        Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        ReturnValues="ALL_OLD",
    )
    try:
        clients.dynamodb().update_item(
            TableName=table,
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
            UpdateExpression="DELETE rooms :rooms",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":rooms": {"SS": [room]}},
        )
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise
    return bool(response.get("Attributes"))


def get_membership(connection_id: str, room: str) -> Sender | None:
    """The member's identity in ``room`` (as a message sender), or None."""
    response = clients.dynamodb().get_item(
        TableName=_table(),
        Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    if not item:
        return None
    return Sender(
        user_id=_s(item, "userId") or "",
        name=_s(item, "name"),
        region=config.get_settings().region,
    )


def refresh_connection(connection_id: str) -> Connection:
    """Push back the expiry of META and of every membership (``ping``)."""
    table, expires = _table(), _expires_at()
    ddb = clients.dynamodb()
    try:
        response = ddb.update_item(
            TableName=table,
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
            UpdateExpression="SET expiresAt = :exp",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":exp": {"N": str(expires)}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            raise UnknownConnectionError(connection_id) from None
        raise
    connection = _connection_from_item(connection_id, response.get("Attributes", {}))
    for room in sorted(connection.rooms):
        try:
            ddb.update_item(
                TableName=table,
                Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
                UpdateExpression="SET expiresAt = :exp",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":exp": {"N": str(expires)}},
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
    return connection


def _batch_delete(keys: list[Item]) -> int:
    """Delete ``keys`` with BatchWriteItem, retrying UnprocessedItems with backoff.

    Returns how many keys could not be deleted after the bounded retries.
    """
    table, ddb, left = _table(), clients.dynamodb(), 0
    for start in range(0, len(keys), BATCH_SIZE):
        pending: list[Any] = [
            {"DeleteRequest": {"Key": key}} for key in keys[start : start + BATCH_SIZE]
        ]
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            response = ddb.batch_write_item(RequestItems={table: pending})
            pending = list(response.get("UnprocessedItems", {}).get(table, []))
            if not pending:
                break
            if attempt < BATCH_ATTEMPTS:
                retry.pause(attempt)
        left += len(pending)
    return left


def delete_connection_records(connection_id: str, rooms_hint: Iterable[str] = ()) -> int:
    """Delete a connection's memberships, then its META (``$disconnect``, 410 Gone).

    Idempotent: with META already gone only the memberships in ``rooms_hint``
    (e.g. the room a 410 came from) are deleted. META is deleted only once all
    memberships are, so a partial failure keeps the room list for the next
    attempt (TTL is the final backstop). Returns how many deletes were applied
    (keys that were already gone count too).
    """
    connection = get_connection(connection_id)
    rooms = set(rooms_hint) | (set(connection.rooms) if connection else set())
    sk = {"S": conn_pk(connection_id)}
    memberships: list[Item] = [{"pk": {"S": room_pk(r)}, "sk": sk} for r in sorted(rooms)]
    left = _batch_delete(memberships)
    if left:
        logger.warning(
            "memberships not deleted; META kept for a later cleanup",
            extra={"connectionId": connection_id, "undeleted": left},
        )
        return len(memberships) - left
    if connection is None:
        return len(memberships)
    clients.dynamodb().delete_item(
        TableName=_table(), Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}
    )
    return len(memberships) + 1


# --- room partitions ------------------------------------------------------------


def _query_pages(**kwargs: Any) -> Iterator[list[Item]]:
    ddb = clients.dynamodb()
    while True:
        response = ddb.query(**kwargs)
        yield list(response.get("Items", []))
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def room_members(room: str) -> list[dict[str, str]]:
    """Presence of ``room``: ``[{userId, name?, region}]``, each user once, by userId.

    Local connections (``CONN#`` items) carry this region; ``REMOTE#<region>#``
    items carry theirs. A user present locally is shown with this region;
    otherwise with the alphabetically first remote region.
    """
    local = config.get_settings().region
    entries: dict[str, list[tuple[int, str, str | None]]] = defaultdict(list)
    pages = _query_pages(
        TableName=_table(),
        KeyConditionExpression="pk = :pk",
        ProjectionExpression="sk, userId, #n, #r",
        ExpressionAttributeNames={"#n": "name", "#r": "region"},
        ExpressionAttributeValues={":pk": {"S": room_pk(room)}},
    )
    for page in pages:
        for item in page:
            sk, user_id = _s(item, "sk") or "", _s(item, "userId")
            if not user_id:
                continue
            if sk.startswith("CONN#"):
                entries[user_id].append((0, local, _s(item, "name")))
            elif sk.startswith("REMOTE#"):
                region = _s(item, "region") or sk.split("#")[1]
                entries[user_id].append((1, region, _s(item, "name")))
    members = []
    for user_id in sorted(entries):
        found = entries[user_id]
        _, region, name = min(found, key=lambda e: (e[0], e[1]))
        # keep a known name when the preferred entry has none
        name = name or next((n for _, _, n in found if n), None)
        member = {"userId": user_id}
        if name:
            member["name"] = name
        member["region"] = region
        members.append(member)
    return members


def iter_room_connection_ids(room: str, page_size: int | None = None) -> Iterator[list[str]]:
    """The local connection ids in ``room``, one list per Query page."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :conn)",
        "ProjectionExpression": "connectionId",
        "ExpressionAttributeValues": {":pk": {"S": room_pk(room)}, ":conn": {"S": "CONN#"}},
    }
    limit = page_size or FANOUT_PAGE_SIZE
    if limit:
        kwargs["Limit"] = limit
    for page in _query_pages(**kwargs):
        yield [cid for item in page if (cid := _s(item, "connectionId"))]


# --- history --------------------------------------------------------------------


def _message_table() -> str:
    return config.get_settings().messages_table


def put_message(message: ChatMessage) -> bool:
    """Write ``message`` to history; False if it was already there (a duplicate event)."""
    settings = config.get_settings()
    sender: dict[str, AttributeValueTypeDef] = {
        "userId": {"S": message.sender.user_id},
        "region": {"S": message.sender.region},
    }
    if message.sender.name:
        sender["name"] = {"S": message.sender.name}
    try:
        clients.dynamodb().put_item(
            TableName=settings.messages_table,
            Item={
                "room": {"S": message.room},
                "id": {"S": message.id},
                "sender": {"M": sender},
                "body": {"S": compact_json(message.body)},
                "sentAt": {"S": message.sent_at},
                "originRegion": {"S": message.origin_region},
                "expiresAt": {"N": str(epoch_seconds() + settings.history_retention_seconds)},
            },
            ConditionExpression="attribute_not_exists(#id)",
            ExpressionAttributeNames={"#id": "id"},
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            return False
        raise
    return True


def _message_from_item(item: Item) -> dict[str, Any]:
    sender_item = item.get("sender", {}).get("M", {})
    sender = {"userId": _s(sender_item, "userId") or ""}
    if name := _s(sender_item, "name"):
        sender["name"] = name
    sender["region"] = _s(sender_item, "region") or ""
    return {
        "room": _s(item, "room"),
        "id": _s(item, "id"),
        "sender": sender,
        "body": json.loads(_s(item, "body") or "null"),
        "sentAt": _s(item, "sentAt"),
    }


def query_messages(room: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` messages of ``room`` with id > ``after``, oldest first, and
    whether more follow. Pages past DynamoDB's 1 MB responses as needed."""
    key = "#room = :room"
    names = {"#room": "room"}
    values: dict[str, AttributeValueTypeDef] = {":room": {"S": room}}
    if after:
        key += " AND #id > :after"
        names["#id"] = "id"  # DynamoDB rejects unused placeholders
        values[":after"] = {"S": after}
    items: list[Item] = []
    pages = _query_pages(
        TableName=_message_table(),
        KeyConditionExpression=key,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ScanIndexForward=True,
        Limit=limit + 1,
    )
    for page in pages:
        items.extend(page)
        if len(items) > limit:
            break
    return [_message_from_item(i) for i in items[:limit]], len(items) > limit
