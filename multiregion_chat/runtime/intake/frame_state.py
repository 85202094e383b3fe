"""What a client frame needs to know about its sender, read once (docs/performance.md, "Cost").

Every frame checks the user's and connection's request budget (:mod:`runtime.quota.client_budget`),
the
connection's token expiry, and its META record (registered? which rooms? allowed rooms?);
a numbered ``send`` also reads its sequence (:mod:`runtime.store.sequence_store`). All of
these are items
of the connections table, so one strongly consistent BatchGetItem reads them together: one
request where four were made before. META's ``rooms`` stands in for the membership items: it
is written before a membership and removed after it (:mod:`runtime.store.connection_store`), so a
room in it is a room the connection joined or is joining, and a room absent from it is one
the connection is not a member of.
"""

from __future__ import annotations

import random
import time
from typing import Any, NamedTuple

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.chat_model import Sender
from multiregion_chat.runtime.quota import client_budget
from multiregion_chat.runtime.store import sequence_store
from multiregion_chat.runtime.store.connection_store import Connection, connection_from_item
from multiregion_chat.runtime.store.layout import META, Item, conn_pk, connections_table

__all__ = ["FrameState", "read_frame_state"]

# BatchGetItem hands back what it could not read under throttling as UnprocessedKeys;
# those are read again, a few times, with a short jittered pause (AWS's advice).
ATTEMPTS = 4
PAUSE_S = 0.01


class FrameState(NamedTuple):
    """The sender's items as they were when the frame arrived."""

    connection_id: str
    rate_item: Item
    connection: Connection | None  # None: no META (never connected, or cleaned up)
    sequence_item: Item | None = None  # only when asked for; {} when there is none yet

    def member(self, room: str) -> Sender | None:
        """The connection as a sender in ``room``, or None when it is not a member."""
        if self.connection is None or room not in self.connection.rooms:
            return None
        return Sender(
            user_id=self.connection.user_id,
            name=self.connection.name,
            region=runtime_settings.get_settings().region,
        )


def _items(keys: list[Item]) -> list[Item]:
    table, ddb = connections_table(), aws_clients.dynamodb()
    wanted: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
    found: list[Item] = []
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, PAUSE_S * 2**attempt))
        answer = ddb.batch_get_item(RequestItems=wanted)
        found.extend(answer.get("Responses", {}).get(table, []))
        wanted = dict(answer.get("UnprocessedKeys") or {})
        if not wanted:
            return found
    raise RuntimeError("BatchGetItem left keys unread after every attempt (throttled)")


def read_frame_state(
    connection_id: str, user_id: str, sequence_pk: str | None = None
) -> FrameState:
    """One consistent read of the user's budget, the connection's META and, with
    ``sequence_pk``, that sender's sequence item."""
    rate_key = client_budget.item_key(user_id)
    meta_key: Item = {"pk": {"S": conn_pk(connection_id)}, "sk": {"S": META}}
    keys = [rate_key, meta_key]
    if sequence_pk is not None:
        keys.append(sequence_store.item_key(sequence_pk))
    by_key = {(item["pk"]["S"], item["sk"]["S"]): item for item in _items(keys)}

    def found(key: Item) -> Item | None:
        return by_key.get((key["pk"]["S"], key["sk"]["S"]))

    meta = found(meta_key)
    return FrameState(
        connection_id=connection_id,
        rate_item=found(rate_key) or {},
        connection=connection_from_item(connection_id, meta) if meta else None,
        sequence_item=(
            found(sequence_store.item_key(sequence_pk)) or {} if sequence_pk is not None else None
        ),
    )
