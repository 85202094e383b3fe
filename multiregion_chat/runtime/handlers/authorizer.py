"""Token authorizer (handler ``runtime.handlers.authorizer.handler``) for both APIs of a region.

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
  ``Authorization: Bearer <jwt>`` header, the scheme spelled exactly
  ``Bearer`` followed by one space (RFC 6750's spelling): API Gateway caches
  results per header value, so every other spelling of one token would be
  another cache entry and another authorizer call. The answer is
  ``{"isAuthorized": bool, "context": {userId, name?, rooms}}`` (API Gateway
  answers ``false`` with 403); HttpHandler reads the context from
  ``requestContext.authorizer.lambda``.

Both answers are built here (:func:`_policy`, :func:`_simple`), not with
Powertools' authorizer response classes: their module is inside the
``utilities.data_classes`` package, whose ``__init__`` imports every event
class of every service (about 10 ms of the authorizer's cold start,
``python -X importtime``) for two dictionaries of a few keys.

``rooms`` in the context is a JSON string (authorizer context values must be
scalars): the token's list of room patterns, or ``null`` when every room is
allowed. Verification is :func:`runtime.auth.tokens.verify` with one of two key
sources, chosen by the environment (:mod:`runtime.auth.token_keys`, shared with
ClientMessageHandler's ``refresh``; docs/contracts.md):

* ``JWT_ISSUER`` unset: HS256 with the signing secret, read with Powertools
  Parameters from Secrets Manager (name in ``SIGNING_SECRET_NAME``), cached
  for 5 minutes per execution environment. A failure to read it raises (API
  Gateway answers 500): an outage of Secrets Manager must not look like a bad
  token.
* ``JWT_ISSUER`` set: RS256/ES256 tokens of that issuer (``JWT_AUDIENCE``),
  keys from its JWKS (``JWKS_URL`` or discovered; runtime.auth.jwks), identity
  claims mapped by ``JWT_USER_ID_CLAIM``, ``JWT_NAME_CLAIM``,
  ``JWT_ROOMS_CLAIM``, ``JWT_DEFAULT_ROOMS``.

``MAX_TOKEN_LIFETIME_SECONDS`` bounds every token's lifetime. Tokens are
never logged; only the reason a token was refused is.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import json
import re
import time
from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.auth import token_keys
from multiregion_chat.runtime.auth.token_keys import SECRET_MAX_AGE_SECONDS
from multiregion_chat.runtime.auth.tokens import Claims, InvalidTokenError, verify
from multiregion_chat.runtime.platform.observability import count, logger, metrics

__all__ = ["BEARER", "SECRET_MAX_AGE_SECONDS", "handler", "identity_context", "reset"]

BEARER = "Bearer "
_METHOD_ARN = re.compile(r"arn:[^:]+:execute-api:[^:]+:[^:]+:[^/]+/[^/]+/.+")


def reset() -> None:
    """Forget the policy and the cached JWKS (tests change the environment)."""
    token_keys.reset()


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
    if value is None or not value.startswith(BEARER):
        return None
    return value[len(BEARER) :]


def _check(token: object) -> Claims | None:
    policy = token_keys.policy()
    try:
        claims = verify(token, token_keys.keys(policy), time.time(), policy)
    except InvalidTokenError as error:
        logger.info("token refused", extra={"reason": str(error)})
        count("RefusedTokens")
        return None
    count("AuthorizedTokens")
    return claims


def _policy(
    principal: str, effect: str, method_arn: str, context: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REQUEST authorizer's IAM policy: ``effect`` on exactly the event's method ARN (its
    route: ``$connect``), the identity ``context`` with an Allow."""
    answer: dict[str, Any] = {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": effect, "Resource": [method_arn]}
            ],
        },
    }
    if context is not None:
        answer["context"] = context
    return answer


def _simple(claims: Claims | None) -> dict[str, Any]:
    """The HTTP API's simple response (payload format 2.0)."""
    if claims is None:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": identity_context(claims)}


def _websocket(event: dict[str, Any]) -> dict[str, Any]:
    query = event.get("queryStringParameters") or {}
    claims = _check(query.get("token") if isinstance(query, dict) else None)
    method_arn = event["methodArn"]
    if claims is None:
        return _policy("unauthorized", "Deny", method_arn)  # API Gateway: 403
    return _policy(claims.user_id, "Allow", method_arn, identity_context(claims))


def _http(event: dict[str, Any]) -> dict[str, Any]:
    return _simple(_check(_bearer(event)))


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
    method_arn = event.get("methodArn")
    if isinstance(method_arn, str) and _METHOD_ARN.fullmatch(method_arn):
        logger.append_keys(api="websocket", methodArn=method_arn)
        return _websocket(event)
    logger.warning("not an API Gateway REQUEST authorizer event")
    count("MalformedEvents")
    raise Exception("Unauthorized")


init_phase.end()
