"""Request validation of the HTTP fallback and of presence events.

Every case here is rejected before any write, so the module shares one moto
instance (``chat_shared``) instead of building tables for every case.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from multiregion_chat.runtime.platform import aws_clients
from tests.unit.conftest import TEST_ENV
from tests.unit.test_presence import remote


@pytest.fixture
def no_publish(module_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any PutEvents fails the request (and so the test's status assertion)."""

    def refuse(**kwargs: Any) -> Any:
        raise AssertionError("nothing may be published")

    monkeypatch.setattr(aws_clients.events(), "put_events", refuse)


A = {"userId": "a", "rooms": "null"}  # the authorizer's context for a token without rooms
TEAM_A = {"userId": "a", "rooms": '["team-a"]'}


@pytest.mark.parametrize(
    ("room", "who", "body", "status", "code"),
    [
        ("lobby", None, '{"body": 1}', 400, "bad_request"),  # no authorizer identity
        ("lobby", {"userId": "", "rooms": "null"}, '{"body": 1}', 400, "bad_request"),
        ("lobby", {"userId": "u" * 129, "rooms": "null"}, '{"body": 1}', 400, "bad_request"),
        ("lobby", {**A, "name": "n" * 65}, '{"body": 1}', 400, "bad_request"),
        ("lobby", {"userId": "a"}, '{"body": 1}', 400, "bad_request"),  # no rooms
        ("lobby", A, None, 400, "bad_request"),  # no request body
        ("lobby", A, "not json", 400, "bad_request"),
        ("lobby", A, "[1, 2]", 400, "bad_request"),
        ("lobby", A, '{"text": 1}', 400, "bad_request"),  # missing body
        ("lobby", A, '{"body": NaN}', 400, "bad_request"),
        ("lobby", A, '{"body": "\\ud800"}', 400, "bad_request"),
        ("bad room", A, '{"body": 1}', 400, "bad_request"),
        ("r" * 65, A, '{"body": 1}', 400, "bad_request"),
        ("lobby", A, json.dumps({"body": list(range(5000))}), 413, "too_large"),
        ("lobby", TEAM_A, '{"body": 1}', 403, "forbidden"),
        ("team-b", TEAM_A, json.dumps({"body": list(range(5000))}), 403, "forbidden"),
        ("bad room", TEAM_A, '{"body": 1}', 400, "bad_request"),  # the name is checked first
    ],
)
def test_post_validation(
    chat_shared: Any,
    no_publish: None,
    room: str,
    who: dict[str, str] | None,
    body: str | None,
    status: int,
    code: str,
) -> None:
    response = chat_shared.http("POST", room, user=None, authorizer=who, body=body)
    assert (response["statusCode"], response["json"]["code"]) == (status, code)
    assert isinstance(response["json"]["message"], str)


@pytest.mark.parametrize(
    "query",
    [
        {"after": "not-an-id"},
        {"after": "0" * 25},
        {"after": "8" + "0" * 25},  # beyond 48 bits
        {"after": "01arz3ndektsv4rrffq69g5fav"},  # a valid id, lower-cased (fixed: no clock)
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"limit": "-1"},
        {"limit": " 5"},
        {"wait": "-1"},
        {"wait": "21"},
        {"wait": "20.5"},
        {"wait": "abc"},
        {"wait": "1e1"},
        {"wait": "nan"},
    ],
)
def test_get_bad_parameters(chat_shared: Any, query: dict[str, str]) -> None:
    response = chat_shared.http("GET", query=query)
    assert response["statusCode"] == 400
    assert response["json"]["code"] == "bad_request"


def test_get_bad_room(chat_shared: Any) -> None:
    response = chat_shared.http("GET", "bad%20room")
    assert (response["statusCode"], response["json"]["code"]) == (400, "bad_request")


def test_get_needs_identity_and_an_allowed_room(chat_shared: Any) -> None:
    response = chat_shared.http("GET", user=None)
    assert (response["statusCode"], response["json"]["code"]) == (400, "bad_request")
    response = chat_shared.http("GET", "lobby", rooms=["team-*"])
    assert (response["statusCode"], response["json"]["code"]) == (403, "forbidden")
    assert chat_shared.http("GET", "team-x", rooms=["team-*"])["statusCode"] == 200


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        {},
        {**remote(), "event": "entered"},
        {**remote(), "room": "bad room"},
        {**remote(), "originRegion": ""},
        {**remote(), "member": {"userId": "", "region": "eu-west-1"}},
        {**remote(), "member": {"userId": "u" * 129, "region": "eu-west-1"}},
        {**remote(), "member": {"userId": "dave"}},
        {**remote(), "member": "dave"},
        {**remote(), "at": "1700000000000"},
        {**remote(), "at": True},
        {**remote(), "at": -1},
        {**remote(), "refresh": "yes"},
    ],
)
def test_malformed_presence_events_are_dropped(
    chat_shared: Any, bad: Any, emitted_metrics: Any
) -> None:
    emitted_metrics()
    assert chat_shared.deliver(bad, "chat.presence") == {"status": "malformed"}
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(TEST_ENV["CONNECTIONS_TABLE"])
    # nothing written (the request budgets of earlier frames in this module aside)
    assert [i for i in table.scan()["Items"] if not i["pk"].startswith("RATE#")] == []
    assert emitted_metrics()["MalformedEvents"] == 1
