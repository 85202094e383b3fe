"""Frame validation: every malformed frame gets the protocol's error code.

All of these frames are rejected before any AWS call, so the module shares one
moto instance (``chat_shared``) instead of building tables for every case.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from multiregion_chat.runtime.platform import runtime_settings


@pytest.fixture(autouse=True)
def _no_request_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """One connection sends every frame of this module: the budgets are tested elsewhere."""
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "100000")
    monkeypatch.setenv("USER_BURST_LIMIT", "100000")
    runtime_settings.reset()


@pytest.fixture(scope="module")
def connection(module_aws: None) -> str:
    return "c-validation"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_request"),
        ("", "bad_request"),
        ("{", "bad_request"),
        ("[1, 2]", "bad_request"),
        ("[]", "bad_request"),
        ('"join"', "bad_request"),
        ("null", "bad_request"),
        ("42", "bad_request"),
        ("{}", "bad_request"),
        ('{"action": 5}', "bad_request"),
        ('{"action": null}', "bad_request"),
        ('{"action": ["join"]}', "bad_request"),
        ('{"action": "nope"}', "unknown_action"),
        ('{"action": ""}', "unknown_action"),
        ('{"action": "JOIN", "room": "lobby"}', "unknown_action"),
        ('{"action": "$default"}', "unknown_action"),
        ('{"action": "join"}', "bad_request"),
        ('{"action": "join", "room": 5}', "bad_request"),
        ('{"action": "join", "room": null}', "bad_request"),
        ('{"action": "join", "room": ""}', "bad_request"),
        ('{"action": "join", "room": "has space"}', "bad_request"),
        ('{"action": "join", "room": "lobby\\n"}', "bad_request"),
        ('{"action": "join", "room": "' + "r" * 65 + '"}', "bad_request"),
        ('{"action": "join", "room": "caf\\u00e9"}', "bad_request"),
        ('{"action": "join", "room": "lobby", "after": "nope"}', "bad_request"),
        ('{"action": "join", "room": "lobby", "after": 5}', "bad_request"),
        (
            '{"action": "join", "room": "lobby", "after": "01arz3ndektsv4rrffq69g5fav"}',
            "bad_request",
        ),
        ('{"action": "send", "room": "lobby"}', "bad_request"),
        ('{"action": "send", "room": "lobby", "body": NaN}', "bad_request"),
        ('{"action": "send", "room": "lobby", "body": Infinity}', "bad_request"),
        ('{"action": "send", "body": "hi"}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": 0}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": 101}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": -1}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": true}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": false}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": 5.0}', "bad_request"),
        ('{"action": "history", "room": "lobby", "limit": "5"}', "bad_request"),
        ('{"action": "history", "room": "lobby", "after": "x"}', "bad_request"),
        ('{"action": "leave"}', "bad_request"),
        ('{"action": "presence", "room": ["lobby"]}', "bad_request"),
        ('{"action": "ping", "ref": 7}', "bad_request"),
        # Numbers that overflow to infinity would leave the server as Infinity (not JSON).
        ('{"action": "send", "room": "lobby", "body": 1e400}', "bad_request"),
        ('{"action": "send", "room": "lobby", "body": [-1E+999]}', "bad_request"),
        # Deeper than 32 arrays/objects (the frame itself is one).
        ('{"action": "send", "room": "lobby", "body": ' + "[" * 32 + "]" * 32 + "}", "bad_request"),
        (
            '{"action": "send", "room": "lobby", "body": ' + "[" * 9000 + "]" * 9000 + "}",
            "bad_request",
        ),
        ("[" * 100_000, "bad_request"),
    ],
)
def test_invalid_frames(chat_shared: Any, connection: str, raw: str, code: str) -> None:
    reply = chat_shared.send(connection, raw)
    assert reply["type"] == "error"
    assert reply["code"] == code
    assert isinstance(reply["message"], str) and reply["message"]
    assert set(reply) == {"type", "code", "message"}


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"action": "nope", "ref": "r1"}, "unknown_action"),
        ({"ref": "r2"}, "bad_request"),
        ({"action": "join", "room": 5, "ref": "r3"}, "bad_request"),
        ({"action": "history", "room": "lobby", "limit": True, "ref": "r5"}, "bad_request"),
        ({"action": "send", "room": "lobby", "body": "x" * 20000, "ref": ""}, "too_large"),
    ],
)
def test_error_frames_echo_a_valid_ref(
    chat_shared: Any, connection: str, frame: Any, code: str
) -> None:
    reply = chat_shared.send(connection, frame)
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", code, frame["ref"])


@pytest.mark.parametrize("ref", ["r" * 65, 5, ["x"], {"a": 1}, True])
def test_invalid_ref_is_bad_request_without_ref(
    chat_shared: Any, connection: str, ref: Any
) -> None:
    reply = chat_shared.send(connection, {"action": "ping", "ref": ref})
    assert reply["code"] == "bad_request"
    assert "ref" not in reply


def test_missing_body_is_bad_request(chat_shared: Any, connection: str) -> None:
    reply = json.loads(chat_shared.raw(connection, None)["body"])
    assert (reply["type"], reply["code"]) == ("error", "bad_request")


def test_base64_frames_are_decoded(chat_shared: Any, context: Any) -> None:
    import base64

    from multiregion_chat.runtime.handlers import client_message_handler

    event = {
        "requestContext": {"routeKey": "$default", "connectionId": "c-b64", "requestId": "r"},
        "body": base64.b64encode(b'{"action":"nope"}').decode(),
        "isBase64Encoded": True,
    }
    reply = json.loads(client_message_handler.handler(event, context)["body"])
    assert reply["code"] == "unknown_action"
    event["body"] = "%%%not-base64"
    reply = json.loads(client_message_handler.handler(event, context)["body"])
    assert reply["code"] == "bad_request"
