"""Token authorizer (handler ``authorizer.handler``) for both APIs of a region.

* WebSocket ``$connect``: a Lambda REQUEST authorizer. The token is the
  ``token`` query parameter (browsers cannot set headers on a WebSocket). A
  valid token answers an IAM policy that allows ``execute-api:Invoke`` on the
  event's ``methodArn``, with the context ``{userId, name?, rooms}``; API
  Gateway hands that context to every later event of the connection as
  ``requestContext.authorizer``. An invalid token gets the same policy with
  ``Deny``: API Gateway answers 403, no connection opens and
  ConnectionHandler never runs. (A missing token is API Gateway's own 401:
  the authorizer is not even invoked.) Deny rather than raising
  ``Exception("Unauthorized")`` (API Gateway's 401) on purpose: a raised
  exception is a Lambda error, and the ``AuthorizerErrors`` alarm must mean
  "the authorizer is broken" (e.g. cannot read the secret), not "a client
  sent an expired token".
* HTTP API (payload format 2.0, simple responses): the token is the
  ``Authorization: Bearer <jwt>`` header. The answer is
  ``{"isAuthorized": bool, "context": {userId, name?, rooms}}`` (API Gateway
  answers ``false`` with 403); HttpHandler reads the context from
  ``requestContext.authorizer.lambda``.

``rooms`` in the context is a JSON string (authorizer context values must be
scalars): the token's list of room patterns, or ``null`` when the token has no
``rooms`` claim (every room). Verification is :func:`chat.tokens.verify`
(HS256 only, constant-time signature check, ``sub``/``exp`` required).

The signing secret is read with Powertools Parameters from Secrets Manager
(name in ``SIGNING_SECRET_NAME``), cached for 5 minutes per execution
environment. A failure to read it raises (API Gateway answers 500): an outage
of Secrets Manager must not look like a bad token. Tokens are never logged;
only the reason a token was refused is.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat.observability import count, logger, metrics
from chat.tokens import Claims, InvalidTokenError, verify

__all__ = ["SECRET_MAX_AGE_SECONDS", "handler", "identity_context"]

SECRET_MAX_AGE_SECONDS = 300
_BEARER = "bearer "


def _secret() -> str | bytes:
    name = os.environ.get("SIGNING_SECRET_NAME", "")
    if not name:
        raise RuntimeError("SIGNING_SECRET_NAME is not set")
    value = parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(value, str | bytes):  # pragma: no cover - get_secret returns str/bytes
        raise RuntimeError("the signing secret is not a string")
    return value


def identity_context(claims: Claims) -> dict[str, str]:
    """The authorizer context both APIs pass on to the handlers (docs/contracts.md)."""
    context = {
        "userId": claims.user_id,
        "rooms": json.dumps(list(claims.rooms) if claims.rooms is not None else None),
        # ConnectionHandler records it; ClientMessageHandler closes the
        # connection once it has passed (docs/protocol.md, "token_expired").
        "expiresAt": str(claims.expires_at),
    }
    if claims.name:
        context["name"] = claims.name
    return context


def _header(headers: Any, wanted: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def _bearer(event: dict[str, Any]) -> str | None:
    value = _header(event.get("headers"), "authorization")
    if value is None or not value.lower().startswith(_BEARER):
        return None
    return value[len(_BEARER) :].strip()


def _check(token: object) -> Claims | None:
    try:
        claims = verify(token, _secret(), time.time())
    except InvalidTokenError as error:
        logger.info("token refused", extra={"reason": str(error)})
        count("RefusedTokens")
        return None
    count("AuthorizedTokens")
    return claims


def _policy(principal: str, effect: str, method_arn: str) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": method_arn}
            ],
        },
    }


def _websocket(event: dict[str, Any]) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    claims = _check(query.get("token") if isinstance(query, dict) else None)
    if claims is None:
        return _policy("unauthorized", "Deny", event["methodArn"])  # API Gateway: 403
    return {
        **_policy(claims.user_id, "Allow", event["methodArn"]),
        "context": identity_context(claims),
    }


def _http(event: dict[str, Any]) -> dict[str, Any]:
    claims = _check(_bearer(event))
    if claims is None:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": identity_context(claims)}


@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # No tracer decorator: capturing the response would put the context (or,
    # for errors, the event) into traces; the function still has X-Ray active.
    if not isinstance(event, dict):
        count("MalformedEvents")
        raise Exception("Unauthorized")  # not an API Gateway event: a wiring error
    if event.get("version") == "2.0" or "routeArn" in event:
        logger.append_keys(api="http", routeArn=event.get("routeArn"))
        return _http(event)
    if "methodArn" in event:
        logger.append_keys(api="websocket", methodArn=event.get("methodArn"))
        return _websocket(event)
    logger.warning("not an API Gateway REQUEST authorizer event")
    count("MalformedEvents")
    raise Exception("Unauthorized")
