"""HttpHandler: POST /rooms/{room}/messages, GET with pagination and long polling."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.store import history_store
from tests.unit.conftest import TEST_ENV

MAX = 16384


def seed(tables: Any, room: str, count: int, start_ms: int | None = None) -> list[str]:
    base = (ids.now_ms() - 60_000) if start_ms is None else start_ms
    seeded = []
    for i in range(count):
        message_id = ids.new_id(base + i)
        seeded.append(message_id)
        tables.messages.put_item(Item=history_item(room, message_id, {"n": i}))
    return sorted(seeded)


def history_item(room: str, message_id: str, body: Any, region: str = "eu-west-1") -> Any:
    return {
        "room": room,
        "id": message_id,
        "sender": {"userId": "seed", "name": "Seed", "region": region},
        "body": json.dumps(body),
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
        "originRegion": region,
        "expiresAt": int(time.time()) + 86400,
    }


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_POLL_INTERVAL_MS", "20")
    monkeypatch.setenv("HTTP_POLL_MAX_INTERVAL_MS", "20")


@dataclass
class ContextWithDeadline:
    remaining_ms: int
    function_name: str = "chat-http"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:chat-http"
    aws_request_id: str = "11111111-1111-1111-1111-111111111111"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# --- POST ----------------------------------------------------------------------------


def test_post_publishes_like_send(chat: Any, published: list[Any], emitted_metrics: Any) -> None:
    emitted_metrics()
    before = ids.now_ms()
    response = chat.http("POST", user="alice", name="Alice", body='{"body": {"text": "hé"}}')
    assert response["statusCode"] == 202
    assert set(response["json"]) == {"id"}
    message_id = response["json"]["id"]
    assert ids.is_valid_id(message_id) and ids.id_timestamp_ms(message_id) >= before
    (event,) = published
    assert (event.detail_type, event.source, event.bus) == (
        "chat.message",
        "chat.chat",
        "chat-test-chat-bus",
    )
    assert event.detail == {
        "originRegion": "us-east-1",
        "room": "lobby",
        "id": message_id,
        "sender": {"userId": "alice", "name": "Alice", "region": "us-east-1"},
        "body": {"text": "hé"},
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }
    totals = emitted_metrics()
    assert totals["MessagesAccepted"] == 1 and totals["HttpRequests"] == 1


def test_posted_message_reaches_websocket_members(
    chat: Any, published: list[Any], posted: Any
) -> None:
    chat.connect("c1", "bob")
    chat.send("c1", {"action": "join", "room": "lobby"})
    published.clear()
    message_id = chat.http("POST", user="alice", body='{"body": 1}')["json"]["id"]
    (event,) = published
    assert chat.deliver(event.detail)["delivered"] == 1
    frame = posted("c1")[-1]
    assert (frame["type"], frame["id"], frame["body"]) == ("message", message_id, 1)
    assert frame["sender"] == {"userId": "alice", "region": "us-east-1"}


def test_identity_comes_from_the_authorizer_only(chat: Any, published: list[Any]) -> None:
    response = chat.http(
        "POST",
        query={"userId": "mallory"},
        authorizer={"userId": "alice", "name": "Alice", "rooms": "null"},
        body='{"body": null}',
    )
    assert response["statusCode"] == 202
    assert published[0].detail["sender"] == {
        "userId": "alice",
        "name": "Alice",
        "region": "us-east-1",
    }
    assert published[0].detail["body"] is None
    refused = chat.http("POST", query={"userId": "mallory"}, user=None, body='{"body": 1}')
    assert (refused["statusCode"], refused["json"]["code"]) == (400, "bad_request")
    assert len(published) == 1


def test_rooms_of_the_token_limit_post_and_get(chat: Any, published: list[Any]) -> None:
    allowed = chat.http("POST", "team-a", rooms=["team-*"], body='{"body": 1}')
    assert allowed["statusCode"] == 202
    refused = chat.http("POST", "lobby", rooms=["team-*"], body='{"body": 1}')
    assert refused["statusCode"] == 403
    assert refused["json"]["code"] == "forbidden" and set(refused["json"]) == {"code", "message"}
    assert len(published) == 1
    assert chat.http("GET", "lobby", rooms=["team-*"])["statusCode"] == 403
    assert chat.http("GET", "team-a", rooms=["team-*"])["statusCode"] == 200
    assert chat.http("GET", "lobby", rooms=[])["statusCode"] == 403


def test_post_body_limits_and_encodings(chat: Any, published: list[Any]) -> None:
    at_limit = json.dumps({"body": "x" * (MAX - 2)})
    assert chat.http("POST", body=at_limit)["statusCode"] == 202
    over = chat.http("POST", body=json.dumps({"body": "x" * (MAX - 1)}))
    assert over["statusCode"] == 413 and over["json"]["code"] == "too_large"
    assert set(over["json"]) == {"code", "message"}
    encoded = base64.b64encode(b'{"body": "b64", "extra": 1}').decode()
    assert chat.http("POST", body=encoded, is_base64=True)["statusCode"] == 202
    assert [e.detail["body"] for e in published] == ["x" * (MAX - 2), "b64"]


def test_post_refuses_a_body_referencing_an_attachment(chat: Any, published: list[Any]) -> None:
    """Only the WebSocket checks a reference (whose object, which room): HTTP refuses one."""
    for attachment in ({"key": "rooms/lobby/us-east-1/abc/01JDZ8Y3W6N6B9T3X0M0Q4R2ZA"}, "x"):
        body = json.dumps({"body": {"text": "see", "attachment": attachment}})
        refused = chat.http("POST", body=body)
        assert (refused["statusCode"], refused["json"]["code"]) == (400, "bad_request")
    assert chat.http("POST", body=json.dumps({"body": {"text": "no file"}}))["statusCode"] == 202
    assert len(published) == 1


def test_post_refuses_infinity_and_deep_nesting(chat: Any, published: list[Any]) -> None:
    for body in ('{"body": 1e400}', '{"body": ' + "[" * 40 + "]" * 40 + "}", "[" * 50_000):
        refused = chat.http("POST", body=body)
        assert (refused["statusCode"], refused["json"]["code"]) == (400, "bad_request")
    assert published == []


def test_post_publish_failure_is_500_internal(chat: Any, emitted_metrics: Any) -> None:
    emitted_metrics()
    with Stubber(aws_clients.events()) as events:
        events.add_client_error("put_events", "AccessDeniedException", http_status_code=400)
        response = chat.http("POST", user="alice", body='{"body": 1}')
    assert response["statusCode"] == 500
    assert response["json"]["code"] == "internal"
    assert emitted_metrics()["PublishFailures"] == 1


def test_percent_encoded_room_and_catch_all_route(chat: Any, published: list[Any]) -> None:
    response = chat.http(
        "POST",
        None,
        route_key="$default",
        raw_path="/prod/rooms/team%3Aa/messages",
        body='{"body": 1}',
    )
    assert response["statusCode"] == 202
    assert published[0].detail["room"] == "team:a"


# --- GET -----------------------------------------------------------------------------


def test_get_paginates_like_history(chat: Any, tables: Any) -> None:
    seeded = seed(tables, "lobby", 7)
    seed(tables, "other", 2)
    page = chat.http("GET", query={"limit": "3"})
    assert page["statusCode"] == 200
    assert set(page["json"]) == {"messages", "more"}
    assert [m["id"] for m in page["json"]["messages"]] == seeded[:3]
    assert page["json"]["more"] is True
    page = chat.http("GET", query={"limit": "3", "after": seeded[2]})["json"]
    assert [m["id"] for m in page["messages"]] == seeded[3:6] and page["more"] is True
    page = chat.http("GET", query={"limit": "3", "after": seeded[5]})["json"]
    assert [m["id"] for m in page["messages"]] == seeded[6:] and page["more"] is False
    page = chat.http("GET", query={"after": seeded[6]})["json"]
    assert page == {"messages": [], "more": False}
    # the same entries as the WebSocket history frame
    chat.connect("c1", "alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    history = chat.send("c1", {"action": "history", "room": "lobby", "limit": 7})
    assert chat.http("GET", query={"limit": "7"})["json"]["messages"] == history["messages"]
    message = history["messages"][0]
    assert message == {
        "room": "lobby",
        "id": seeded[0],
        "sender": {"userId": "seed", "name": "Seed", "region": "eu-west-1"},
        "body": {"n": 0},
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(seeded[0])),
    }


def test_get_default_and_maximum_limit(chat: Any, tables: Any) -> None:
    seed(tables, "lobby", 120)
    page = chat.http("GET")["json"]
    assert len(page["messages"]) == 50 and page["more"] is True
    page = chat.http("GET", query={"limit": "100"})["json"]
    assert len(page["messages"]) == 100 and page["more"] is True
    # empty parameters count as absent
    page = chat.http("GET", query={"limit": "", "after": "", "wait": ""})["json"]
    assert len(page["messages"]) == 50


def test_get_needs_no_identity_and_reads_consistently(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(tables, "lobby", 1)
    ddb = aws_clients.dynamodb()
    real = ddb.query
    calls: list[dict[str, Any]] = []

    def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(ddb, "query", recording)
    assert len(chat.http("GET")["json"]["messages"]) == 1
    assert calls and all(c["ConsistentRead"] is True for c in calls)


def test_long_poll_returns_when_a_message_arrives(
    chat: Any, tables: Any, fast_poll: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.handlers import http_handler

    last = seed(tables, "lobby", 1)[0]
    arrived = ids.new_id()
    polls: list[float] = []
    real_sleep = http_handler.sleep

    def counting_sleep(seconds: float) -> None:
        polls.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(http_handler, "sleep", counting_sleep)

    def write_later() -> None:
        time.sleep(0.3)
        resource = boto3.resource("dynamodb", region_name="us-east-1")
        table = resource.Table(TEST_ENV["MESSAGES_TABLE"])
        table.put_item(Item=history_item("lobby", arrived, "late", region="us-east-1"))

    writer = threading.Thread(target=write_later)
    wait = 10
    started = time.monotonic()
    writer.start()
    response = chat.http("GET", query={"after": last, "wait": str(wait)})
    elapsed = time.monotonic() - started
    writer.join()
    assert response["statusCode"] == 200
    assert [m["id"] for m in response["json"]["messages"]] == [arrived]
    assert response["json"]["more"] is False
    assert elapsed < wait  # returned early (typically ~0.3 s; not asserted tighter)
    assert len(polls) >= 2 and all(p <= 0.02 for p in polls)


def test_long_poll_times_out_with_an_empty_list(chat: Any, tables: Any, fast_poll: None) -> None:
    last = seed(tables, "lobby", 3)[-1]
    started = time.monotonic()
    response = chat.http("GET", query={"after": last, "wait": "0.3"})
    elapsed = time.monotonic() - started
    assert response["statusCode"] == 200
    assert response["json"] == {"messages": [], "more": False}
    assert elapsed >= 0.25


def test_no_wait_answers_at_once_and_existing_messages_skip_the_wait(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.handlers import http_handler

    sleeps: list[float] = []
    monkeypatch.setattr(http_handler, "sleep", sleeps.append)
    seeded = seed(tables, "lobby", 2)
    assert chat.http("GET", query={"after": seeded[-1]})["json"]["messages"] == []
    page = chat.http("GET", query={"after": seeded[0], "wait": "20"})["json"]
    assert [m["id"] for m in page["messages"]] == seeded[1:]
    assert sleeps == []


def test_long_poll_is_bounded_by_the_remaining_invocation_time(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.handlers import http_handler

    clock = [1000.0]
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(http_handler, "sleep", fake_sleep)
    monkeypatch.setattr(http_handler, "monotonic", lambda: clock[0])
    context = ContextWithDeadline(remaining_ms=http_handler.LONG_POLL_MARGIN_MS + 2000)
    response = chat.http("GET", query={"wait": "20"}, context=context)
    assert response["json"] == {"messages": [], "more": False}
    assert sum(slept) == pytest.approx(2.0)  # not 20 s: the invocation would time out
    # backing off from the default HTTP_POLL_INTERVAL_MS (250 ms), cut at the deadline
    assert slept[:3] == [0.25, 0.5, 1.0]
    slept.clear()
    context = ContextWithDeadline(remaining_ms=500)  # less than the margin: no waiting
    chat.http("GET", query={"wait": "20"}, context=context)
    assert slept == []


# --- routing and failures ------------------------------------------------------------------


def test_unknown_path_and_method(chat: Any) -> None:
    response = chat.http("GET", None, route_key="$default", raw_path="/rooms/lobby")
    assert (response["statusCode"], response["json"]["code"]) == (404, "bad_request")
    response = chat.http("DELETE", "lobby", route_key="$default")
    assert (response["statusCode"], response["json"]["code"]) == (405, "bad_request")
    assert response["headers"]["allow"] == "GET, POST"


def test_unexpected_error_is_500_internal(
    chat: Any, monkeypatch: pytest.MonkeyPatch, emitted_metrics: Any
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("dynamodb exploded")

    monkeypatch.setattr(history_store, "query_messages", boom)
    emitted_metrics()
    response = chat.http("GET")
    assert response["statusCode"] == 500
    assert response["json"] == {"code": "internal", "message": "internal error"}
    assert emitted_metrics()["InternalErrors"] == 1


def test_not_an_http_event(chat: Any, context: Any) -> None:
    from multiregion_chat.runtime.handlers import http_handler

    response = http_handler.handler([], context)  # type: ignore[arg-type]
    assert response["statusCode"] == 404
    response = http_handler.handler({}, context)
    assert response["statusCode"] == 404


def test_health_is_not_served_here(chat: Any, emitted_metrics: Any) -> None:
    """GET /health has a function of its own (health_handler): routed here by mistake it
    is no health check but an unknown path, so Route 53 would see the mistake."""
    emitted_metrics()
    for route_key in ("GET /health", "$default"):
        response = chat.http("GET", None, user=None, route_key=route_key, raw_path="/health")
        assert response["statusCode"] == 404
        assert response["json"]["code"] == "bad_request"
    assert "HealthChecks" not in emitted_metrics()
