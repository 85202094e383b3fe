"""DynamoDB access: the connections table and the messages (history) table.

Item layout (docs/contracts.md)::

    connections  CONN#<id>   / META                userId, name?, rooms (SS), allowedRooms (L)?,
                                                   connectedAt, expiresAt
                 ROOM#<room> / CONN#<id>           connectionId, userId, name?, joinedAt,
                                                   presenceAt?, expiresAt
                 ROOM#<room> / USER#<userId>       userId, name?, c:<id> (N, one per local
                                                   connection: its expiry), v, expiresAt
                 ROOM#<room> / REMOTE#<region>#<u> userId, name?, region, state, updatedAt,
                                                   expiresAt
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
* Member lists are read in ``userId`` order without reading the room: the
  ``USER#`` items (local) and each region's ``REMOTE#<region>#`` items are
  separate sort-key ranges, each already ordered by user id
  (:func:`room_members_page`). ``USER#`` never matches the fan-out's
  ``begins_with(sk, "CONN#")``.
* Remote presence items are leases with a state: ``state = "left"`` is a
  tombstone that keeps ``updatedAt`` so a late ``joined`` cannot resurrect a
  user (:func:`apply_remote_presence`). Readers skip tombstones and items
  whose ``expiresAt`` has passed (DynamoDB's TTL deletes lazily).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chat import clients, config, retry
from chat.ids import epoch_seconds, iso_from_ms, now_ms
from chat.json_codec import compact_json
from chat.model import ChatMessage, PresenceEvent, Sender
from chat.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "CleanupResult",
    "Connection",
    "JoinResult",
    "MembershipLease",
    "RemotePresenceOutcome",
    "UnknownConnectionError",
    "apply_remote_presence",
    "clear_presence_mark",
    "delete_connection_records",
    "get_connection",
    "get_membership",
    "iter_room_connection_ids",
    "join_room",
    "leave_room",
    "member_presence",
    "put_connection",
    "put_message",
    "query_messages",
    "refresh_connection",
    "remove_user_connection",
    "room_members",
    "room_members_page",
    "set_presence_mark",
    "user_connections",
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
    # The token's room patterns (``allowedRooms``); None: every room.
    allowed_rooms: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class JoinResult:
    """What ``join`` did: ``created`` is False when the membership already existed;
    ``first``: this new membership made the user present in the room in this region
    (no other live connection of the user was there)."""

    connection: Connection
    created: bool
    joined_at: str
    first: bool = False


@dataclass(frozen=True, slots=True)
class MembershipLease:
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


class RemotePresenceOutcome(Enum):
    CHANGED = "changed"  # applied, and the user's visibility from that region changed
    UNCHANGED = "unchanged"  # applied (lease renewed / tombstone kept), nothing visible changed
    STALE = "stale"  # refused: not newer than what is stored (a duplicate or out of order)


def conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def room_pk(room: str) -> str:
    return f"ROOM#{room}"


USER_PREFIX = "USER#"
ENTRY_PREFIX = "c:"  # a user item's attribute per local connection: c:<connectionId>


def user_sk(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


def _user_key(room: str, user_id: str) -> Item:
    return {"pk": {"S": room_pk(room)}, "sk": {"S": user_sk(user_id)}}


def _entries(item: Mapping[str, Any]) -> dict[str, int]:
    """The connection entries of a user item: ``{connectionId: expiry}``."""
    found: dict[str, int] = {}
    for name, value in item.items():
        if name.startswith(ENTRY_PREFIX) and "N" in value:
            try:
                found[name.removeprefix(ENTRY_PREFIX)] = int(value["N"])
            except ValueError:
                continue
    return found


def _live(item: Mapping[str, Any], now: int) -> list[str]:
    """The connection ids of a user item whose expiry has not passed."""
    return sorted(cid for cid, expires in _entries(item).items() if expires >= now)


def _s(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.get("S") if value else None


def _n(item: Mapping[str, Any], key: str) -> int | None:
    value = item.get(key)
    raw = value.get("N") if value else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def _expired(item: Mapping[str, Any], now: int) -> bool:
    """True when the item's lease (``expiresAt``) has passed (TTL deletion lags)."""
    expires = _n(item, "expiresAt")
    return expires is not None and expires < now


def _is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def _connection_from_item(connection_id: str, item: Item) -> Connection:
    return Connection(
        connection_id=connection_id,
        user_id=_s(item, "userId") or "",
        name=_s(item, "name"),
        rooms=frozenset(item.get("rooms", {}).get("SS", [])),
        allowed_rooms=(
            tuple(value.get("S", "") for value in item["allowedRooms"].get("L", []))
            if "allowedRooms" in item
            else None
        ),
    )


def _table() -> str:
    return config.get_settings().connections_table


def _expires_at() -> int:
    return epoch_seconds() + config.get_settings().connection_ttl_seconds


# --- connections --------------------------------------------------------------


def _extend_expiry(key: Item, expires: int) -> Item | None:
    """Push back ``expiresAt`` of an existing item; its new attributes, or None if it is gone.

    Conditional on the item existing, so a refresh never recreates an item a
    concurrent leave, disconnect or clean-up has just deleted.
    """
    try:
        response = clients.dynamodb().update_item(
            TableName=_table(),
            Key=key,
            UpdateExpression="SET expiresAt = :exp",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":exp": {"N": str(expires)}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            return None
        raise
    return dict(response.get("Attributes", {}))


def put_connection(
    connection_id: str,
    user_id: str,
    name: str | None,
    allowed_rooms: tuple[str, ...] | None = None,
) -> None:
    """Register a new connection (``$connect``); ``allowed_rooms``: the token's room patterns."""
    item: Item = {
        "pk": {"S": conn_pk(connection_id)},
        "sk": {"S": META},
        "userId": {"S": user_id},
        "connectedAt": {"S": iso_from_ms(now_ms())},
        "expiresAt": {"N": str(_expires_at())},
    }
    if name:
        item["name"] = {"S": name}
    if allowed_rooms is not None:
        item["allowedRooms"] = {"L": [{"S": pattern} for pattern in allowed_rooms]}
    clients.dynamodb().put_item(TableName=_table(), Item=item)


def get_connection(connection_id: str) -> Connection | None:
    response = clients.dynamodb().get_item(
        TableName=_table(),
        Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return _connection_from_item(connection_id, item) if item else None


def join_room(connection_id: str, room: str) -> JoinResult:
    """Add the membership (idempotent); raises UnknownConnectionError without META.

    A new membership is written with ``presenceAt`` (epoch s) on the
    assumption that it is announced; :func:`clear_presence_mark` undoes that
    when it is not. Re-joining keeps the existing item (``joinedAt`` included)
    and only pushes its expiry back.
    """
    table, expires = _table(), _expires_at()
    ddb = clients.dynamodb()
    try:
        response = ddb.update_item(
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
    try:
        ddb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        return JoinResult(connection=connection, created=True, joined_at=joined_at, first=first)
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise
    existing = _extend_expiry(key, expires)  # already a member: keep the item
    if existing is None:
        # deleted in between (a concurrent leave, which also removed our user entry):
        # it is a new membership after all
        first = _add_user_connection(room, connection, expires)
        ddb.put_item(TableName=table, Item=item)
        return JoinResult(connection=connection, created=True, joined_at=joined_at, first=first)
    old_joined = _s(existing, "joinedAt") or joined_at
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
    response = clients.dynamodb().update_item(
        TableName=_table(),
        Key=_user_key(room, connection.user_id),
        UpdateExpression=expression + " ADD v :one",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        ReturnValues="ALL_OLD",
    )
    old = response.get("Attributes") or {}
    now = epoch_seconds()
    stale = {
        cid: at for cid, at in _entries(old).items() if at < now and cid != connection.connection_id
    }
    if stale:
        _prune_entries(room, connection.user_id, stale)
    return not _live(old, now)


def _prune_entries(room: str, user_id: str, stale: Mapping[str, int]) -> None:
    """Remove expired entries, each only if still unchanged (never a renewed one)."""
    names, values, conditions = {}, {}, []
    for n, (cid, at) in enumerate(sorted(stale.items())):
        names[f"#s{n}"] = ENTRY_PREFIX + cid
        values[f":s{n}"] = {"N": str(at)}
        conditions.append(f"#s{n} = :s{n}")
    try:
        clients.dynamodb().update_item(
            TableName=_table(),
            Key=_user_key(room, user_id),
            UpdateExpression="REMOVE " + ", ".join(names),
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as error:
        if not _is_conditional_failure(error):
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
    key = _user_key(room, user_id)
    ddb = clients.dynamodb()
    try:
        response = ddb.update_item(
            TableName=_table(),
            Key=key,
            UpdateExpression="REMOVE #c ADD v :one",
            ConditionExpression="attribute_exists(#c)",
            ExpressionAttributeNames={"#c": ENTRY_PREFIX + connection_id},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            return False
        raise
    item = response.get("Attributes") or {}
    if _live(item, epoch_seconds()):
        return False
    try:
        ddb.delete_item(
            TableName=_table(),
            Key=key,
            ConditionExpression="v = :v",
            ExpressionAttributeValues={":v": item["v"]},
        )
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise
    return True


def _renew_user_connection(room: str, user_id: str, connection_id: str, expires: int) -> None:
    """Push back the connection's entry (``ping``), only if it is there."""
    try:
        clients.dynamodb().update_item(
            TableName=_table(),
            Key=_user_key(room, user_id),
            UpdateExpression="SET #c = :exp, expiresAt = :exp",
            ConditionExpression="attribute_exists(#c)",
            ExpressionAttributeNames={"#c": ENTRY_PREFIX + connection_id},
            ExpressionAttributeValues={":exp": {"N": str(expires)}},
        )
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise


def leave_room(connection_id: str, room: str) -> Sender | None:
    """Remove the membership; returns who it was (as a sender of this region),
    or None when the connection was not a member."""
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
    old = response.get("Attributes")
    if not old:
        return None
    return Sender(
        user_id=_s(old, "userId") or "", name=_s(old, "name"), region=config.get_settings().region
    )


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


def refresh_connection(connection_id: str) -> tuple[Connection, list[MembershipLease]]:
    """Push back the expiry of META, of every membership and of its user entry (``ping``).

    Also returns the memberships whose presence announcement is older than
    ``presence_refresh_seconds`` (or was never made): the caller renews them.
    """
    settings = config.get_settings()
    expires, now = _expires_at(), epoch_seconds()
    meta = _extend_expiry({"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}, expires)
    if meta is None:
        raise UnknownConnectionError(connection_id)
    connection = _connection_from_item(connection_id, meta)
    due: list[MembershipLease] = []
    for room in sorted(connection.rooms):
        item = _extend_expiry(
            {"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}}, expires
        )
        if item is None:  # left or cleaned up meanwhile
            continue
        if user_id := _s(item, "userId"):
            _renew_user_connection(room, user_id, connection_id, expires)
        announced = _n(item, "presenceAt")
        if announced is None or now - announced >= settings.presence_refresh_seconds:
            due.append(MembershipLease(room, _s(item, "userId") or "", _s(item, "name")))
    return connection, due


def set_presence_mark(connection_id: str, room: str) -> None:
    """Record that this membership's presence was just announced (``presenceAt``)."""
    _update_presence_mark(connection_id, room, "SET presenceAt = :now", epoch_seconds())


def clear_presence_mark(connection_id: str, room: str) -> None:
    """Forget the announcement (not made, or failed): the next ``ping`` makes it."""
    _update_presence_mark(connection_id, room, "REMOVE presenceAt", None)


def _update_presence_mark(connection_id: str, room: str, expression: str, now: int | None) -> None:
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "Key": {"pk": {"S": room_pk(room)}, "sk": {"S": conn_pk(connection_id)}},
        "UpdateExpression": expression,
        "ConditionExpression": "attribute_exists(pk)",  # never recreate a left membership
    }
    if now is not None:
        kwargs["ExpressionAttributeValues"] = {":now": {"N": str(now)}}
    try:
        clients.dynamodb().update_item(**kwargs)
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise


def _batch_delete(keys: list[Item]) -> list[Item]:
    """Delete ``keys`` with BatchWriteItem, retrying UnprocessedItems with backoff.

    Returns the keys that could not be deleted after the bounded retries.
    """
    table, ddb = _table(), clients.dynamodb()
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
        response = clients.dynamodb().get_item(
            TableName=_table(),
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
        rooms = {(_s(i, "pk") or "").removeprefix("ROOM#") for i in orphans}
        if orphans:
            result.user_id, result.name = _s(orphans[0], "userId"), _s(orphans[0], "name")
    sk = {"S": conn_pk(connection_id)}
    memberships: list[Item] = [{"pk": {"S": room_pk(r)}, "sk": sk} for r in sorted(rooms)]
    undeleted = _batch_delete(memberships)
    kept = {(_s(key, "pk") or "").removeprefix("ROOM#") for key in undeleted}
    result.removed_rooms = sorted(rooms - kept)
    result.deleted = len(memberships) - len(undeleted)
    if undeleted:
        logger.warning(
            "memberships not deleted; META kept for a later cleanup",
            extra={"connectionId": connection_id, "undeleted": len(undeleted)},
        )
        return result
    if connection is not None:
        clients.dynamodb().delete_item(
            TableName=_table(), Key={"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}
        )
        result.deleted += 1
    return result


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


Entry = tuple[str, str, str | None]  # (userId, region, name) of one presence source


def _remote_entry(item: Mapping[str, Any], now: int) -> Entry | None:
    """A ``REMOTE#`` item as a presence entry; None for tombstones and lapsed leases."""
    user_id = _s(item, "userId")
    if not user_id or _expired(item, now) or _s(item, "state") == "left":
        return None
    region = _s(item, "region") or (_s(item, "sk") or "").split("#")[1]
    return user_id, region, _s(item, "name")


def _local_entry(item: Mapping[str, Any], now: int) -> Entry | None:
    """A ``USER#`` item as a presence entry; None without a live connection entry."""
    user_id = _s(item, "userId")
    if not user_id or _expired(item, now) or not _live(item, now):
        return None
    return user_id, config.get_settings().region, _s(item, "name")


def _merge_presence(entries: Iterable[Entry]) -> list[dict[str, str]]:
    """``[{userId, name?, region}]`` from presence entries, each user once, by userId.

    A user present locally (a ``USER#`` item with a live entry) is shown with
    this region; otherwise with the alphabetically first region among its
    ``REMOTE#<region>#`` items (tombstones and lapsed leases are never entries).
    """
    local = config.get_settings().region
    found: dict[str, list[tuple[int, str, str | None]]] = defaultdict(list)
    for user_id, region, name in entries:
        found[user_id].append((0 if region == local else 1, region, name))
    members = []
    for user_id in sorted(found):
        options = found[user_id]
        _, region, name = min(options, key=lambda e: (e[0], e[1]))
        # keep a known name when the preferred entry has none
        name = name or next((n for _, _, n in options if n), None)
        member = {"userId": user_id}
        if name:
            member["name"] = name
        member["region"] = region
        members.append(member)
    return members


def _remote_regions(room: str, consistent: bool = False) -> list[str]:
    """The regions with ``REMOTE#`` items in the room: a skip scan, one Query of
    one item per region (``sk`` between ``REMOTE#<previous>$`` and ``REMOTE$``;
    ``$`` sorts right after ``#``, so it skips the previous region's items)."""
    regions: list[str] = []
    low = "REMOTE#"
    while True:
        response = clients.dynamodb().query(
            TableName=_table(),
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ProjectionExpression="sk",
            ExpressionAttributeValues={
                ":pk": {"S": room_pk(room)},
                ":lo": {"S": low},
                ":hi": {"S": "REMOTE$"},
            },
            Limit=1,
            ConsistentRead=consistent,
        )
        items = response.get("Items", [])
        if not items:
            return regions
        parts = (_s(items[0], "sk") or "").split("#")
        if len(parts) < 3 or not parts[1]:
            return regions  # not our layout: stop rather than loop
        regions.append(parts[1])
        low = f"REMOTE#{parts[1]}$"


def _range_entries(
    room: str,
    prefix: str,
    cursor: str | None,
    want: int,
    accept: Callable[[Mapping[str, Any], int], Entry | None],
) -> list[Entry]:
    """Up to ``want`` entries of the sort-key range ``prefix<userId>`` with userId >
    ``cursor``, in userId order: Queries of ``want + 1`` items (the cursor's own
    item may come first), continued only while items are skipped (tombstones,
    lapsed leases, users without a live connection)."""
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # "USER#" -> "USER$": past every key
    start = prefix + (cursor or "")
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":pk": {"S": room_pk(room)},
            ":lo": {"S": start},
            ":hi": {"S": end},
        },
        "Limit": want + 1,
    }
    now = epoch_seconds()
    found: list[Entry] = []
    for page in _query_pages(**kwargs):
        for item in page:
            if cursor is not None and _s(item, "sk") == start:
                continue  # the cursor's user was on the previous page
            entry = accept(item, now)
            if entry is not None:
                found.append(entry)
                if len(found) >= want:
                    return found
    return found


def room_members(room: str) -> list[dict[str, str]]:
    """Presence of ``room``: ``[{userId, name?, region}]``, each user once, by userId
    (the merge rules are :func:`_merge_presence`'s). Reads every page."""
    members: list[dict[str, str]] = []
    cursor: str | None = None
    while True:
        page, cursor = room_members_page(room, 500, cursor)
        members.extend(page)
        if cursor is None:
            return members


MEMBER_PAGE_BYTES = 64 * 1024  # a page's members as compact JSON stay below this


def room_members_page(
    room: str, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, str]], str | None]:
    """One page of :func:`room_members`: the first ``limit`` users after ``cursor``
    (a user id) and the ``next`` cursor, None on the last page.

    Reads O(page), not O(room): ``limit + 1`` present users from the local
    ``USER#`` range and from each remote region's ``REMOTE#<region>#`` range
    (found by :func:`_remote_regions`), all starting after ``cursor``, merged
    in userId order. Each source is ordered and holds a user once, so the
    first ``limit`` users of the merge are within each source's first
    ``limit``, and a ``limit + 1``-th distinct user exists iff more follow.
    A page also ends before its members' JSON, encoded as the handlers encode
    replies (ASCII-escaped), would pass ``MEMBER_PAGE_BYTES``: user ids and
    names of any length stay far below API Gateway's 128 KB frame limit.
    Users are ordered by ``userId``, so a client paging with ``next`` sees
    every user present throughout exactly once.
    """
    if limit <= 0:
        return [], None
    want = limit + 1
    entries = _range_entries(room, USER_PREFIX, cursor, want, _local_entry)
    for region in _remote_regions(room):
        entries += _range_entries(room, f"REMOTE#{region}#", cursor, want, _remote_entry)
    members = _merge_presence(entries)
    page: list[dict[str, str]] = []
    size = 2
    for member in members[:limit]:
        size += len(json.dumps(member, separators=(",", ":"))) + 1  # as replies encode it
        if page and size > MEMBER_PAGE_BYTES:
            break
        page.append(member)
    more = len(page) < len(members)
    return page, (page[-1]["userId"] if more else None)


def _get(key: Item) -> Item | None:
    response = clients.dynamodb().get_item(TableName=_table(), Key=key, ConsistentRead=True)
    item = response.get("Item")
    return dict(item) if item else None


def member_presence(room: str, user_id: str) -> dict[str, str] | None:
    """How ``presence`` shows ``user_id`` in ``room`` now (None: not present).

    Consistent reads of the user item and of the user's ``REMOTE#`` item in each
    region that has any (O(regions), whatever the room size)."""
    now = epoch_seconds()
    entries: list[Entry] = []
    local = _get(_user_key(room, user_id))
    if local and (entry := _local_entry(local, now)):
        entries.append(entry)
    for region in _remote_regions(room, consistent=True):
        key = {"pk": {"S": room_pk(room)}, "sk": {"S": f"REMOTE#{region}#{user_id}"}}
        remote = _get(key)
        if remote and (entry := _remote_entry(remote, now)):
            entries.append(entry)
    found = _merge_presence(entries)
    return found[0] if found else None


def iter_room_connection_ids(room: str, page_size: int | None = None) -> Iterator[list[str]]:
    """The local connection ids in ``room``, one list per Query page (membership
    items only: ``USER#``, ``REMOTE#`` and ``COUNT`` do not begin with ``CONN#``)."""
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


def user_connections(room: str, user_id: str) -> list[str]:
    """The live local connection ids of ``user_id`` in ``room`` (one consistent
    GetItem of the user item; entries past their expiry are skipped)."""
    item = _get(_user_key(room, user_id))
    return _live(item, epoch_seconds()) if item else []


def apply_remote_presence(event: PresenceEvent) -> RemotePresenceOutcome:
    """Record another region's presence event in ``ROOM#<room>/REMOTE#<region>#<userId>``.

    One conditional UpdateItem (``attribute_not_exists(pk) OR updatedAt < :at``):
    an event not newer than the stored one changes nothing (STALE). "joined"
    stores ``state = "joined"``; "left" keeps the item as a tombstone
    (``state = "left"``) so that an older "joined" arriving later is refused.
    Both set ``expiresAt = now + CONNECTION_TTL_SECONDS``: a joined item is a
    lease that the origin renews (``ping``); without renewal it lapses.
    """
    settings = config.get_settings()
    region, user = event.origin_region, event.member
    names = {"#s": "state", "#r": "region", "#n": "name"}
    values: dict[str, AttributeValueTypeDef] = {
        ":at": {"N": str(event.at)},
        ":state": {"S": event.event},
        ":user": {"S": user.user_id},
        ":region": {"S": region},
        ":exp": {"N": str(epoch_seconds() + settings.connection_ttl_seconds)},
    }
    expression = "SET #s = :state, userId = :user, #r = :region, updatedAt = :at, expiresAt = :exp"
    if user.name:
        expression += ", #n = :name"
        values[":name"] = {"S": user.name}
    elif event.event == "joined":
        expression += " REMOVE #n"
    else:
        del names["#n"]  # DynamoDB rejects unused placeholders
    try:
        response = clients.dynamodb().update_item(
            TableName=_table(),
            Key={"pk": {"S": room_pk(event.room)}, "sk": {"S": f"REMOTE#{region}#{user.user_id}"}},
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(pk) OR updatedAt < :at",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            return RemotePresenceOutcome.STALE
        raise
    old = response.get("Attributes") or {}
    was_visible = bool(old) and _s(old, "state") != "left" and not _expired(old, epoch_seconds())
    is_visible = event.event == "joined"
    return (
        RemotePresenceOutcome.CHANGED
        if was_visible != is_visible
        else RemotePresenceOutcome.UNCHANGED
    )


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


def query_messages(
    room: str, after: str | None, limit: int, *, consistent: bool = False
) -> tuple[list[dict[str, Any]], bool]:
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
        ConsistentRead=consistent,
    )
    for page in pages:
        items.extend(page)
        if len(items) > limit:
            break
    return [_message_from_item(i) for i in items[:limit]], len(items) > limit
