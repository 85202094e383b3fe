"""ClientMessageHandler: every action, every error code, ref echo."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from multiregion_chat.runtime.protocol import ids
from tests.unit.conftest import set_store_clock

MAX = 16384


@pytest.fixture
def alice(chat: Any) -> str:
    chat.connect("c-alice", "alice", "Alice")
    return "c-alice"


@pytest.fixture
def bob(chat: Any) -> str:
    chat.connect("c-bob", "bob")
    return "c-bob"


def body_of_size(size: int) -> str:
    """A string whose compact JSON encoding is exactly ``size`` bytes (incl. quotes)."""
    return "x" * (size - 2)


# --- framing and validation errors ------------------------------------------------


def test_lone_surrogate_body_is_bad_request(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    reply = chat.send(alice, '{"action": "send", "room": "lobby", "body": "\\ud800", "ref": "s"}')
    assert reply == {
        "type": "error",
        "code": "bad_request",
        "message": reply["message"],
        "ref": "s",
    }


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def test_json_depth_limit_is_32_levels_including_the_frame(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    deepest = chat.send(alice, {"action": "send", "room": "lobby", "body": nested(31), "ref": "a"})
    assert deepest["type"] == "ack"
    # Brackets inside strings are text, not nesting.
    text = chat.send(alice, {"action": "send", "room": "lobby", "body": "[" * 500, "ref": "b"})
    assert text["type"] == "ack"
    reply = chat.send(alice, {"action": "send", "room": "lobby", "body": nested(32), "ref": "c"})
    # Refused before it is decoded, so there is no ``ref`` to echo.
    assert (reply["type"], reply["code"]) == ("error", "bad_request")
    assert "deeper than 32" in reply["message"]
    assert chat.send(alice, {"action": "ping"})["type"] == "pong"  # the connection stays


def test_invalid_ref_is_bad_request_without_ref(chat: Any, alice: str) -> None:
    for ref in ("r" * 65, 5, ["x"], {"a": 1}):
        reply = chat.send(alice, {"action": "ping", "ref": ref})
        assert reply["code"] == "bad_request"
        assert "ref" not in reply
    ok = chat.send(alice, {"action": "ping", "ref": "r" * 64})
    assert ok == {"type": "pong", "ref": "r" * 64}


def test_null_optional_fields_count_as_absent(chat: Any, alice: str) -> None:
    reply = chat.send(alice, {"action": "join", "room": "lobby", "after": None, "ref": None})
    assert reply["type"] == "joined" and "ref" not in reply
    reply = chat.send(alice, {"action": "history", "room": "lobby", "limit": None})
    assert reply["type"] == "history"


def test_extra_fields_are_ignored(chat: Any, alice: str) -> None:
    assert chat.send(alice, {"action": "ping", "extra": {"x": 1}}) == {"type": "pong"}


def test_connection_stays_usable_after_errors(chat: Any, alice: str) -> None:
    assert chat.send(alice, "garbage")["code"] == "bad_request"
    assert chat.send(alice, {"action": "nope"})["code"] == "unknown_action"
    assert chat.send(alice, {"action": "send", "room": "lobby", "body": 1})["code"] == "not_member"
    assert chat.send(alice, {"action": "join", "room": "lobby", "ref": "j"})["type"] == "joined"
    ack = chat.send(alice, {"action": "send", "room": "lobby", "body": "hi", "ref": "s"})
    assert ack["type"] == "ack" and ack["ref"] == "s"


def test_route_response_shape(chat: Any, alice: str) -> None:
    response = chat.raw(alice, json.dumps({"action": "ping"}), route="ping")
    assert response == {"statusCode": 200, "body": '{"type":"pong"}'}


# --- body size --------------------------------------------------------------------


def test_body_exactly_at_the_limit_is_accepted(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    reply = chat.send(alice, {"action": "send", "room": "lobby", "body": body_of_size(MAX)})
    assert reply["type"] == "ack"


def test_body_one_byte_over_the_limit_is_too_large(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    frame = {"action": "send", "room": "lobby", "body": body_of_size(MAX + 1), "ref": "big"}
    reply = chat.send(alice, frame)
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "too_large", "big")


def test_body_size_is_compact_utf8(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    # "é" is 2 bytes in UTF-8 (not the 6 of "\\u00e9"); whitespace in the frame does not count.
    body = {"k": "é" * ((MAX - len('{"k":""}')) // 2)}
    raw = json.dumps({"action": "send", "room": "lobby", "body": body}, indent=4)
    assert chat.send(alice, raw)["type"] == "ack"
    body["k"] += "é"
    assert (
        chat.send(alice, {"action": "send", "room": "lobby", "body": body})["code"] == "too_large"
    )


def test_too_large_is_checked_for_any_json_value(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    for body in (None, 0, True, [1, 2], {"nested": {"a": [None]}}):
        assert chat.send(alice, {"action": "send", "room": "lobby", "body": body})["type"] == "ack"
    big = list(range(5000))
    assert chat.send(alice, {"action": "send", "room": "lobby", "body": big})["code"] == "too_large"


# --- join / leave ---------------------------------------------------------------


def test_join_reply_and_items(chat: Any, alice: str, tables: Any) -> None:
    reply = chat.send(alice, {"action": "join", "room": "lobby", "ref": "j1"})
    assert reply == {
        "type": "joined",
        "room": "lobby",
        "members": [{"userId": "alice", "name": "Alice", "region": "us-east-1"}],
        "missed": [],
        "more": False,
        "memberCount": 1,
        "live": True,
        "ref": "j1",
    }
    membership = tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c-alice"})["Item"]
    assert membership["connectionId"] == "c-alice"
    assert membership["userId"] == "alice"
    assert membership["name"] == "Alice"
    assert membership["joinedAt"].endswith("Z")
    assert int(membership["expiresAt"]) >= int(time.time()) + 10800 - 5
    meta = tables.connections.get_item(Key={"pk": "CONN#c-alice", "sk": "META"})["Item"]
    assert meta["rooms"] == {"lobby"}


def test_rejoin_is_idempotent(chat: Any, alice: str, tables: Any) -> None:
    first = chat.send(alice, {"action": "join", "room": "lobby"})
    second = chat.send(alice, {"action": "join", "room": "lobby"})
    assert first == second
    items = tables.connections.query(
        KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": "ROOM#lobby"}
    )["Items"]
    # one membership, the user item (runtime.store.connection_store) and the room's member count,
    # still 1
    assert sorted(i["sk"] for i in items) == ["CONN#c-alice", "COUNT", "USER#alice"]
    assert first["memberCount"] == 1


def test_join_with_after_returns_missed_oldest_first(chat: Any, alice: str, bob: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    sent = [
        chat.send(alice, {"action": "send", "room": "lobby", "body": i})["id"] for i in range(5)
    ]
    for i, message_id in enumerate(sent):
        chat.deliver(_detail_from_history(chat, alice, message_id, i))
    reply = chat.send(bob, {"action": "join", "room": "lobby", "after": sent[1]})
    assert [m["id"] for m in reply["missed"]] == sent[2:]
    assert [m["body"] for m in reply["missed"]] == [2, 3, 4]
    assert reply["more"] is False
    assert reply["missed"][0]["sender"] == {
        "userId": "alice",
        "name": "Alice",
        "region": "us-east-1",
    }
    assert set(reply["missed"][0]) == {"room", "id", "sender", "body", "sentAt"}
    assert [m["userId"] for m in reply["members"]] == ["alice", "bob"]


def test_join_missed_is_capped_at_100_with_more(chat: Any, alice: str, tables: Any) -> None:
    _seed_history(tables, "lobby", 105)
    reply = chat.send(alice, {"action": "join", "room": "lobby", "after": "0" * 26})
    assert len(reply["missed"]) == 100
    assert reply["more"] is True
    ids_ = [m["id"] for m in reply["missed"]]
    assert ids_ == sorted(ids_)


def test_leave(chat: Any, alice: str, tables: Any) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    chat.send(alice, {"action": "join", "room": "other"})
    assert chat.send(alice, {"action": "leave", "room": "lobby", "ref": "l"}) == {
        "type": "left",
        "room": "lobby",
        "ref": "l",
    }
    assert "Item" not in tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c-alice"})
    meta = tables.connections.get_item(Key={"pk": "CONN#c-alice", "sk": "META"})["Item"]
    assert meta["rooms"] == {"other"}
    chat.send(alice, {"action": "leave", "room": "other"})
    meta = tables.connections.get_item(Key={"pk": "CONN#c-alice", "sk": "META"})["Item"]
    assert "rooms" not in meta  # an empty string set is removed
    assert chat.send(alice, {"action": "send", "room": "lobby", "body": 1})["code"] == "not_member"


def test_leave_without_join_is_not_member(chat: Any, alice: str) -> None:
    reply = chat.send(alice, {"action": "leave", "room": "lobby", "ref": "x"})
    assert (reply["code"], reply["ref"]) == ("not_member", "x")


def test_join_outside_the_token_rooms_is_forbidden(
    chat: Any, tables: Any, published: list[Any], emitted_metrics: Any
) -> None:
    chat.connect("c-team", "tess", rooms=["team-*", "x.y"])
    published.clear()
    emitted_metrics()
    for room in ("lobby", "team", "xzy"):
        reply = chat.send("c-team", {"action": "join", "room": room, "ref": "r1"})
        assert reply == {
            "type": "error",
            "code": "forbidden",
            "message": f"your token does not allow room {room!r}",
            "ref": "r1",
        }
        assert "Item" not in tables.connections.get_item(
            Key={"pk": f"ROOM#{room}", "sk": "CONN#c-team"}
        )
    assert published == []  # no presence for a refused join
    assert emitted_metrics()["ForbiddenRequests"] == 3
    meta = tables.connections.get_item(Key={"pk": "CONN#c-team", "sk": "META"})["Item"]
    assert "rooms" not in meta
    # the connection stays usable: allowed rooms work, and so does ping
    assert chat.send("c-team", {"action": "join", "room": "team-a"})["type"] == "joined"
    assert chat.send("c-team", {"action": "join", "room": "x.y"})["type"] == "joined"
    assert chat.send("c-team", {"action": "send", "room": "team-a", "body": 1})["type"] == "ack"
    assert chat.send("c-team", {"action": "ping"})["type"] == "pong"
    # a room never joined stays not_member for the other actions
    reply = chat.send("c-team", {"action": "send", "room": "lobby", "body": 1})
    assert reply["code"] == "not_member"


def test_empty_rooms_claim_allows_no_room(chat: Any) -> None:
    chat.connect("c-none", "nora", rooms=[])
    assert chat.send("c-none", {"action": "join", "room": "lobby"})["code"] == "forbidden"


def test_join_and_ping_on_unregistered_connection_are_internal(chat: Any, tables: Any) -> None:
    reply = chat.send("ghost", {"action": "join", "room": "lobby", "ref": "g"})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "internal", "g")
    assert "reconnect" in reply["message"]
    assert chat.send("ghost", {"action": "ping"})["code"] == "internal"
    # nothing was created for the unknown connection (its request budget aside)
    items = tables.connections.scan()["Items"]
    assert [i for i in items if not i["pk"].startswith("RATE#")] == []


# --- send -----------------------------------------------------------------------


def test_send_acks_with_a_fresh_time_ordered_id(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    before = ids.now_ms()
    first = chat.send(
        alice, {"action": "send", "room": "lobby", "body": {"text": "hi"}, "ref": "a"}
    )
    second = chat.send(alice, {"action": "send", "room": "lobby", "body": "again"})
    assert first["type"] == "ack" and first["room"] == "lobby" and first["ref"] == "a"
    assert set(first) == {"type", "room", "id", "ref"}
    assert ids.is_valid_id(first["id"]) and first["id"] < second["id"]
    assert ids.id_timestamp_ms(first["id"]) >= before


def test_send_requires_membership(chat: Any, alice: str, bob: str) -> None:
    chat.send(bob, {"action": "join", "room": "lobby"})
    reply = chat.send(alice, {"action": "send", "room": "lobby", "body": "x", "ref": "n"})
    assert (reply["code"], reply["ref"]) == ("not_member", "n")


# --- history --------------------------------------------------------------------


def test_history_paginates_oldest_first(chat: Any, alice: str, tables: Any) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    seeded = _seed_history(tables, "lobby", 7)
    _seed_history(tables, "other", 3)
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 3, "ref": "h"})
    assert page["type"] == "history" and page["room"] == "lobby" and page["ref"] == "h"
    assert [m["id"] for m in page["messages"]] == seeded[:3] and page["more"] is True
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 3, "after": seeded[2]})
    assert [m["id"] for m in page["messages"]] == seeded[3:6] and page["more"] is True
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 3, "after": seeded[5]})
    assert [m["id"] for m in page["messages"]] == seeded[6:] and page["more"] is False
    page = chat.send(alice, {"action": "history", "room": "lobby", "after": seeded[6]})
    assert page["messages"] == [] and page["more"] is False


def test_history_limit_bounds_and_default(chat: Any, alice: str, tables: Any) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    _seed_history(tables, "lobby", 120)
    page = chat.send(alice, {"action": "history", "room": "lobby"})
    assert len(page["messages"]) == 50 and page["more"] is True
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 100})
    assert len(page["messages"]) == 100 and page["more"] is True
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 1})
    assert len(page["messages"]) == 1


def test_history_message_shape(chat: Any, alice: str) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    ack = chat.send(
        alice, {"action": "send", "room": "lobby", "body": {"text": "hé", "n": [1.5, None]}}
    )
    chat.deliver(_detail_from_history(chat, alice, ack["id"], {"text": "hé", "n": [1.5, None]}))
    page = chat.send(alice, {"action": "history", "room": "lobby"})
    (message,) = page["messages"]
    assert message["id"] == ack["id"]
    assert message["body"] == {"text": "hé", "n": [1.5, None]}
    assert message["sender"] == {"userId": "alice", "name": "Alice", "region": "us-east-1"}
    assert message["sentAt"] == ids.iso_from_ms(ids.id_timestamp_ms(ack["id"]))


def test_history_keeps_paging_past_short_dynamodb_pages(
    chat: Any, alice: str, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.platform import aws_clients

    chat.send(alice, {"action": "join", "room": "lobby"})
    seeded = _seed_history(tables, "lobby", 6)
    ddb = aws_clients.dynamodb()
    real = ddb.query
    calls: list[dict[str, Any]] = []

    def two_items_per_page(**kwargs: Any) -> Any:
        # What DynamoDB does when 1 MB is reached before Limit.
        calls.append(kwargs)
        if kwargs["TableName"] != "chat-test-messages":
            return real(**kwargs)
        return real(**{**kwargs, "Limit": 2})

    monkeypatch.setattr(ddb, "query", two_items_per_page)
    page = chat.send(alice, {"action": "history", "room": "lobby", "limit": 4})
    assert [m["id"] for m in page["messages"]] == seeded[:4] and page["more"] is True
    assert len([c for c in calls if c["TableName"] == "chat-test-messages"]) == 3


def test_history_requires_membership(chat: Any, alice: str) -> None:
    assert chat.send(alice, {"action": "history", "room": "lobby"})["code"] == "not_member"


# --- presence -------------------------------------------------------------------


def test_presence_lists_each_user_once_sorted(chat: Any, alice: str, bob: str, tables: Any) -> None:
    chat.connect("c-alice-2", "alice", "Alice")
    chat.connect("c-carol", "carol", "Carol")
    for cid in (alice, "c-alice-2", bob, "c-carol"):
        chat.send(cid, {"action": "join", "room": "lobby"})
    chat.send("c-carol", {"action": "leave", "room": "lobby"})
    # remote presence items (as the event bus handler writes them for other regions)
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "REMOTE#eu-west-1#dave",
            "userId": "dave",
            "name": "Dave",
            "region": "eu-west-1",
            "expiresAt": int(time.time()) + 3600,
        }
    )
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "REMOTE#ap-south-1#alice",
            "userId": "alice",
            "region": "ap-south-1",
            "expiresAt": int(time.time()) + 3600,
        }
    )
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "REMOTE#us-west-2#erin",
            "userId": "erin",
            "region": "us-west-2",
            "expiresAt": int(time.time()) + 3600,
        }
    )
    tables.connections.put_item(
        Item={
            "pk": "ROOM#lobby",
            "sk": "REMOTE#eu-west-1#erin",
            "userId": "erin",
            "name": "Erin",
            "region": "eu-west-1",
            "expiresAt": int(time.time()) + 3600,
        }
    )
    reply = chat.send(bob, {"action": "presence", "room": "lobby", "ref": "p"})
    assert reply == {
        "type": "presence",
        "room": "lobby",
        "members": [
            {"userId": "alice", "name": "Alice", "region": "us-east-1"},
            {"userId": "bob", "region": "us-east-1"},
            {"userId": "dave", "name": "Dave", "region": "eu-west-1"},
            {"userId": "erin", "name": "Erin", "region": "eu-west-1"},
        ],
        # the REMOTE items above were written directly, not by presence events,
        # so only the local users are counted
        "memberCount": 2,
        "live": True,
        "ref": "p",
    }


def test_presence_requires_membership(chat: Any, alice: str) -> None:
    reply = chat.send(alice, {"action": "presence", "room": "lobby", "ref": "q"})
    assert (reply["code"], reply["ref"]) == ("not_member", "q")


# --- ping -----------------------------------------------------------------------


def test_ping_refreshes_expiry_of_meta_and_memberships(
    chat: Any, alice: str, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    chat.send(alice, {"action": "join", "room": "other"})
    later = int(time.time()) + 5000
    set_store_clock(monkeypatch, lambda: later)
    assert chat.send(alice, {"action": "ping", "ref": "p"}) == {"type": "pong", "ref": "p"}
    keys = [
        {"pk": "CONN#c-alice", "sk": "META"},
        {"pk": "ROOM#lobby", "sk": "CONN#c-alice"},
        {"pk": "ROOM#other", "sk": "CONN#c-alice"},
    ]
    for key in keys:
        assert int(tables.connections.get_item(Key=key)["Item"]["expiresAt"]) == later + 10800


def test_ping_does_not_resurrect_a_left_membership(chat: Any, alice: str, tables: Any) -> None:
    chat.send(alice, {"action": "join", "room": "lobby"})
    # membership gone but META still lists it (e.g. a crash between the two writes)
    tables.connections.delete_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c-alice"})
    assert chat.send(alice, {"action": "ping"}) == {"type": "pong"}
    assert "Item" not in tables.connections.get_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c-alice"})


# --- internal errors --------------------------------------------------------------


def test_unexpected_exception_is_an_internal_error_frame(
    chat: Any,
    alice: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from multiregion_chat.runtime.platform import bus

    chat.send(alice, {"action": "join", "room": "lobby"})

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("dynamodb exploded")

    monkeypatch.setattr(bus, "publish_message", boom)
    secret = "do-not-log-this-body"
    reply = chat.send(alice, {"action": "send", "room": "lobby", "body": secret, "ref": "i"})
    assert reply == {"type": "error", "code": "internal", "message": "internal error", "ref": "i"}
    assert "dynamodb exploded" in caplog.text  # logged with the exception...
    assert secret not in caplog.text + capsys.readouterr().out  # ...but never with the body


def test_missing_connection_id_is_internal(context: Any, aws: None) -> None:
    from multiregion_chat.runtime.handlers import client_message_handler

    response = client_message_handler.handler({"body": '{"action":"ping"}'}, context)
    assert json.loads(response["body"])["code"] == "internal"


def test_metrics_count_errors(chat: Any, alice: str, emitted_metrics: Any) -> None:
    emitted_metrics()
    chat.send(alice, "nope")
    chat.send(alice, {"action": "ping"})
    totals = emitted_metrics()
    assert totals["Requests"] == 2
    assert totals["ClientErrors"] == 1


# --- helpers ----------------------------------------------------------------------


def _seed_history(tables: Any, room: str, count: int) -> list[str]:
    """Write ``count`` messages straight into history; returns their ids, oldest first."""
    base = ids.now_ms() - 60_000
    seeded = []
    for i in range(count):
        message_id = ids.new_id(base + i)
        seeded.append(message_id)
        tables.messages.put_item(
            Item={
                "room": room,
                "id": message_id,
                "sender": {"userId": "seed", "region": "eu-west-1"},
                "body": json.dumps({"n": i}),
                "sentAt": ids.iso_from_ms(base + i),
                "originRegion": "eu-west-1",
                "expiresAt": int(time.time()) + 86400,
            }
        )
    return sorted(seeded)


def _detail_from_history(chat: Any, cid: str, message_id: str, body: Any) -> dict[str, Any]:
    """The bus event detail ``send`` published (rebuilt; the bus is tested elsewhere)."""
    return {
        "originRegion": "us-east-1",
        "room": "lobby",
        "id": message_id,
        "sender": {"userId": "alice", "name": "Alice", "region": "us-east-1"},
        "body": body,
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }
