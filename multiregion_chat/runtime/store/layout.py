"""What the storage modules share: the item layout of the two tables, keys,
attribute readers and the connections table's lease.

Item layout (docs/contracts.md)::

    connections  CONN#<id>   / META                userId, connectedUserId, name?, rooms (SS),
                                                   allowedRooms (L)?, connectedAt, expiresAt
                 ROOM#<room> / CONN#<id>           connectionId, userId, name?, joinedAt,
                                                   presenceAt?, expiresAt
                 ROOM#<room> / USER#<userId>       userId, name?, c:<id> (N, one per local
                                                   connection: its expiry), v, expiresAt
                 ROOM#<room> / REMOTE#<region>#<u> userId, name?, region, state, updatedAt,
                                                   expiresAt
    messages     <room>      / <id>                sender (M), body (JSON string), sentAt,
                                                   originRegion, expiresAt

The modules: :mod:`runtime.store.connection_store` (connections, memberships and the
user presence items they drive), :mod:`runtime.store.room_store` (reads of a room's
partition: members, presence, fan-out targets; other regions' presence) and
:mod:`runtime.store.history_store` (the messages table).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.ids import epoch_seconds

__all__ = [
    "CONNECTED_USER_ATTRIBUTE",
    "CONNECTIONS_BY_USER_INDEX",
    "ENTRY_PREFIX",
    "META",
    "USER_PREFIX",
    "Item",
    "conn_pk",
    "connection_expires_at",
    "connections_table",
    "int_attr",
    "is_conditional_failure",
    "lease_expired",
    "live_connection_ids",
    "query_pages",
    "room_pk",
    "str_attr",
    "user_entries",
    "user_key",
    "user_sk",
]

META = "META"
# On META items only: the key of the sparse index CONNECTIONS_BY_USER_INDEX (a
# user's connections in this region; infra/table_schema.py, a test ties them).
CONNECTED_USER_ATTRIBUTE = "connectedUserId"
CONNECTIONS_BY_USER_INDEX = "ConnectionsByUser"

Item = dict[str, Any]  # a DynamoDB item in low-level (typed attribute value) form


def conn_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def room_pk(room: str) -> str:
    return f"ROOM#{room}"


USER_PREFIX = "USER#"
ENTRY_PREFIX = "c:"  # a user item's attribute per local connection: c:<connectionId>


def user_sk(user_id: str) -> str:
    return f"{USER_PREFIX}{user_id}"


def user_key(room: str, user_id: str) -> Item:
    return {"pk": {"S": room_pk(room)}, "sk": {"S": user_sk(user_id)}}


def user_entries(item: Mapping[str, Any]) -> dict[str, int]:
    """The connection entries of a user item: ``{connectionId: expiry}``."""
    found: dict[str, int] = {}
    for name, value in item.items():
        if name.startswith(ENTRY_PREFIX) and "N" in value:
            try:
                found[name.removeprefix(ENTRY_PREFIX)] = int(value["N"])
            except ValueError:
                continue
    return found


def live_connection_ids(item: Mapping[str, Any], now: int) -> list[str]:
    """The connection ids of a user item whose expiry has not passed."""
    return sorted(cid for cid, expires in user_entries(item).items() if expires >= now)


def str_attr(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.get("S") if value else None


def int_attr(item: Mapping[str, Any], key: str) -> int | None:
    value = item.get(key)
    raw = value.get("N") if value else None
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def lease_expired(item: Mapping[str, Any], now: int) -> bool:
    """True when the item's lease (``expiresAt``) has passed (TTL deletion lags)."""
    expires = int_attr(item, "expiresAt")
    return expires is not None and expires < now


def is_conditional_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def connections_table() -> str:
    return runtime_settings.get_settings().connections_table


def connection_expires_at() -> int:
    return epoch_seconds() + runtime_settings.get_settings().connection_ttl_seconds


def query_pages(**kwargs: Any) -> Iterator[list[Item]]:
    ddb = aws_clients.dynamodb()
    while True:
        response = ddb.query(**kwargs)
        yield list(response.get("Items", []))
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last
