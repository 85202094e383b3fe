"""Room sizes (``memberCount``) and the live/quiet presence mode of big rooms.

Pushing a ``member`` frame for every join and leave costs ``members`` posts per
event, so presence traffic grows with events x members (10,000 members with
1 % reconnecting per minute: ~33,000 ``@connections`` posts/s). Above
``PRESENCE_LIVE_MAX_MEMBERS`` a room is *quiet*: no ``member`` frames, clients
read the paged ``presence`` list and ``memberCount`` when they need them
(docs/protocol.md, "Presence in big rooms"). The switch itself is announced
once per direction with a ``members`` frame, so a client always knows whether
``member`` frames are coming.

The count is one item per room per region, ``ROOM#<room>/COUNT``::

    n:<region>  (N)  users present in the room in <region>, as this region knows it
    v           (N)  bumped by every update (guards the delete at zero)
    quiet       (BOOL, optional)  the room is above the threshold (no member frames)
    expiresAt   (N)  now + CONNECTION_TTL_SECONDS at every update

``n:<this region>`` is changed by the origin's join/leave paths on the
user's first-join / last-leave transition (:mod:`runtime.presence.transitions`);
``n:<other region>`` by EventBusMessageHandler when a remote presence event
changed what ``presence`` shows (``RemotePresenceOutcome.CHANGED``). Reads
are one GetItem: O(1) whatever the room size. ``memberCount`` is the sum,
so a user connected in two regions at once (a fail-over) counts twice.

Exactness: exact while every write succeeds, with two sources of drift, both
bounded: a rare duplicate first-join announcement (see :mod:`runtime.presence.transitions`)
or a failed count update (logged, ``PresenceCountFailures``); and a remote
lease that lapses without a "left". A decrement never goes below zero; the
item is deleted when every region's count is zero and expires
``CONNECTION_TTL_SECONDS`` after its last update, so a drifted count lives at
most until the room is empty or idle that long (every connection ends within
API Gateway's 2 h, which is a leave and a join somewhere).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.protocol.frames import frame
from multiregion_chat.runtime.protocol.ids import epoch_seconds

__all__ = ["COUNT_SK", "RoomCount", "add", "is_live", "mode_frame", "read", "set_quiet"]

COUNT_SK = "COUNT"
FAILURE_METRIC = "PresenceCountFailures"
_PREFIX = "n:"


class RoomCount(NamedTuple):
    total: int = 0  # memberCount: the sum over regions, never negative
    quiet: bool = False  # the room's stored mode (True: above the threshold)
    regions: tuple[tuple[str, int], ...] = ()


def _key(room: str) -> dict[str, Any]:
    return {"pk": {"S": f"ROOM#{room}"}, "sk": {"S": COUNT_SK}}


def _table() -> str:
    return runtime_settings.get_settings().connections_table


def _from_item(item: dict[str, Any] | None) -> RoomCount:
    if not item:
        return RoomCount()
    regions = []
    for name, value in item.items():
        if name.startswith(_PREFIX) and "N" in value:
            try:
                regions.append((name.removeprefix(_PREFIX), int(value["N"])))
            except ValueError:
                continue
    return RoomCount(
        total=max(0, sum(n for _, n in regions)),
        quiet=bool(item.get("quiet", {}).get("BOOL", False)),
        regions=tuple(sorted(regions)),
    )


def read(room: str) -> RoomCount:
    """The room's count and mode (one eventually consistent GetItem)."""
    response = aws_clients.dynamodb().get_item(TableName=_table(), Key=_key(room))
    return _from_item(response.get("Item"))


def is_live(room_count: RoomCount) -> bool:
    """True when the room is small enough for live ``member`` frames."""
    return room_count.total <= runtime_settings.get_settings().presence_live_max_members


def add(room: str, region: str, delta: int) -> None:
    """Add ``delta`` (+1 / -1) to ``region``'s count. Never raises (logged, counted).

    A decrement applies only while the region's count is positive. When every
    region's count is zero the item is deleted (conditional on ``v``, so a
    concurrent increment keeps it).
    """
    names = {"#n": f"{_PREFIX}{region}"}
    ttl_seconds = runtime_settings.get_settings().connection_ttl_seconds
    values: dict[str, Any] = {
        ":d": {"N": str(delta)},
        ":one": {"N": "1"},
        ":exp": {"N": str(epoch_seconds() + ttl_seconds)},
    }
    kwargs: dict[str, Any] = {}
    if delta < 0:
        kwargs["ConditionExpression"] = "#n > :zero"
        values[":zero"] = {"N": "0"}
    ddb = aws_clients.dynamodb()
    try:
        response = ddb.update_item(
            TableName=_table(),
            Key=_key(room),
            UpdateExpression="ADD #n :d, v :one SET expiresAt = :exp",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            **kwargs,
        )
        item = response.get("Attributes") or {}
        if _from_item(item).total == 0 and "v" in item:
            ddb.delete_item(
                TableName=_table(),
                Key=_key(room),
                ConditionExpression="v = :v",
                ExpressionAttributeValues={":v": item["v"]},
            )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return  # already zero (or a concurrent update keeps the item): nothing to do
        logger.exception("member count not updated", extra={"room": room, "delta": delta})
        count(FAILURE_METRIC)
    except Exception:
        logger.exception("member count not updated", extra={"room": room, "delta": delta})
        count(FAILURE_METRIC)


def set_quiet(room: str, quiet: bool) -> bool:
    """Store the room's mode; True if this call changed it (it then announces it).

    Conditional on the item existing and the mode being the other one, so of
    concurrent handlers exactly one announces a switch.
    """
    try:
        if quiet:
            aws_clients.dynamodb().update_item(
                TableName=_table(),
                Key=_key(room),
                UpdateExpression="SET quiet = :t",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(quiet) "
                "OR quiet = :f)",
                ExpressionAttributeValues={":t": {"BOOL": True}, ":f": {"BOOL": False}},
            )
        else:
            aws_clients.dynamodb().update_item(
                TableName=_table(),
                Key=_key(room),
                UpdateExpression="REMOVE quiet",
                ConditionExpression="quiet = :t",
                ExpressionAttributeValues={":t": {"BOOL": True}},
            )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def mode_frame(room: str, room_count: RoomCount, live: bool) -> dict[str, Any]:
    """The ``members`` frame pushed once when a room switches mode."""
    return frame("members", room=room, live=live, memberCount=room_count.total)
