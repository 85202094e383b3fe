"""Open connections honour their token's ``exp`` (issue 8): ``token_expired``, then closed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from chat import clients, connection_store
from chat.tokens import LEEWAY_SECONDS
from tests.unit.conftest import authorizer_context


def connect_until(chat: Any, cid: str, expires_at: int | str | None) -> dict[str, Any]:
    context = authorizer_context("alice")
    if expires_at is not None:
        context["expiresAt"] = str(expires_at)
    return chat.connect(cid, authorizer=context)


@pytest.fixture
def management(aws: None) -> Iterator[Stubber]:
    """The ``@connections`` API as ClientMessageHandler calls it (moto's never says 410)."""
    with Stubber(clients.management()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_close(management: Stubber, cid: str, *, gone: bool = False) -> None:
    post = {"ConnectionId": cid, "Data": ANY}
    if gone:
        management.add_client_error("post_to_connection", "GoneException", http_status_code=410)
        return
    management.add_response("post_to_connection", {}, post)
    management.add_response("delete_connection", {}, {"ConnectionId": cid})


def test_connect_records_the_token_expiry(chat: Any) -> None:
    expires_at = int(time.time()) + 600
    assert connect_until(chat, "c1", expires_at)["statusCode"] == 200
    assert connection_store.token_expires_at("c1") == expires_at
    assert chat.send("c1", {"action": "join", "room": "lobby"})["type"] == "joined"


def test_a_frame_after_expiry_gets_token_expired_and_the_connection_is_closed(
    chat: Any, management: Stubber, emitted_metrics: Any
) -> None:
    connect_until(chat, "c1", int(time.time()) - LEEWAY_SECONDS - 1)
    expect_close(management, "c1")
    emitted_metrics()
    reply = chat.send("c1", {"action": "send", "room": "lobby", "body": "x", "ref": "r1"})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "token_expired", "r1")
    assert emitted_metrics()["ExpiredConnections"] == 1


def test_expiry_within_the_clock_leeway_is_still_served(chat: Any) -> None:
    connect_until(chat, "c1", int(time.time()) - LEEWAY_SECONDS + 20)
    assert chat.send("c1", {"action": "ping"})["type"] == "pong"


def test_a_connection_already_gone_is_fine(chat: Any, management: Stubber) -> None:
    connect_until(chat, "c1", int(time.time()) - 3600)
    expect_close(management, "c1", gone=True)
    assert chat.send("c1", {"action": "ping"})["code"] == "token_expired"


def test_without_a_recorded_expiry_nothing_is_enforced(chat: Any) -> None:
    connect_until(chat, "c1", None)
    assert connection_store.token_expires_at("c1") is None
    assert chat.send("c1", {"action": "ping"})["type"] == "pong"


@pytest.mark.parametrize("bad", ["soon", "-5", "1.5", ""])
def test_a_malformed_expiry_refuses_the_connection(chat: Any, bad: str) -> None:
    assert connect_until(chat, "c1", bad)["statusCode"] == 400
