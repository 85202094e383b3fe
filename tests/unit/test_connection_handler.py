"""$connect / $disconnect."""

from __future__ import annotations

import time
from typing import Any

import pytest


def test_connect_stores_meta_with_expiry(chat: Any, tables: Any) -> None:
    before = int(time.time())
    assert chat.connect("c1", "alice", "Alice") == {"statusCode": 200}
    item = tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})["Item"]
    assert item["userId"] == "alice"
    assert item["name"] == "Alice"
    assert "rooms" not in item
    assert item["connectedAt"].endswith("Z")
    assert before + 10800 <= int(item["expiresAt"]) <= int(time.time()) + 10800


def test_connect_without_name(chat: Any, tables: Any) -> None:
    assert chat.connect("c1", "bob", name="")["statusCode"] == 200
    item = tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})["Item"]
    assert "name" not in item


@pytest.mark.parametrize(
    "authorizer",
    [
        None,  # no authorizer ran: no identity
        {},
        {"principalId": "x", "rooms": "null"},
        {"userId": "", "rooms": "null"},
        {"userId": "u" * 129, "rooms": "null"},
        {"userId": "alice", "name": "n" * 65, "rooms": "null"},
        {"userId": "alice"},  # rooms missing: not our authorizer's context
        {"userId": "alice", "rooms": "not json"},
        {"userId": "alice", "rooms": '"lobby"'},
        {"userId": "alice", "rooms": '["bad/room"]'},
    ],
)
def test_connect_refuses_invalid_identity(chat: Any, tables: Any, authorizer: Any) -> None:
    if authorizer is None:
        response = chat.connect("c1", None)
    else:
        response = chat.connect("c1", authorizer=authorizer)
    assert response == {"statusCode": 400}
    assert "Item" not in tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})


def test_connect_limits_are_inclusive(chat: Any) -> None:
    assert chat.connect("c1", "u" * 128, "n" * 64)["statusCode"] == 200


def test_query_string_identity_is_ignored(chat: Any, tables: Any) -> None:
    """Identity comes only from the authorizer: ?userId= neither names nor overrides."""
    assert chat.connect("c1", None, query={"userId": "mallory"}) == {"statusCode": 400}
    response = chat.connect("c2", "alice", "Alice", query={"userId": "mallory", "name": "M"})
    assert response["statusCode"] == 200
    item = tables.connections.get_item(Key={"pk": "CONN#c2", "sk": "META"})["Item"]
    assert (item["userId"], item["name"]) == ("alice", "Alice")


def test_connect_stores_the_token_rooms(chat: Any, tables: Any) -> None:
    assert chat.connect("c1", "alice", rooms=["team-*", "lobby"])["statusCode"] == 200
    item = tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})["Item"]
    assert item["allowedRooms"] == ["team-*", "lobby"]
    assert chat.connect("c2", "bob", rooms=[])["statusCode"] == 200
    item = tables.connections.get_item(Key={"pk": "CONN#c2", "sk": "META"})["Item"]
    assert item["allowedRooms"] == []
    chat.connect("c3", "carol")  # no rooms claim: every room, nothing stored
    item = tables.connections.get_item(Key={"pk": "CONN#c3", "sk": "META"})["Item"]
    assert "allowedRooms" not in item


def test_disconnect_removes_meta_and_memberships(chat: Any, items_of: Any) -> None:
    chat.connect("c1", "alice")
    chat.connect("c2", "bob")
    for room in ("lobby", "team-a", "x.y:z"):
        assert chat.send("c1", {"action": "join", "room": room})["type"] == "joined"
    chat.send("c2", {"action": "join", "room": "lobby"})
    assert len(items_of("c1")) == 4
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert items_of("c1") == []
    assert len(items_of("c2")) == 2  # others untouched


def test_disconnect_is_idempotent(chat: Any) -> None:
    chat.connect("c1", "alice")
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert chat.disconnect("never-connected") == {"statusCode": 200}


def test_disconnect_with_many_rooms_batches_and_retries_unprocessed(
    chat: Any, items_of: Any, monkeypatch: pytest.MonkeyPatch, sleeps: list[float]
) -> None:
    from multiregion_chat.runtime.platform import aws_clients

    chat.connect("c1", "alice")
    for i in range(30):  # more than one BatchWriteItem (25 items)
        chat.send("c1", {"action": "join", "room": f"room-{i}"})
    ddb = aws_clients.dynamodb()
    real = ddb.batch_write_item
    calls: list[int] = []

    def flaky(**kwargs: Any) -> Any:
        # The first call processes nothing and hands every item back.
        requests = next(iter(kwargs["RequestItems"].values()))
        calls.append(len(requests))
        if len(calls) == 1:
            return {"UnprocessedItems": kwargs["RequestItems"]}
        return real(**kwargs)

    monkeypatch.setattr(ddb, "batch_write_item", flaky)
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert items_of("c1") == []
    assert calls == [25, 25, 5]
    assert len(sleeps) == 1


def test_disconnect_keeps_meta_when_memberships_cannot_be_deleted(
    chat: Any, items_of: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.platform import aws_clients

    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    ddb = aws_clients.dynamodb()
    monkeypatch.setattr(
        ddb, "batch_write_item", lambda **kw: {"UnprocessedItems": kw["RequestItems"]}
    )
    assert chat.disconnect("c1") == {"statusCode": 200}
    assert {i["sk"] for i in items_of("c1")} == {"META", "CONN#c1"}


def test_connect_storage_failure_returns_500(chat: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from multiregion_chat.runtime.store import connection_store

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dynamodb down")

    monkeypatch.setattr(connection_store, "put_connection", boom)
    assert chat.connect("c1", "alice") == {"statusCode": 500}


def test_unexpected_event_type(chat: Any, context: Any) -> None:
    from multiregion_chat.runtime.handlers import connection_handler

    event = {"requestContext": {"eventType": "MESSAGE", "connectionId": "c1"}}
    assert connection_handler.handler(event, context) == {"statusCode": 400}
    assert connection_handler.handler({}, context) == {"statusCode": 400}
