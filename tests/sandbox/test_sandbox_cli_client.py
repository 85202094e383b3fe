"""The CLI client's pieces: rendering, de-duplication, URLs and tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
from pathlib import Path

import pytest

from clients.chat import ChatSession, ClientError, connect_url, endpoint_url, render
from clients.tokens import mint_token

MESSAGE = {
    "type": "message",
    "room": "lobby",
    "id": "01ABC",
    "sender": {"userId": "bob", "name": "Bob", "region": "eu-west-1"},
    "body": "hi there",
    "sentAt": "2026-11-21T10:11:12.123Z",
}


def test_render_frames() -> None:
    assert render(MESSAGE) == "[10:11:12] #lobby Bob (bob)@eu-west-1: hi there"
    joined = {
        "type": "joined",
        "room": "lobby",
        "members": [MESSAGE["sender"]],
        "missed": [MESSAGE],
        "more": False,
    }
    assert render(joined).splitlines() == [
        "* joined #lobby; here: Bob (bob)@eu-west-1",
        "[10:11:12] #lobby Bob (bob)@eu-west-1: hi there",
    ]
    assert render({"type": "error", "code": "not_member", "message": "join first"}) == (
        "! not_member: join first"
    )
    assert render({"type": "ack", "id": "1"}) is None
    assert render({"type": "ack", "id": "1"}, verbose=True) == "  (sent 1)"
    assert render({"message": "Internal server error", "connectionId": "x"}) == (
        "! gateway: Internal server error"
    )
    assert (
        render(
            {
                "type": "member",
                "room": "r",
                "event": "joined",
                "member": {"userId": "a", "region": "us-east-1"},
            }
        )
        == "* a@us-east-1 joined #r"
    )


def test_session_shows_each_message_once_and_remembers_the_last_id() -> None:
    out = io.StringIO()
    session = ChatSession("lobby", out)
    session.receive(json.dumps(MESSAGE))
    session.receive(
        json.dumps(
            {"type": "joined", "room": "lobby", "members": [], "missed": [MESSAGE], "more": False}
        )
    )
    session.receive(json.dumps(MESSAGE))
    assert out.getvalue().count("hi there") == 1
    assert session.last_id == {"lobby": "01ABC"}
    assert session.joined == {"lobby"}


def test_connect_url_with_query_identity_or_token() -> None:
    assert connect_url("ws://h:1/prod", "alice", "Alice A") == (
        "ws://h:1/prod?userId=alice&name=Alice+A"
    )
    url = connect_url("ws://h:1/prod", "alice", None, secret="s3cret")
    token = url.split("token=")[1]
    header, payload, signature = token.split(".")
    expected = hmac.new(b"s3cret", f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["sub"] == "alice" and claims["exp"] > 0
    assert json.loads(base64.urlsafe_b64decode(header + "=="))["alg"] == "HS256"


def test_mint_token_claims() -> None:
    token = mint_token("k", "bob", name="Bob", rooms=["team-*"], ttl_seconds=60, now=1000)
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims == {"sub": "bob", "exp": 1060, "name": "Bob", "rooms": ["team-*"]}


def test_endpoints_file(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.json"
    with pytest.raises(ClientError, match="start the sandbox"):
        endpoint_url(path, "us-east-1")
    path.write_text(
        json.dumps({"regions": {"us-east-1": {"websocket": "ws://x/prod"}}, "signingSecret": "s"})
    )
    assert endpoint_url(path, "us-east-1") == ("ws://x/prod", "s")
    with pytest.raises(ClientError, match="eu-west-1 is not in"):
        endpoint_url(path, "eu-west-1")
