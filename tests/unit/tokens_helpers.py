"""Builders for the authorizer's tests (test_authorizer.py, test_token_front_door.py): HS256
tokens over any header and payload, claims, the events API Gateway sends the authorizer, and
the signing secret in moto's Secrets Manager. Tokens are built by calling these when a test
runs, never at collection: a token's ``exp`` is relative to now."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from multiregion_chat.runtime.auth import tokens
from multiregion_chat.runtime.auth.tokens import Claims, HmacKeys, TokenPolicy
from multiregion_chat.runtime.handlers import authorizer
from tests.unit.conftest import REGION, FakeLambdaContext

SECRET = "test-signing-secret-0123456789abcdef"  # 32+ bytes: no InsecureKeyLengthWarning
SECRET_NAME = "chat/test/token-signing-secret"
METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/test/$connect"
ROUTE_ARN = "arn:aws:execute-api:us-east-1:123456789012:http123/$default/POST/rooms/lobby/messages"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(
    header: bytes, payload: bytes, *, secret: str = SECRET, digest: Any = hashlib.sha256
) -> str:
    """A token over any header and payload bytes, signed with HMAC ``digest``."""
    head, body = b64(header), b64(payload)
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), digest).digest()
    return f"{head}.{body}.{b64(signature)}"


def forge(
    claims: dict[str, Any],
    *,
    header: dict[str, Any] | None = None,
    secret: str = SECRET,
    digest: Any = hashlib.sha256,
) -> str:
    """A JWT with any header and claims (JSON-encoded), signed with HMAC ``digest``."""
    head = json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode()
    return signed(head, json.dumps(claims).encode(), secret=secret, digest=digest)


def good(**extra: Any) -> dict[str, Any]:
    """Valid claims (``alice``, 10 minutes left), with ``extra`` added or replaced."""
    return {"sub": "alice", "exp": int(time.time()) + 600, **extra}


def verify(
    token: object,
    secret: str | bytes = SECRET,
    now: float | None = None,
    policy: TokenPolicy | None = None,
) -> Claims:
    """``runtime.auth.tokens.verify`` with the HS256 keys of ``secret`` at ``now`` (default:
    now)."""
    at = time.time() if now is None else now
    return tokens.verify(token, HmacKeys.from_secret(secret), at, policy)


def ws_event(token: str | None) -> dict[str, Any]:
    """The WebSocket API's ``$connect`` REQUEST authorizer event (token in the query)."""
    return {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "queryStringParameters": {"token": token} if token is not None else None,
        "requestContext": {"routeKey": "$connect", "eventType": "CONNECT", "connectionId": "c1"},
    }


def http_event(authorization: str | None) -> dict[str, Any]:
    """The HTTP API's payload 2.0 authorizer event with this Authorization header."""
    headers = {"content-type": "application/json"}
    if authorization is not None:
        headers["authorization"] = authorization
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": ROUTE_ARN,
        "identitySource": [authorization] if authorization else [],
        "routeKey": "POST /rooms/{room}/messages",
        "headers": headers,
        "requestContext": {"http": {"method": "POST"}},
    }


def invoke(event: Any) -> Any:
    return authorizer.handler(event, FakeLambdaContext())


def both_apis_refuse(token: str) -> None:
    """The token is a Deny policy for the WebSocket API and ``isAuthorized: false`` for the
    HTTP API: a refusal, never a raised exception (a 500, paged by the AuthorizerErrors alarm)."""
    ws = invoke(ws_event(token))
    assert ws["principalId"] == "unauthorized"
    assert ws["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert invoke(http_event(f"Bearer {token}")) == {"isAuthorized": False}


@contextmanager
def signing_secret_stored(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The authorizer in HS256 mode with :data:`SECRET` in moto's Secrets Manager; yields
    the Secrets Manager client. Caches are cleared before and after."""
    monkeypatch.setenv("SIGNING_SECRET_NAME", SECRET_NAME)
    for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL", "MAX_TOKEN_LIFETIME_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    authorizer.reset()
    parameters.clear_caches()
    with mock_aws():
        manager = boto3.client("secretsmanager", region_name=REGION)
        manager.create_secret(Name=SECRET_NAME, SecretString=SECRET)
        yield manager
    parameters.clear_caches()
    authorizer.reset()
