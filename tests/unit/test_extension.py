"""runtime.intake.extension.client_action, and the example app's handlers built on the runtime."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import ANY

import pytest
from botocore.stub import Stubber

from multiregion_chat.runtime.handlers import client_message_handler
from multiregion_chat.runtime.intake.extension import ActionRequest, client_action
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.claims import LEEWAY_SECONDS
from multiregion_chat.runtime.protocol.frames import FORBIDDEN, ProtocolError
from tests.unit.conftest import FakeLambdaContext, authorizer_context

EXAMPLE_HANDLERS = Path(__file__).resolve().parents[2] / "examples" / "team_app" / "team_handlers"

# Every frame reads its sender's items (runtime.intake.frame_state): the table is moto's.
pytestmark = pytest.mark.usefixtures("aws")


@client_action("echo")
def echo(request: ActionRequest) -> dict[str, Any]:
    if request.fields.get("deny"):
        raise ProtocolError(FORBIDDEN, "not you", request.ref)
    if request.fields.get("crash"):
        raise RuntimeError("boom: a secret in the message")
    if request.fields.get("huge"):
        return {"blob": "x" * 200_000}
    return {"room": request.checked.room(), "said": request.fields.get("text")}


def frame_event(body: str | None, connection_id: str = "c1") -> dict[str, Any]:
    return {
        "requestContext": {
            "routeKey": "echo",
            "eventType": "MESSAGE",
            "connectionId": connection_id,
            "requestId": "r1",
            "stage": "test",
            "authorizer": authorizer_context("alice"),
        },
        "body": body,
        "isBase64Encoded": False,
    }


def reply(body: str | None, handler: Any = echo) -> dict[str, Any]:
    response = handler(frame_event(body), FakeLambdaContext())
    assert response["statusCode"] == 200
    answer: dict[str, Any] = json.loads(response["body"])
    return answer


def test_the_reply_is_a_frame_of_the_action(emitted_metrics: Any) -> None:
    answer = reply('{"action": "echo", "ref": "r", "room": "lobby", "text": "hi"}')
    assert answer == {"type": "echo", "ref": "r", "room": "lobby", "said": "hi"}
    assert emitted_metrics()["Requests"] == 1


@pytest.mark.parametrize(
    ("body", "code", "ref"),
    [
        ("not json", "bad_request", None),
        ("[1]", "bad_request", None),
        ('{"action": "echo", "ref": 5}', "bad_request", None),
        ('{"action": "join", "ref": "r", "room": "lobby"}', "bad_request", "r"),
        ('{"action": "echo", "ref": "r"}', "bad_request", "r"),  # no room
        ('{"action": "echo", "ref": "r", "room": "lobby", "deny": true}', "forbidden", "r"),
        (None, "bad_request", None),
    ],
)
def test_errors_are_the_protocols_frames(body: str | None, code: str, ref: str | None) -> None:
    answer = reply(body)
    assert answer["type"] == "error" and answer["code"] == code
    assert answer.get("ref") == ref


def test_unexpected_errors_are_internal_and_not_leaked(
    emitted_metrics: Any, caplog: pytest.LogCaptureFixture
) -> None:
    answer = reply('{"action": "echo", "ref": "r", "room": "lobby", "crash": true}')
    assert answer == {"type": "error", "code": "internal", "message": "internal error", "ref": "r"}
    assert emitted_metrics()["InternalErrors"] == 1


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"team_{name}", EXAMPLE_HANDLERS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_whoami_answers_with_the_connections_identity(chat: Any) -> None:
    whoami = _load("whoami")
    chat.connect("c1", "alice", "Alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    answer = reply('{"action": "whoami", "ref": "w"}', whoami.handler)
    assert answer == {
        "type": "whoami",
        "ref": "w",
        "userId": "alice",
        "name": "Alice",
        "rooms": ["lobby"],
    }


def test_whoami_without_a_connection_record_is_internal(aws: None) -> None:
    whoami = _load("whoami")
    answer = reply('{"action": "whoami"}', whoami.handler)
    assert (answer["code"], answer["message"]) == (
        "internal",
        "connection is not registered; reconnect",
    )


def test_moderation_flags_blocked_words_of_its_own_region(
    monkeypatch: pytest.MonkeyPatch, emitted_metrics: Any
) -> None:
    monkeypatch.setenv("BLOCKED_WORDS", "spam, scam")
    moderation = _load("moderation")

    def event(body: Any, origin: str = "us-east-1") -> dict[str, Any]:
        detail = {"originRegion": origin, "room": "lobby", "id": "x", "body": body}
        return {"detail-type": "chat.message", "detail": detail}

    context = FakeLambdaContext()
    assert moderation.handler(event({"text": "Free SPAM!"}), context) == {"status": "flagged"}
    assert moderation.handler(event("hello"), context) == {"status": "ok"}
    assert moderation.handler(event("spam", origin="eu-west-1"), context) == {"status": "not-ours"}
    assert emitted_metrics()["FlaggedMessages"] == 1


# --- wired like the built-in actions (issue 18, item 3) --------------------------------------


def test_a_team_action_is_charged_to_the_same_budget(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "2")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    frame = '{"action": "echo", "ref": "e", "room": "lobby"}'
    assert reply(frame)["type"] == "echo"
    assert reply(frame)["type"] == "echo"
    refused = reply(frame)
    assert (refused["code"], refused["ref"]) == ("rate_limited", "e")
    assert refused["retryAfterMs"] > 0
    # built-in and team actions share the connection's budget
    ping = client_message_handler.handler(frame_event('{"action": "ping"}'), FakeLambdaContext())
    assert json.loads(ping["body"])["code"] == "rate_limited"


def test_a_team_action_on_an_expired_token_gets_token_expired(chat: Any) -> None:
    context = authorizer_context("alice")
    context["expiresAt"] = str(int(time.time()) - LEEWAY_SECONDS - 1)
    chat.connect("c1", authorizer=context)
    with Stubber(aws_clients.management()) as management:
        management.add_response("post_to_connection", {}, {"ConnectionId": "c1", "Data": ANY})
        management.add_response("delete_connection", {}, {"ConnectionId": "c1"})
        answer = reply('{"action": "echo", "ref": "x", "room": "lobby"}')
        management.assert_no_pending_responses()
    assert (answer["code"], answer["ref"]) == ("token_expired", "x")


def test_a_team_reply_over_the_message_limit_is_refused(chat: Any, emitted_metrics: Any) -> None:
    chat.connect("c1", "alice")
    answer = reply('{"action": "echo", "ref": "h", "huge": true}')
    assert (answer["code"], answer["message"], answer["ref"]) == (
        "internal",
        "reply too large",
        "h",
    )
    assert emitted_metrics()["OversizedReplies"] == 1
