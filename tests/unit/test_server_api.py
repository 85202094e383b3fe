"""ServerApi (runtime/handlers/server_api_handler.py): publish as a system sender, disconnect a
user everywhere."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.stub import Stubber

from multiregion_chat.runtime.handlers import server_api_handler
from multiregion_chat.runtime.platform import aws_clients, bus
from tests.unit.conftest import FakeLambdaContext

MAX = 16384


def http_event(path: str, body: Any = None, *, raw: str | None = None) -> dict[str, Any]:
    """An HTTP API (payload 2.0) event for an AWS_IAM route, as API Gateway sends it."""
    text = raw if raw is not None else (json.dumps(body) if body is not None else None)
    route = (
        "POST /server/rooms/{room}/messages"
        if "/rooms/" in path
        else "POST /server/users/{userId}/disconnect"
    )
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": path, "sourceIp": "127.0.0.1"},
            "routeKey": route,
            "stage": "$default",
            "requestId": "req-1",
            "authorizer": {"iam": {"accessKey": "AKID", "userArn": "arn:aws:iam::1:role/b"}},
        },
        "isBase64Encoded": False,
    }
    if text is not None:
        event["body"] = text
    return event


def call(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = server_api_handler.handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_publish_as_a_system_sender(published: list[Any], emitted_metrics: Any) -> None:
    status, answer = call(
        http_event("/server/rooms/lobby/messages", {"body": {"t": 1}, "sender": "Announcements"})
    )
    assert status == 202
    (event,) = published
    assert event.detail_type == "chat.message"
    # The server's own source: the only one a system sender is accepted in.
    assert event.source == "chat.chat.server"
    assert event.detail["id"] == answer["id"]
    assert event.detail["room"] == "lobby"
    assert event.detail["body"] == {"t": 1}
    assert event.detail["sender"] == {
        "userId": "system:Announcements",
        "name": "Announcements",
        "region": "us-east-1",
    }
    assert emitted_metrics()["ServerMessages"] == 1


@pytest.mark.parametrize(
    ("path", "raw", "status", "code"),
    [
        ("/server/rooms/lobby/messages", '{"body": 1}', 400, "bad_request"),  # no sender
        ("/server/rooms/lobby/messages", '{"body": 1, "sender": "a b"}', 400, "bad_request"),
        ("/server/rooms/lobby/messages", '{"body": 1, "sender": 7}', 400, "bad_request"),
        ("/server/rooms/lobby/messages", '{"sender": "Bot"}', 400, "bad_request"),  # no body
        ("/server/rooms/lobby/messages", "not json", 400, "bad_request"),
        ("/server/rooms/lobby/messages", "[1]", 400, "bad_request"),
        ("/server/rooms/bad%20room/messages", '{"body": 1, "sender": "Bot"}', 400, "bad_request"),
        (
            "/server/rooms/lobby/messages",
            json.dumps({"body": "x" * MAX, "sender": "Bot"}),
            413,
            "too_large",
        ),
    ],
)
def test_publish_refuses_bad_requests(
    published: list[Any], path: str, raw: str, status: int, code: str
) -> None:
    answer_status, answer = call(http_event(path, raw=raw))
    assert (answer_status, answer["code"]) == (status, code)
    assert answer["message"]
    assert published == []


def test_publish_accepts_a_base64_body_and_an_encoded_room(published: list[Any]) -> None:
    event = http_event("/server/rooms/team%3Aa/messages", raw="")
    event["body"] = base64.b64encode(b'{"body": "hi", "sender": "Bot"}').decode()
    event["isBase64Encoded"] = True
    status, _ = call(event)
    assert status == 202
    assert published[0].detail["room"] == "team:a"


def test_publish_failure_is_500_and_nothing_acknowledged(chat: Any, emitted_metrics: Any) -> None:
    with Stubber(aws_clients.events()) as events:
        events.add_client_error("put_events", "AccessDeniedException", http_status_code=400)
        status, answer = call(
            http_event("/server/rooms/lobby/messages", {"body": 1, "sender": "Bot"})
        )
    assert (status, answer["code"]) == (500, "internal")
    assert emitted_metrics()["PublishFailures"] == 1


def test_unknown_path_is_404(aws: None) -> None:
    event = http_event("/server/rooms/lobby/messages", {"body": 1, "sender": "Bot"})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/server/elsewhere"
    status, answer = call(event)
    assert (status, answer["code"]) == (404, "bad_request")


def test_disconnect_publishes_one_event_for_every_region(published: list[Any]) -> None:
    status, answer = call(http_event("/server/users/mallory%2F1/disconnect"))
    assert (status, answer) == (202, {"userId": "mallory/1"})
    (event,) = published
    assert event.detail_type == bus.DISCONNECT_DETAIL_TYPE == "chat.disconnect"
    assert event.source == "chat.chat"  # what the disconnect rule matches
    assert event.detail == {"userId": "mallory/1", "originRegion": "us-east-1"}


def test_disconnect_of_an_overlong_user_id_is_refused(published: list[Any]) -> None:
    status, answer = call(http_event(f"/server/users/{'u' * 129}/disconnect"))
    assert (status, answer["code"]) == (400, "bad_request")
    assert published == []


def disconnect_event(detail: Any) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "e1",
        "detail-type": "chat.disconnect",
        "source": "chat.chat",
        "account": "123456789012",
        "time": "2026-11-21T23:59:59Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def test_a_disconnect_event_closes_the_users_local_connections(
    chat: Any, emitted_metrics: Any
) -> None:
    for connection_id, user in (("c1", "mallory"), ("c2", "mallory"), ("c3", "bob")):
        chat.connect(connection_id, user)
    chat.send("c1", {"action": "join", "room": "lobby"})  # memberships are not connections
    with Stubber(aws_clients.management()) as management:
        management.add_response("delete_connection", {}, {"ConnectionId": "c1"})
        management.add_client_error(
            "delete_connection", "GoneException", http_status_code=410,
            expected_params={"ConnectionId": "c2"},
        )  # fmt: skip
        result = server_api_handler.handler(
            disconnect_event({"userId": "mallory", "originRegion": "eu-west-1"}),
            FakeLambdaContext(),
        )
        management.assert_no_pending_responses()
    assert result == {"status": "disconnected", "closed": 1, "gone": 1}
    metrics = emitted_metrics()
    assert (metrics["ConnectionsClosed"], metrics["GoneConnections"]) == (1, 1)


def test_other_failures_raise_so_eventbridge_retries(chat: Any) -> None:
    chat.connect("c1", "mallory")
    with Stubber(aws_clients.management()) as management:
        management.add_client_error(
            "delete_connection", "LimitExceededException", http_status_code=429
        )
        with pytest.raises(Exception, match="LimitExceeded"):
            server_api_handler.handler(
                disconnect_event({"userId": "mallory", "originRegion": "us-east-1"}),
                FakeLambdaContext(),
            )


@pytest.mark.parametrize("detail", [None, {}, {"userId": ""}, {"userId": 5}])
def test_malformed_disconnect_events_are_dropped(aws: None, detail: Any) -> None:
    assert server_api_handler.handler(disconnect_event(detail), FakeLambdaContext()) == {
        "status": "malformed"
    }


def test_a_named_stage_prefixes_the_raw_path(published: list[Any]) -> None:
    """As with Powertools' resolver: a stage other than ``$default`` is taken off the path;
    a method other than POST is 404 like an unknown path."""
    event = http_event("/prod/server/users/ann/disconnect")
    event["requestContext"]["stage"] = "prod"
    assert call(event) == (202, {"userId": "ann"})
    event["requestContext"]["http"]["method"] = "GET"
    assert call(event)[0] == 404
