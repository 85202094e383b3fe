"""Reads of a room's partition in the connections table (layout: :mod:`runtime.store.layout`):
members and presence, the fan-out's connection ids, and other regions'
presence items.

Consistency choices:

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
from enum import Enum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.chat_model import PresenceEvent
from multiregion_chat.runtime.protocol.ids import epoch_seconds
from multiregion_chat.runtime.store.layout import (
    USER_PREFIX,
    Item,
    connections_table,
    int_attr,
    is_conditional_failure,
    lease_expired,
    live_connection_ids,
    query_pages,
    room_pk,
    str_attr,
    user_key,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

__all__ = [
    "RemotePresenceOutcome",
    "apply_remote_presence",
    "iter_room_connection_ids",
    "iter_room_connections",
    "member_presence",
    "room_members",
    "room_members_page",
    "user_connections",
]

FANOUT_PAGE_SIZE: int | None = None  # Query Limit of the fan-out (None: 1 MB pages)


class RemotePresenceOutcome(Enum):
    CHANGED = "changed"  # applied, and the user's visibility from that region changed
    UNCHANGED = "unchanged"  # applied (lease renewed / tombstone kept), nothing visible changed
    STALE = "stale"  # refused: not newer than what is stored (a duplicate or out of order)


Entry = tuple[str, str, str | None]  # (userId, region, name) of one presence source


def _remote_entry(item: Mapping[str, Any], now: int) -> Entry | None:
    """A ``REMOTE#`` item as a presence entry; None for tombstones and lapsed leases."""
    user_id = str_attr(item, "userId")
    if not user_id or lease_expired(item, now) or str_attr(item, "state") == "left":
        return None
    region = str_attr(item, "region") or (str_attr(item, "sk") or "").split("#")[1]
    return user_id, region, str_attr(item, "name")


def _local_entry(item: Mapping[str, Any], now: int) -> Entry | None:
    """A ``USER#`` item as a presence entry; None without a live connection entry."""
    user_id = str_attr(item, "userId")
    if not user_id or lease_expired(item, now) or not live_connection_ids(item, now):
        return None
    return user_id, runtime_settings.get_settings().region, str_attr(item, "name")


def _merge_presence(entries: Iterable[Entry]) -> list[dict[str, str]]:
    """``[{userId, name?, region}]`` from presence entries, each user once, by userId.

    A user present locally (a ``USER#`` item with a live entry) is shown with
    this region; otherwise with the alphabetically first region among its
    ``REMOTE#<region>#`` items (tombstones and lapsed leases are never entries).
    """
    local = runtime_settings.get_settings().region
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
        response = aws_clients.dynamodb().query(
            TableName=connections_table(),
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
        parts = (str_attr(items[0], "sk") or "").split("#")
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
        "TableName": connections_table(),
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
    for page in query_pages(**kwargs):
        for item in page:
            if cursor is not None and str_attr(item, "sk") == start:
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
    response = aws_clients.dynamodb().get_item(
        TableName=connections_table(), Key=key, ConsistentRead=True
    )
    item = response.get("Item")
    return dict(item) if item else None


def member_presence(room: str, user_id: str) -> dict[str, str] | None:
    """How ``presence`` shows ``user_id`` in ``room`` now (None: not present).

    Consistent reads of the user item and of the user's ``REMOTE#`` item in each
    region that has any (O(regions), whatever the room size)."""
    now = epoch_seconds()
    entries: list[Entry] = []
    local = _get(user_key(room, user_id))
    if local and (entry := _local_entry(local, now)):
        entries.append(entry)
    for region in _remote_regions(room, consistent=True):
        key = {"pk": {"S": room_pk(room)}, "sk": {"S": f"REMOTE#{region}#{user_id}"}}
        remote = _get(key)
        if remote and (entry := _remote_entry(remote, now)):
            entries.append(entry)
    found = _merge_presence(entries)
    return found[0] if found else None


RoomConnection = tuple[str, int | None]  # (connectionId, tokenExpiresAt) of one membership


def iter_room_connections(
    room: str, page_size: int | None = None
) -> Iterator[list[RoomConnection]]:
    """The local connections in ``room`` with their token's ``exp`` (None: not
    recorded), one list per Query page (membership items only: ``USER#``,
    ``REMOTE#`` and ``COUNT`` do not begin with ``CONN#``)."""
    kwargs: dict[str, Any] = {
        "TableName": connections_table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :conn)",
        "ProjectionExpression": "connectionId, tokenExpiresAt",
        "ExpressionAttributeValues": {":pk": {"S": room_pk(room)}, ":conn": {"S": "CONN#"}},
    }
    limit = page_size or FANOUT_PAGE_SIZE
    if limit:
        kwargs["Limit"] = limit
    for page in query_pages(**kwargs):
        yield [
            (cid, int_attr(item, "tokenExpiresAt"))
            for item in page
            if (cid := str_attr(item, "connectionId"))
        ]


def iter_room_connection_ids(room: str, page_size: int | None = None) -> Iterator[list[str]]:
    """The local connection ids in ``room``, one list per Query page, expired
    tokens included (deliveries use :func:`runtime.auth.token_expiry.live_connection_ids`)."""
    for page in iter_room_connections(room, page_size):
        yield [cid for cid, _ in page]


def user_connections(room: str, user_id: str) -> list[str]:
    """The live local connection ids of ``user_id`` in ``room`` (one consistent
    GetItem of the user item; entries past their expiry are skipped)."""
    item = _get(user_key(room, user_id))
    return live_connection_ids(item, epoch_seconds()) if item else []


def apply_remote_presence(event: PresenceEvent) -> RemotePresenceOutcome:
    """Record another region's presence event in ``ROOM#<room>/REMOTE#<region>#<userId>``.

    One conditional UpdateItem (``attribute_not_exists(pk) OR updatedAt < :at``):
    an event not newer than the stored one changes nothing (STALE). "joined"
    stores ``state = "joined"``; "left" keeps the item as a tombstone
    (``state = "left"``) so that an older "joined" arriving later is refused.
    Both set ``expiresAt = now + CONNECTION_TTL_SECONDS``: a joined item is a
    lease that the origin renews (``ping``); without renewal it lapses.
    """
    settings = runtime_settings.get_settings()
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
        response = aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key={"pk": {"S": room_pk(event.room)}, "sk": {"S": f"REMOTE#{region}#{user.user_id}"}},
            UpdateExpression=expression,
            ConditionExpression="attribute_not_exists(pk) OR updatedAt < :at",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
    except ClientError as error:
        if is_conditional_failure(error):
            return RemotePresenceOutcome.STALE
        raise
    old = response.get("Attributes") or {}
    was_visible = (
        bool(old) and str_attr(old, "state") != "left" and not lease_expired(old, epoch_seconds())
    )
    is_visible = event.event == "joined"
    return (
        RemotePresenceOutcome.CHANGED
        if was_visible != is_visible
        else RemotePresenceOutcome.UNCHANGED
    )
