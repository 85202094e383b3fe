"""Bus events that could wedge history or pose as the server (issue 18, item 6).

* a ``chat.message`` body over ``MAX_BODY_BYTES`` is dropped like any
  malformed event (it was stored, and one 200,000-character body made every
  ``history``/``joined.missed`` page ``[]`` with ``more: true``);
* a message already stored that does not fit a reply alone comes back without
  its body (``bodyOmitted``), so pages always move on;
* a ``system:`` sender (or a look-alike) only in the server API's events
  (source ``EVENT_SOURCE`` + ``.server``), and never as a presence member.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from multiregion_chat.runtime.handlers import server_api_handler
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.protocol import ids, reply_limits
from tests.unit.conftest import FakeLambdaContext
from tests.unit.test_event_bus_message_handler import detail
from tests.unit.test_reply_size import reply_bytes, seed_big

SERVER_SOURCE = "chat.chat.server"


def body_of_size(size: int) -> str:
    """A string body whose compact JSON is ``size`` bytes (two are the quotes)."""
    return "x" * (size - 2)


def test_a_body_over_max_body_bytes_is_dropped_and_one_at_the_limit_is_kept(
    chat: Any, tables: Any, emitted_metrics: Any
) -> None:
    limit = runtime_settings.get_settings().max_body_bytes
    emitted_metrics()
    assert chat.deliver(detail(body=body_of_size(limit + 1))) == {"status": "malformed"}
    assert chat.deliver(detail(body="x" * 200_000)) == {"status": "malformed"}
    assert emitted_metrics()["MalformedEvents"] == 2
    assert tables.messages.scan()["Items"] == []
    assert chat.deliver(detail(body=body_of_size(limit)))["status"] == "delivered"
    assert len(tables.messages.scan()["Items"]) == 1


def system_detail(user_id: str) -> dict[str, Any]:
    out = detail()
    out["sender"] = {"userId": user_id, "name": "Ops", "region": "us-east-1"}
    return out


@pytest.mark.parametrize("user_id", ["system:ops", "System:ops", "\u0455ystem:ops"])
def test_a_system_sender_outside_the_server_api_s_events_is_dropped(
    chat: Any, tables: Any, user_id: str, emitted_metrics: Any
) -> None:
    emitted_metrics()
    assert chat.deliver(system_detail(user_id)) == {"status": "malformed"}
    assert chat.deliver(system_detail(user_id), source="chat.chat.other") == {"status": "malformed"}
    assert emitted_metrics()["MalformedEvents"] == 2
    assert tables.messages.scan()["Items"] == []


def test_the_server_api_s_own_message_is_delivered(
    chat: Any, tables: Any, published: list[Any]
) -> None:
    """What ServerApi publishes, as the bus hands it on, passes the check."""
    response = server_api_handler.handler(
        {
            "version": "2.0",
            "routeKey": "POST /server/rooms/{room}/messages",
            "rawPath": "/server/rooms/lobby/messages",
            "rawQueryString": "",
            "headers": {"content-type": "application/json"},
            "requestContext": {
                "http": {"method": "POST", "path": "/server/rooms/lobby/messages"},
                "routeKey": "POST /server/rooms/{room}/messages",
                "stage": "$default",
                "requestId": "r1",
            },
            "body": json.dumps({"body": "maintenance at 10", "sender": "ops"}),
            "isBase64Encoded": False,
        },
        FakeLambdaContext(),
    )
    assert response["statusCode"] == 202
    (event,) = published
    assert event.source == SERVER_SOURCE
    assert chat.deliver(event.detail, source=event.source)["status"] == "delivered"
    (stored,) = tables.messages.scan()["Items"]
    assert stored["sender"]["userId"] == "system:ops"


def test_a_system_presence_member_is_dropped(chat: Any, emitted_metrics: Any) -> None:
    presence = {
        "originRegion": "eu-west-1",
        "room": "lobby",
        "event": "joined",
        "member": {"userId": "system:ops", "region": "eu-west-1"},
        "at": ids.now_ms(),
    }
    emitted_metrics()
    for source in (None, SERVER_SOURCE):
        assert chat.deliver(presence, "chat.presence", source) == {"status": "malformed"}
    assert emitted_metrics()["MalformedEvents"] == 2


# --- a stored message too big for any reply -----------------------------------------------


def test_fit_messages_never_returns_an_empty_page_while_messages_remain() -> None:
    big = {"room": "lobby", "id": "1", "sender": {"userId": "u"}, "body": "x" * 200_000}
    small = {"room": "lobby", "id": "2", "sender": {"userId": "u"}, "body": "hi"}
    frame = {"type": "history", "room": "lobby"}
    assert reply_limits.fit_messages(frame, "messages", [big]) == (
        [reply_limits.omitted_body(big)],
        False,
    )
    assert reply_limits.fit_messages(frame, "messages", [big, small]) == (
        [reply_limits.omitted_body(big)],
        True,
    )
    assert reply_limits.omitted_body(big) == {
        "room": "lobby",
        "id": "1",
        "sender": {"userId": "u"},
        "body": None,
        "bodyOmitted": "too_large",
    }
    assert reply_limits.fit_messages(frame, "messages", []) == ([], False)


def test_history_and_missed_page_past_a_message_too_big_for_any_reply(
    chat: Any, tables: Any
) -> None:
    """The issue's case: a 200,000-character body already in history."""
    before = seed_big(tables, "lobby", 1, "first")[0]
    (big,) = seed_big(tables, "lobby", 1, "x" * 200_000)
    after = seed_big(tables, "lobby", 2, "later")
    chat.connect("c1")
    joined = chat.raw(
        "c1", json.dumps({"action": "join", "room": "lobby", "after": before}), "join"
    )
    assert reply_bytes(joined) <= reply_limits.MAX_REPLY_BYTES
    missed = json.loads(joined["body"])["missed"]
    assert [m["id"] for m in missed] == [big]  # the big one alone, then more
    assert missed[0]["bodyOmitted"] == "too_large" and missed[0]["body"] is None
    assert json.loads(joined["body"])["more"] is True

    got: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # bounded: four messages take three pages
        frame: dict[str, Any] = {"action": "history", "room": "lobby"}
        if cursor:
            frame["after"] = cursor
        raw = chat.raw("c1", json.dumps(frame), "history")
        assert reply_bytes(raw) <= reply_limits.MAX_REPLY_BYTES
        reply = json.loads(raw["body"])
        assert reply["messages"], "a page came back empty"
        got += [m["id"] for m in reply["messages"]]
        if not reply["more"]:
            break
        cursor = reply["messages"][-1]["id"]
    assert got == [before, big, *after]
