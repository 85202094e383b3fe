"""Open connections honour their token's ``exp`` (issue 8): ``token_expired``, then
closed; ``refresh`` with a fresh token of the same user extends them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import jwt
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.stub import ANY, Stubber

from multiregion_chat.clients.tokens import mint_token
from multiregion_chat.runtime.auth import token_expiry, token_keys
from multiregion_chat.runtime.auth.tokens import LEEWAY_SECONDS
from multiregion_chat.runtime.delivery import engine
from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.store import connection_store, layout, room_store
from tests.unit.conftest import REGION, authorizer_context
from tests.unit.connections_server import ConnectionsServer, ids_of


def connect_until(chat: Any, cid: str, expires_at: int | str | None) -> dict[str, Any]:
    context = authorizer_context("alice")
    if expires_at is not None:
        context["expiresAt"] = str(expires_at)
    return chat.connect(cid, authorizer=context)


@pytest.fixture
def management(aws: None) -> Iterator[Stubber]:
    """The ``@connections`` API as ClientMessageHandler calls it (moto's never says 410)."""
    with Stubber(aws_clients.management()) as stubber:
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


# --- refresh: a fresh token extends the open connection ------------------------------

SECRET_NAME = "chat/test/token-signing-secret"
SECRET = "refresh-test-secret-of-at-least-32-bytes"


@pytest.fixture
def signing_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SIGNING_SECRET_NAME", SECRET_NAME)
    monkeypatch.delenv("JWT_ISSUER", raising=False)
    token_keys.reset()
    parameters.clear_caches()
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_NAME, SecretString=SECRET
    )
    yield
    parameters.clear_caches()
    token_keys.reset()


def test_refresh_extends_the_connection(chat: Any, signing_secret: None) -> None:
    now = int(time.time())
    connect_until(chat, "c1", now + 60)
    token = mint_token(SECRET, "alice", ttl_seconds=7200, now=now)
    reply = chat.send("c1", {"action": "refresh", "token": token, "ref": "r"})
    assert reply == {"type": "refreshed", "expiresAt": now + 7200, "ref": "r"}
    assert connection_store.token_expires_at("c1") == now + 7200


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: mint_token(SECRET, "mallory"), "another user"),
        (lambda: mint_token("another-secret-of-at-least-32-bytes", "alice"), "unknown kid"),
        (lambda: mint_token(SECRET, "alice", ttl_seconds=25 * 3600), "lifetime"),
        (lambda: mint_token(SECRET, "alice", ttl_seconds=-3600), "expired"),
        (lambda: "not-a-token", "token"),
    ],
)
def test_refresh_with_a_bad_token_is_refused_and_changes_nothing(
    chat: Any, signing_secret: None, token: Callable[[], str], reason: str
) -> None:
    expires_at = int(time.time()) + 60
    connect_until(chat, "c1", expires_at)
    reply = chat.send("c1", {"action": "refresh", "token": token()})
    assert (reply["type"], reply["code"]) == ("error", "token_invalid")
    assert reason in reply["message"]
    assert connection_store.token_expires_at("c1") == expires_at
    assert chat.send("c1", {"action": "ping"})["type"] == "pong"  # the connection stays


@pytest.mark.parametrize("frame", [{}, {"token": ""}, {"token": 5}, {"token": "x" * 9000}])
def test_refresh_needs_a_token_string(chat: Any, frame: dict[str, Any]) -> None:
    connect_until(chat, "c1", int(time.time()) + 60)
    assert chat.send("c1", {"action": "refresh", **frame})["code"] == "bad_request"


def test_refresh_after_expiry_is_too_late(
    chat: Any, management: Stubber, signing_secret: None
) -> None:
    connect_until(chat, "c1", int(time.time()) - 3600)
    expect_close(management, "c1")
    reply = chat.send("c1", {"action": "refresh", "token": mint_token(SECRET, "alice")})
    assert reply["code"] == "token_expired"


# --- refresh follows the authorizer's key source (runtime.auth.token_keys) ----------------------

OLD_KEY = "refresh-test-old-key-of-at-least-32-bytes"


def test_refresh_accepts_every_key_of_a_rotation_document(chat: Any, signing_secret: None) -> None:
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=SECRET_NAME, SecretString=json.dumps({"current": SECRET, "previous": OLD_KEY})
    )
    parameters.clear_caches()
    now = int(time.time())
    connect_until(chat, "c1", now + 60)
    signed_with_the_old_key = mint_token(json.dumps({"current": OLD_KEY}), "alice", now=now)
    reply = chat.send("c1", {"action": "refresh", "token": signed_with_the_old_key})
    assert reply["type"] == "refreshed"
    assert connection_store.token_expires_at("c1") == reply["expiresAt"]


def test_refresh_with_an_oidc_issuer_uses_its_jwks_and_reads_no_secret(
    chat: Any, aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.test_oidc_tokens import AUDIENCE, ISSUER, FakeIssuer, rs256

    issuer = FakeIssuer()
    monkeypatch.delenv("SIGNING_SECRET_NAME", raising=False)
    monkeypatch.setenv("JWT_ISSUER", ISSUER)
    monkeypatch.setenv("JWT_AUDIENCE", AUDIENCE)
    token_keys.policy.cache_clear()
    monkeypatch.setattr(token_keys, "_jwks", lambda _issuer, url: issuer.source(url))
    try:
        now = int(time.time())
        context = authorizer_context("u-1")
        context["expiresAt"] = str(now + 60)
        chat.connect("c1", authorizer=context)
        reply = chat.send("c1", {"action": "refresh", "token": rs256()})
        assert reply["type"] == "refreshed"
        assert connection_store.token_expires_at("c1") == reply["expiresAt"]
        forged = jwt.encode({"sub": "u-1", "exp": now + 600}, "x" * 32, algorithm="HS256")
        assert chat.send("c1", {"action": "refresh", "token": forged})["code"] == "token_invalid"
        assert issuer.requests  # the keys came from the issuer, no secret was read
    finally:
        token_keys.policy.cache_clear()


# --- delivery: a listen-only connection is closed at the next frame to its room ---------


def member_until(chat: Any, cid: str, expires_at: int | None) -> None:
    connect_until(chat, cid, expires_at)
    assert chat.send(cid, {"action": "join", "room": "lobby"})["type"] == "joined"


def clock_at(monkeypatch: pytest.MonkeyPatch, now: int) -> None:
    """The delivery's clock (tokens are judged with it; nothing else moves)."""
    monkeypatch.setattr(token_expiry, "epoch_seconds", lambda: now)


def message() -> dict[str, Any]:
    message_id = ids.new_id()
    return {
        "originRegion": REGION,
        "room": "lobby",
        "id": message_id,
        "sender": {"userId": "bob", "region": REGION},
        "body": {"text": "hi"},
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }


def deliver_to_room(room: str) -> engine.FanoutResult:
    """The engine fed the room's live members page by page, as a room delivery reads them."""
    return engine.deliver(
        room,
        b'{"type":"message"}',
        pages=token_expiry.live_connection_ids(room),
        on_gone=transitions.cleanup_gone,
    )


def test_join_copies_the_token_expiry_into_the_membership(chat: Any) -> None:
    expires_at = int(time.time()) + 600
    member_until(chat, "c1", expires_at)
    assert list(room_store.iter_room_connections("lobby")) == [[("c1", expires_at)]]


def test_an_expired_member_is_closed_instead_of_delivered_to(
    chat: Any,
    management: Stubber,
    mgmt: ConnectionsServer,
    monkeypatch: pytest.MonkeyPatch,
    emitted_metrics: Any,
) -> None:
    now = int(time.time())
    member_until(chat, "expired", now + 60)
    member_until(chat, "live", now + 7200)
    member_until(chat, "unknown", None)  # written before tokenExpiresAt, or no exp
    clock_at(monkeypatch, now + 60 + LEEWAY_SECONDS + 1)
    expect_close(management, "expired")
    emitted_metrics()
    result = chat.deliver(message())
    assert (result["status"], result["delivered"]) == ("delivered", 2)
    assert sorted(ids_of(mgmt.posts())) == ["live", "unknown"]
    assert emitted_metrics()["ExpiredConnectionsClosed"] == 1


def test_within_the_leeway_a_member_is_still_delivered_to(
    chat: Any, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    member_until(chat, "c1", now + 60)
    clock_at(monkeypatch, now + 60 + LEEWAY_SECONDS)
    assert deliver_to_room("lobby").delivered == 1
    assert ids_of(mgmt.posts()) == ["c1"]


def test_the_engine_fed_the_live_members_closes_expired_members_too(
    chat: Any, management: Stubber, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    member_until(chat, "expired", now + 60)
    member_until(chat, "live", now + 7200)
    clock_at(monkeypatch, now + 3600)
    expect_close(management, "expired")
    assert deliver_to_room("lobby").delivered == 1
    assert ids_of(mgmt.posts()) == ["live"]


def test_an_expired_member_already_gone_is_cleaned_up(
    chat: Any,
    management: Stubber,
    mgmt: ConnectionsServer,
    monkeypatch: pytest.MonkeyPatch,
    items_of: Any,
) -> None:
    now = int(time.time())
    member_until(chat, "expired", now + 60)
    clock_at(monkeypatch, now + 3600)
    expect_close(management, "expired", gone=True)
    assert chat.deliver(message())["status"] == "delivered"
    assert mgmt.posts() == []
    assert items_of("expired") == []  # META and membership removed, as on a fan-out 410


def test_refresh_moves_the_membership_expiry_so_the_member_is_delivered_to_again(
    chat: Any, signing_secret: None, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    member_until(chat, "c1", now + 60)
    token = mint_token(SECRET, "alice", ttl_seconds=7200, now=now)
    assert chat.send("c1", {"action": "refresh", "token": token})["type"] == "refreshed"
    assert list(room_store.iter_room_connections("lobby")) == [[("c1", now + 7200)]]
    clock_at(monkeypatch, now + 3600)  # past the first token, within the fresh one
    assert chat.deliver(message())["delivered"] == 1
    assert ids_of(mgmt.posts()) == ["c1"]


def test_refresh_never_recreates_a_membership_that_is_gone(
    chat: Any, signing_secret: None, tables: Any
) -> None:
    now = int(time.time())
    member_until(chat, "c1", now + 60)
    tables.connections.delete_item(Key={"pk": "ROOM#lobby", "sk": "CONN#c1"})
    token = mint_token(SECRET, "alice", ttl_seconds=7200, now=now)
    assert chat.send("c1", {"action": "refresh", "token": token})["type"] == "refreshed"
    assert list(room_store.iter_room_connections("lobby")) == [[]]


def test_meta_decides_when_a_membership_kept_an_old_expiry(
    chat: Any, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A join racing a refresh can leave the membership with the old expiry: META (moved
    first by refresh) says the token is fresh, so the member is delivered to, not closed."""
    now = int(time.time())
    member_until(chat, "c1", now + 60)
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=layout.connections_table(),
        Key={"pk": {"S": "CONN#c1"}, "sk": {"S": "META"}},
        UpdateExpression="SET tokenExpiresAt = :later",
        ExpressionAttributeValues={":later": {"N": str(now + 7200)}},
    )
    clock_at(monkeypatch, now + 3600)  # past the membership's copy, within META's
    assert chat.deliver(message())["delivered"] == 1  # no close expected (Stubber unused)
    assert ids_of(mgmt.posts()) == ["c1"]


def test_closes_per_delivery_are_bounded_and_the_rest_left_out(
    chat: Any,
    management: Stubber,
    mgmt: ConnectionsServer,
    monkeypatch: pytest.MonkeyPatch,
    emitted_metrics: Any,
) -> None:
    monkeypatch.setattr(token_expiry, "MAX_CLOSES_PER_DELIVERY", 2)
    now = int(time.time())
    for n in range(4):
        member_until(chat, f"expired{n}", now + 60)
    member_until(chat, "live", now + 7200)
    clock_at(monkeypatch, now + 3600)
    closed = []
    for cid, _ in next(room_store.iter_room_connections("lobby"))[:5]:
        if cid != "live" and len(closed) < 2:
            closed.append(cid)
            expect_close(management, cid)
    emitted_metrics()
    assert chat.deliver(message())["delivered"] == 1
    assert ids_of(mgmt.posts()) == ["live"]  # the unclosed expired ones are left out too
    assert emitted_metrics()["ExpiredConnectionsClosed"] == 2
