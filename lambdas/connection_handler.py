"""WebSocket ``$connect`` / ``$disconnect`` (handler ``connection_handler.handler``).

``$connect`` names the user (docs/contracts.md, "Identity at $connect"): the
``$connect`` authorizer's context wins when it carries ``userId``; otherwise
the query string's ``userId`` (1-128 characters) and optional ``name`` (at
most 64; empty counts as absent). Anything invalid refuses the handshake with
400. The connection's META item lives ``CONNECTION_TTL_SECONDS``, refreshed
by ``join`` and ``ping``.

``$disconnect`` deletes the connection's memberships and META (idempotent: a
connection already cleaned up, e.g. by the fan-out's 410 handling, is fine).

The handler never raises: a storage failure at ``$connect`` returns 500 (the
client may retry the handshake); at ``$disconnect`` it is logged and TTL
removes the records later.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat import store
from chat.observability import count, logger, metrics, tracer

MAX_USER_ID_CHARS = 128
MAX_NAME_CHARS = 64


class InvalidIdentityError(ValueError):
    """The connect request does not name a valid user."""


def identity(event: dict[str, Any]) -> tuple[str, str | None]:
    """``(userId, name)`` of a ``$connect`` event, or InvalidIdentityError."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if isinstance(authorizer, dict) and authorizer.get("userId") is not None:
        source = authorizer
    else:
        source = event.get("queryStringParameters") or {}
    user_id, name = source.get("userId"), source.get("name")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise InvalidIdentityError(f"userId must be 1-{MAX_USER_ID_CHARS} characters")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
        raise InvalidIdentityError(f"name must be at most {MAX_NAME_CHARS} characters")
    return user_id, name or None


def _connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    try:
        user_id, name = identity(event)
    except InvalidIdentityError as error:
        logger.info("connection refused", extra={"reason": str(error)})
        count("RefusedConnections")
        return {"statusCode": 400}
    store.put_connection(connection_id, user_id, name)
    logger.info("connected", extra={"userId": user_id})
    count("Connections")
    return {"statusCode": 200}


def _disconnect(connection_id: str) -> dict[str, Any]:
    deleted = store.delete_connection_records(connection_id)
    logger.info("disconnected", extra={"deletedItems": deleted})
    count("Disconnections")
    return {"statusCode": 200}


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request_context = event.get("requestContext") or {}
    event_type = request_context.get("eventType")
    connection_id = request_context.get("connectionId")
    logger.append_keys(connectionId=connection_id, eventType=event_type)
    try:
        if not isinstance(connection_id, str) or not connection_id:
            logger.warning("event without a connectionId")
            count("InvalidEvents")
            return {"statusCode": 400}
        if event_type == "CONNECT":
            return _connect(event, connection_id)
        if event_type == "DISCONNECT":
            return _disconnect(connection_id)
        logger.warning("unexpected event type")
        count("InvalidEvents")
        return {"statusCode": 400}
    except Exception:
        logger.exception("connection handler failed")
        count("InternalErrors")
        return {"statusCode": 500}
