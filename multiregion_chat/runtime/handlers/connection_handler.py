"""WebSocket ``$connect`` / ``$disconnect`` (handler
``runtime.handlers.connection_handler.handler``).

``$connect`` runs only after the token authorizer accepted the handshake, and
refuses it with 429 when the user already has ``MAX_CONNECTIONS_PER_USER`` open
connections in this region (:mod:`runtime.quota.connection_cap`); the
user is the authorizer's context (docs/contracts.md, "Identity"): ``userId``,
optional ``name`` and ``rooms`` (the token's room patterns, stored in META as
``allowedRooms`` for ``join`` to check). There is no query-string identity: a
``$connect`` without a valid authorizer context is refused with 400. The
connection's META item lives ``CONNECTION_TTL_SECONDS``, refreshed by ``join``
and ``ping``.

``$disconnect`` deletes the connection's memberships and META (idempotent: a
connection already cleaned up, e.g. by the fan-out's 410 handling, is fine),
then publishes a ``chat.presence`` "left" for every room where that was the
user's last connection in this region (:mod:`runtime.presence.transitions`; a failed
publish is logged and counted, never fails the disconnect).

The handler never raises: a storage failure at ``$connect`` returns 500 (the
client may retry the handshake); at ``$disconnect`` it is logged and TTL
removes the records later.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.auth.identity import (
    MAX_NAME_CHARS,
    MAX_USER_ID_CHARS,
    Identity,
    InvalidIdentityError,
    resolve,
)
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger, metrics, tracer
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.quota import connection_cap
from multiregion_chat.runtime.store import connection_store

__all__ = ["MAX_NAME_CHARS", "MAX_USER_ID_CHARS", "InvalidIdentityError", "handler", "identity"]


def identity(event: dict[str, Any]) -> Identity:
    """The authorizer's identity of a ``$connect`` event, or InvalidIdentityError."""
    return resolve((event.get("requestContext") or {}).get("authorizer"))


def _connect(event: dict[str, Any], connection_id: str) -> dict[str, Any]:
    try:
        who = identity(event)
    except InvalidIdentityError as error:
        logger.info("connection refused", extra={"reason": str(error)})
        count("RefusedConnections")
        return {"statusCode": 400}
    cap = runtime_settings.get_settings().max_connections_per_user
    if not connection_cap.admit(who.user_id, connection_id, cap):
        logger.info("connection refused: over the user's connections", extra={"cap": cap})
        count("ConnectionCapRefused")
        return {"statusCode": 429}
    try:
        connection_store.put_connection(
            connection_id, who.user_id, who.name, who.rooms, who.expires_at
        )
    except Exception:
        connection_cap.release(who.user_id, connection_id)  # the handshake fails: not open
        raise
    logger.info("connected", extra={"userId": who.user_id})
    count("Connections")
    return {"statusCode": 200}


def _disconnect(connection_id: str) -> dict[str, Any]:
    cleanup = transitions.cleanup_connection(connection_id)
    if cleanup.user_id is not None:
        connection_cap.release(cleanup.user_id, connection_id)
    logger.info("disconnected", extra={"deletedItems": cleanup.deleted})
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


init_phase.end()
