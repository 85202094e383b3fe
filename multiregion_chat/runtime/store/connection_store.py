"""The connections table's connection records: META, memberships and the user
presence items they drive (layout: :mod:`runtime.store.layout`).

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
* The user item (``USER#<userId>``) is the user's presence in the room *in
  this region*: one attribute ``c:<connectionId>`` per local connection,
  holding that connection's expiry (epoch s, renewed by ``join`` and
  ``ping`` like the membership's ``expiresAt``). First-join / last-leave are
  decided atomically from one UpdateItem's ``ReturnValues``
  (:func:`join_room`, :func:`remove_user_connection`): O(1) whatever the
  room size, and exact under concurrency (DynamoDB serialises updates of an
  item). An entry whose expiry has passed is a connection that died without
  ``$disconnect``: it counts as absent everywhere, the next join prunes it
  and the item goes when no live entry is left. Writes are ordered META ->
  user entry -> membership on join and membership -> user entry on leave, so
  entries cover the memberships; a lost entry removal lapses at its expiry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, retry, runtime_settings
from multiregion_chat.runtime.platform.observability import logger
from multiregion_chat.runtime.protocol.chat_model import Sender
from multiregion_chat.runtime.protocol.ids import epoch_seconds, iso_from_ms, now_ms
from multiregion_chat.runtime.store.layout import (
    CONNECTED_USER_ATTRIBUTE,
    CONNECTIONS_BY_USER_INDEX,
    ENTRY_PREFIX,
    META,
    Item,
    conn_pk,
    connection_expires_at,
    connections_table,
    int_attr,
    is_conditional_failure,
    live_connection_ids,
    query_pages,
    room_pk,
    str_attr,
    user_entries,
    user_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "CleanupResult",
    "Connection",
    "JoinResult",
    "MembershipLease",
    "UnknownConnectionError",
    "clear_presence_mark",
    "connection_from_item",
    "delete_connection_records",
    "get_connection",
    "get_membership",
    "join_room",
    "leave_room",
    "put_connection",
    "refresh_connection",
    "remove_user_connection",
    "set_presence_mark",
    "user_connection_ids",
]

BATCH_SIZE = 25  # BatchWriteItem maximum
BATCH_ATTEMPTS = 5


class UnknownConnectionError(Exception):
    """The connection has no META item (never connected, expired or cleaned up)."""


class Connection(NamedTuple):
    connection_id: str
    user_id: str
    name: str | None
    rooms: frozenset[str]
    # The token's room patterns (``allowedRooms``); None: every room.
    allowed_rooms: tuple[str, ...] | None = None
    # The token's ``exp`` (``tokenExpiresAt``, epoch s); None: not recorded.
    token_expires_at: int | None = None


class JoinResult(NamedTuple):
    """What ``join`` did: ``created`` is False when the membership already existed;
    ``first``: this new membership made the user present in the room in this region
    (no other live connection of the user was there)."""

    connection: Connection
    created: bool
    joined_at: str
    first: bool = False


class MembershipLease(NamedTuple):
    """A membership whose presence announcement is due for renewal (``ping``)."""

    room: str
    user_id: str
    name: str | None


@dataclass(slots=True)
class CleanupResult:
    """What a connection cleanup removed.

    ``deleted`` counts applied deletes (as before); ``removed_rooms`` are the
    rooms whose membership of this connection is now gone, with the user's
    identity (from META, else from the membership items) for presence.
    """

    deleted: int = 0
    user_id: str | None = None
    name: str | None = None
    removed_rooms: list[str] = field(default_factory=list)


def connection_from_item(connection_id: str, item: Item) -> Connection:
    return Connection(
        connection_id=connection_id,
        user_id=str_attr(item, "userId") or "",
        name=str_attr(item, "name"),
        rooms=frozenset(item.get("rooms", {}).get("SS", [])),
        allowed_rooms=(
            tuple(value.get("S", "") for value in item["allowedRooms"].get("L", []))
            if "allowedRooms" in item
            else None
        ),
        token_expires_at=_token_expires_at(item),
    )


def _token_expires_at(item: Item) -> int | None:
    raw = item.get("tokenExpiresAt", {}).get("N")
    return int(raw) if raw is not None else None


def _extend_expiry(key: Item, expires: int) -> Item | None:
    """Push back ``expiresAt`` of an existing item; its new attributes, or None if it is gone.

    Conditional on the item existing, so a refresh never recreates an item a
    concurrent leave, disconnect or clean-up has just deleted.
    """
    try:
        response = aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=key,
            UpdateExpression="SET expiresAt = :exp",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":exp": {"N": str(expires)}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if is_conditional_failure(error):
            return None
        raise
    return dict(response.get("Attributes", {}))


def put_connection(
    connection_id: str,
    user_id: str,
    name: str | None,
    allowed_rooms: tuple[str, ...] | None = None,
    token_expires_at: int | None = None,
) -> None:
    """Register a new connection (``$connect``); ``allowed_rooms``: the token's room
    patterns, ``token_expires_at``: its ``exp`` (the connection is closed after it)."""
    item: Item = {
        "pk": {"S": conn_pk(connection_id)},
        "sk": {"S": META},
        "userId": {"S": user_id},
        CONNECTED_USER_ATTRIBUTE: {"S": user_id},
        "connectedAt": {"S": iso_from_ms(now_ms())},
        "expiresAt": {"N": str(connection_expires_at())},
    }
    if name:
        item["name"] = {"S": name}
    if allowed_rooms is not None:
        item["allowedRooms"] = {"L": [{"S": pattern} for pattern in allowed_rooms]}
    if token_expires_at is not None:
        item["tokenExpiresAt"] = {"N": str(token_expires_at)}
    aws_clients.dynamodb().put_item(TableName=connections_table(), Item=item)


def extend_token(connection_id: str, user_id: str, expires_at: int) -> bool:
    """Record a fresh token's ``exp`` (``refresh``); False when the connection is
    unknown or belongs to another user (conditional write, nothing changed).

    META first, then each membership META lists (at most the rooms-per-connection
    cap): the fan-out reads the expiry from the membership items.
    """
    ddb, table = aws_clients.dynamodb(), connections_table()
    value: AttributeValueTypeDef = {"N": str(expires_at)}
    try:
        response = ddb.update_item(
            TableName=table,
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
            UpdateExpression="SET tokenExpiresAt = :exp",
            ConditionExpression="userId = :user",
            ExpressionAttributeValues={":exp": value, ":user": {"S": user_id}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if is_conditional_failure(error):
            return False
        raise
    for room in sorted(response.get("Attributes", {}).get("rooms", {}).get("SS", [])):
        try:
            ddb.update_item(
                TableName=table,
                Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
                UpdateExpression="SET tokenExpiresAt = :exp",
                ConditionExpression="attribute_exists(pk)",  # never recreate a left membership
                ExpressionAttributeValues={":exp": value},
            )
        except ClientError as error:
            if not is_conditional_failure(error):
                raise
    return True


def token_expires_at(connection_id: str) -> int | None:
    """The ``exp`` of the connection's token, None when unknown (or no META).

    One strongly consistent read of one attribute per client frame."""
    response = aws_clients.dynamodb().get_item(
        TableName=connections_table(),
        Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
        ConsistentRead=True,
        ProjectionExpression="tokenExpiresAt",
    )
    return _token_expires_at(response.get("Item") or {})


def user_connection_ids(user_id: str) -> list[str]:
    """The ids of ``user_id``'s connections in this region (the ``ConnectionsByUser`` index).

    Eventually consistent (a GSI): a connection opened a moment ago may be
    missing, one closed a moment ago may still be listed (deleting it answers 410).
    """
    ids: list[str] = []
    for page in query_pages(
        TableName=connections_table(),
        IndexName=CONNECTIONS_BY_USER_INDEX,
        KeyConditionExpression="#u = :u",
        ExpressionAttributeNames={"#u": CONNECTED_USER_ATTRIBUTE},
        ExpressionAttributeValues={":u": {"S": user_id}},
    ):
        for item in page:
            pk = str_attr(item, "pk") or ""
            if pk.startswith("CONN#"):
                ids.append(pk.removeprefix("CONN#"))
    return ids


def get_connection(connection_id: str) -> Connection | None:
    response = aws_clients.dynamodb().get_item(
        TableName=connections_table(),
        Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return connection_from_item(connection_id, item) if item else None


class RoomCapReachedError(Exception):
    """The connection is already in ``max_rooms`` rooms (checked on the META write)."""


def join_room(connection_id: str, room: str, max_rooms: int | None = None) -> JoinResult:
    """Add the membership (idempotent); raises UnknownConnectionError without META.

    With ``max_rooms``, a new room is added only while META holds fewer rooms
    (a condition on the write, so two joins racing on one connection cannot
    both pass); RoomCapReachedError otherwise. Re-joining is always allowed.

    A new membership is written with ``presenceAt`` (epoch s) on the
    assumption that it is announced; :func:`clear_presence_mark` undoes that
    when it is not. Re-joining keeps the existing item (``joinedAt`` included)
    and only pushes its expiry back.
    """
    table, expires = connections_table(), connection_expires_at()
    ddb = aws_clients.dynamodb()
    condition = "attribute_exists(pk)"
    values: Item = {":exp": {"N": str(expires)}, ":rooms": {"SS": [room]}}
    if max_rooms is not None:
        condition += (
            " AND (attribute_not_exists(rooms) OR size(rooms) < :cap OR contains(rooms, :room))"
        )
        values |= {":cap": {"N": str(max_rooms)}, ":room": {"S": room}}
    meta_key: Item = {"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}
    try:
        response = ddb.update_item(
            TableName=table,
            Key=meta_key,
            UpdateExpression="SET expiresAt = :exp ADD rooms :rooms",
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
        if max_rooms is not None and "Item" in ddb.get_item(
            TableName=table, Key=meta_key, ProjectionExpression="pk", ConsistentRead=True
        ):
            raise RoomCapReachedError(connection_id) from None
        raise UnknownConnectionError(connection_id) from None
    connection = connection_from_item(connection_id, response.get("Attributes", {}))
    first = _add_user_connection(room, connection, expires)
    joined_at = iso_from_ms(now_ms())
    key: Item = {"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}}
    item: Item = {
        **key,
        "connectionId": {"S": connection_id},
        "userId": {"S": connection.user_id},
        "joinedAt": {"S": joined_at},
        "presenceAt": {"N": str(epoch_seconds())},
        "expiresAt": {"N": str(expires)},
    }
    if connection.name:
        item["name"] = {"S": connection.name}
    if connection.token_expires_at is not None:
        # the fan-out reads it with the ids: listen-only connections are closed after exp
        item["tokenExpiresAt"] = {"N": str(connection.token_expires_at)}
    try:
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return JoinResult(connection=connection, created=True, joined_at=joined_at, first=first)
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
    existing = _extend_expiry(key, expires)  # already a member: keep the item
    if existing is None:
        # deleted in between (a concurrent leave, which also removed our user entry):
        # it is a new membership after all
        first = _add_user_connection(room, connection, expires)
        ddb.put_item(TableName=table, Item=item)
        return JoinResult(connection=connection, created=True, joined_at=joined_at, first=first)
    old_joined = str_attr(existing, "joinedAt") or joined_at
    return JoinResult(connection=connection, created=False, joined_at=old_joined)


def _add_user_connection(room: str, connection: Connection, expires: int) -> bool:
    """Set the connection's entry in the user item (creating it); True on first-join.

    One UpdateItem with ``ReturnValues=ALL_OLD``: first-join means no live
    entry was there before ours (ours included: a re-join is no transition).
    Updates of one item are serialised, so of two concurrent first joins
    exactly one sees the other. Stale entries seen (connections that died
    without ``$disconnect``) are pruned afterwards, best effort.
    """
    if not connection.user_id:
        return False
    names: dict[str, str] = {"#c": ENTRY_PREFIX + connection.connection_id}
    values: dict[str, AttributeValueTypeDef] = {
        ":exp": {"N": str(expires)},
        ":user": {"S": connection.user_id},
        ":one": {"N": "1"},
    }
    expression = "SET #c = :exp, userId = :user, expiresAt = :exp"
    if connection.name:
        expression += ", #n = :name"
        names["#n"] = "name"
        values[":name"] = {"S": connection.name}
    response = aws_clients.dynamodb().update_item(
        TableName=connections_table(),
        Key=user_key(room, connection.user_id),
        UpdateExpression=expression + " ADD v :one",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_OLD",
    )
    old = response.get("Attributes") or {}
    now = epoch_seconds()
    stale = {
        cid: at
        for cid, at in user_entries(old).items()
        if at < now and cid != connection.connection_id
    }
    if stale:
        _prune_entries(room, connection.user_id, stale)
    return not live_connection_ids(old, now)


def _prune_entries(room: str, user_id: str, stale: Mapping[str, int]) -> None:
    """Remove expired entries, each only if still unchanged (never a renewed one)."""
    names, values, conditions = {}, {}, []
    for n, (cid, at) in enumerate(sorted(stale.items())):
        names[f"#s{n}"] = ENTRY_PREFIX + cid
        values[f":s{n}"] = {"N": str(at)}
        conditions.append(f"#s{n} = :s{n}")
    try:
        aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=user_key(room, user_id),
            UpdateExpression="REMOVE " + ", ".join(names),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            logger.warning("stale presence entries not pruned", extra={"room": room})


def remove_user_connection(room: str, user_id: str, connection_id: str) -> bool:
    """Remove the connection's entry from the user item; True on last-leave.

    One UpdateItem (``REMOVE``, ``ReturnValues=ALL_NEW``, conditional on this
    connection's entry existing, so the item is never recreated and only one
    of two overlapping cleanups of a connection, e.g. ``$disconnect`` racing a
    410, sees the transition): last-leave means no live entry is left. The
    item is then deleted, conditional on its version ``v`` so a join that
    raced in keeps it. No entry (a repeated cleanup, or a membership written
    before user items existed) is not a leave: nothing is announced or
    counted twice, and other regions drop a user whose lease is not renewed.
    """
    key = user_key(room, user_id)
    ddb = aws_clients.dynamodb()
    try:
        response = ddb.update_item(
            TableName=connections_table(),
            Key=key,
            UpdateExpression="REMOVE #c ADD v :one",
            ConditionExpression="attribute_exists(#c)",
            ExpressionAttributeNames={"#c": ENTRY_PREFIX + connection_id},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if is_conditional_failure(error):
            return False
        raise
    item = response.get("Attributes") or {}
    if live_connection_ids(item, epoch_seconds()):
        return False
    try:
        ddb.delete_item(
            TableName=connections_table(),
            Key=key,
            ConditionExpression="v = :v",
            ExpressionAttributeValues={":v": item["v"]},
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
    return True


def _renew_user_connection(room: str, user_id: str, connection_id: str, expires: int) -> None:
    """Push back the connection's entry (``ping``), only if it is there."""
    try:
        aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=user_key(room, user_id),
            UpdateExpression="SET #c = :exp, expiresAt = :exp",
            ConditionExpression="attribute_exists(#c)",
            ExpressionAttributeNames={"#c": ENTRY_PREFIX + connection_id},
            ExpressionAttributeValues={":exp": {"N": str(expires)}},
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise


def leave_room(connection_id: str, room: str) -> Sender | None:
    """Remove the membership; returns who it was (as a sender of this region),
    or None when the connection was not a member."""
    table = connections_table()
    response = aws_clients.dynamodb().delete_item(
        TableName=table,
        Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        ReturnValues="ALL_OLD",
    )
    try:
        aws_clients.dynamodb().update_item(
            TableName=table,
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
            UpdateExpression="DELETE rooms :rooms",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":rooms": {"SS": [room]}},
        )
    except ClientError as error:
        if not is_conditional_failure(error):
            raise
    old = response.get("Attributes")
    if not old:
        return None
    return Sender(
        user_id=str_attr(old, "userId") or "",
        name=str_attr(old, "name"),
        region=runtime_settings.get_settings().region,
    )


def get_membership(connection_id: str, room: str) -> Sender | None:
    """The member's identity in ``room`` (as a message sender), or None."""
    response = aws_clients.dynamodb().get_item(
        TableName=connections_table(),
        Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    if not item:
        return None
    return Sender(
        user_id=str_attr(item, "userId") or "",
        name=str_attr(item, "name"),
        region=runtime_settings.get_settings().region,
    )


def refresh_connection(connection_id: str) -> tuple[Connection, list[MembershipLease]]:
    """Push back the expiry of META, of every membership and of its user entry (``ping``).

    Also returns the memberships whose presence announcement is older than
    ``presence_refresh_seconds`` (or was never made): the caller renews them.
    """
    settings = runtime_settings.get_settings()
    expires, now = connection_expires_at(), epoch_seconds()
    meta = _extend_expiry({"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}, expires)
    if meta is None:
        raise UnknownConnectionError(connection_id)
    connection = connection_from_item(connection_id, meta)
    due: list[MembershipLease] = []
    for room in sorted(connection.rooms):
        item = _extend_expiry(
            {"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}}, expires
        )
        if item is None:  # left or cleaned up meanwhile
            continue
        if user_id := str_attr(item, "userId"):
            _renew_user_connection(room, user_id, connection_id, expires)
        announced = int_attr(item, "presenceAt")
        if announced is None or now - announced >= settings.presence_refresh_seconds:
            due.append(
                MembershipLease(room, str_attr(item, "userId") or "", str_attr(item, "name"))
            )
    return connection, due


def set_presence_mark(connection_id: str, room: str) -> None:
    """Record that this membership's presence was just announced (``presenceAt``)."""
    _update_presence_mark(connection_id, room, "SET presenceAt = :now", epoch_seconds())


def clear_presence_mark(connection_id: str, room: str) -> None:
    """Forget the announcement (not made, or failed): the next ``ping`` makes it."""
    _update_presence_mark(connection_id, room, "REMOVE presenceAt", None)


def _update_presence_mark(connection_id: str, room: str, expression: str, now: int | None) -> None:
    kwargs: dict[str, Any] = {
        "TableName": connections_table(),
        "Key": {"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        "UpdateExpression": expression,
        "ConditionExpression": "attribute_exists(pk)",  # never recreate a left membership
    }
    if now is not None:
        kwargs["ExpressionAttributeValues"] = {":now": {"N": str(now)}}
    try:
        aws_clients.dynamodb().update_item(**kwargs)
    except ClientError as error:
        if not is_conditional_failure(error):
            raise


def _batch_delete(keys: list[Item]) -> list[Item]:
    """Delete ``keys`` with BatchWriteItem, retrying UnprocessedItems with backoff.

    Returns the keys that could not be deleted after the bounded retries.
    """
    table, ddb = connections_table(), aws_clients.dynamodb()
    left: list[Item] = []
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
        left.extend(request["DeleteRequest"]["Key"] for request in pending)
    return left


def _orphan_memberships(connection_id: str, rooms: Iterable[str]) -> list[Item]:
    """The existing memberships of a connection without META, in ``rooms``."""
    found = []
    for room in sorted(set(rooms)):
        response = aws_clients.dynamodb().get_item(
            TableName=connections_table(),
            Key={"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
            ConsistentRead=True,
        )
        if item := response.get("Item"):
            found.append(item)
    return found


def delete_connection_records(connection_id: str, rooms_hint: Iterable[str] = ()) -> CleanupResult:
    """Delete a connection's memberships, then its META (``$disconnect``, 410 Gone).

    Idempotent: with META already gone only the memberships in ``rooms_hint``
    (e.g. the room a 410 came from) are looked up and deleted. META is deleted
    only once all memberships are, so a partial failure keeps the room list
    for the next attempt (TTL is the final backstop). ``deleted`` counts the
    deletes applied (keys that were already gone count too); the result also
    names the user and the rooms whose membership is now gone.
    """
    connection = get_connection(connection_id)
    result = CleanupResult()
    if connection is not None:
        rooms = set(rooms_hint) | set(connection.rooms)
        result.user_id, result.name = connection.user_id, connection.name
    else:
        orphans = _orphan_memberships(connection_id, rooms_hint)
        rooms = {(str_attr(i, "pk") or "").removeprefix("ROOM#") for i in orphans}
        if orphans:
            result.user_id, result.name = (
                str_attr(orphans[0], "userId"),
                str_attr(orphans[0], "name"),
            )
    sk = {"S": conn_pk(connection_id)}
    memberships: list[Item] = [{"pk": {"S": room_pk(r)}, "sk": sk} for r in sorted(rooms)]
    undeleted = _batch_delete(memberships)
    kept = {(str_attr(key, "pk") or "").removeprefix("ROOM#") for key in undeleted}
    result.removed_rooms = sorted(rooms - kept)
    result.deleted = len(memberships) - len(undeleted)
    if undeleted:
        logger.warning(
            "memberships not deleted; META kept for a later cleanup",
            extra={"connectionId": connection_id, "undeleted": len(undeleted)},
        )
        return result
    if connection is not None:
        aws_clients.dynamodb().delete_item(
            TableName=connections_table(),
            Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
        )
        result.deleted += 1
    return result
