"""Names the stacks and the runtime share, each kept once (or tied here)."""

from __future__ import annotations

from multiregion_chat.infra.table_schema import CONNECTIONS_BY_USER_INDEX, CONNECTIONS_TABLE
from multiregion_chat.runtime.protocol import frames
from multiregion_chat.runtime.protocol.actions import BUILTIN_ACTIONS
from multiregion_chat.runtime.store import layout


def test_the_runtime_validates_exactly_the_builtin_actions() -> None:
    assert frozenset(BUILTIN_ACTIONS) == frames.ACTIONS
    assert len(set(BUILTIN_ACTIONS)) == len(BUILTIN_ACTIONS)


def test_the_connections_by_user_index_is_the_one_the_stacks_build() -> None:
    assert layout.CONNECTIONS_BY_USER_INDEX == CONNECTIONS_BY_USER_INDEX
    assert dict(CONNECTIONS_TABLE.indexes) == {
        layout.CONNECTIONS_BY_USER_INDEX: layout.CONNECTED_USER_ATTRIBUTE
    }


def test_connect_writes_the_index_key_on_meta_only(chat: object, tables: object) -> None:
    chat.connect("c1", "alice")  # type: ignore[attr-defined]
    chat.send("c1", {"action": "join", "room": "lobby"})  # type: ignore[attr-defined]
    items = tables.connections.scan()["Items"]  # type: ignore[attr-defined]
    keyed = [item for item in items if layout.CONNECTED_USER_ATTRIBUTE in item]
    assert [(item["pk"], item["sk"]) for item in keyed] == [("CONN#c1", "META")]
