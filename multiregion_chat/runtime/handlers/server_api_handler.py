"""The server API (handler ``runtime.handlers.server_api_handler.handler``): IAM-authorized calls of
a team's backends.

HTTP API routes (payload 2.0, ``AWS_IAM``; docs/protocol.md, "Server API"):

* ``POST /server/rooms/{room}/messages`` ``{"body": <any JSON>, "sender": "<name>"}``
  -> 202 ``{"id"}``: published exactly like a client's ``send``
  (:func:`runtime.platform.bus.publish_message`), the sender being the system sender
  ``{"userId": "system:<name>", "name": "<name>"}`` (the authorizer refuses
  tokens whose ``sub`` starts with ``system:``, so no user can pose as one).
  Its ``source`` is ``EVENT_SOURCE`` + ``.server``: the only events
  EventBusMessageHandler takes a ``system:`` sender from, and only this
  function's role may put them (the stacks' ``events:source`` condition).
  The room and body follow the ``send`` rules and codes (``too_large`` is 413);
  ``sender`` is 1-64 letters, digits, ``_``, ``.`` or ``-``.
* ``POST /server/users/{userId}/disconnect`` -> 202 ``{"userId"}``: puts a
  ``chat.disconnect`` event on the bus; the forwarding rules carry it to
  every region like any chat event.

Bus events (the region's ``chat.disconnect`` rule): every local connection
of the user (the ``ConnectionsByUser`` index) is closed with
``DeleteConnection``; API Gateway then runs ``$disconnect`` as for any close.
A connection already gone (410) is counted and skipped (its records expire);
any other failure raises, so EventBridge retries and then dead-letters the event.

Routing is two regular expressions over the path (:data:`_ROUTES`), not
Powertools' ``APIGatewayHttpResolver``: ``aws_lambda_powertools.event_handler``
imports every resolver it has (AppSync, Bedrock agents, OpenAPI, ...) and the
``utilities.data_classes`` package with every event class (about 13 ms of cold
start together, ``python -X importtime``), for two POST routes. As with the
resolver, the path is ``rawPath`` without the stage (unless ``$default``), an
unknown path or method is 404. Errors are ``{"code", "message"}`` like the HTTP
fallback API's (a 404 carries ``bad_request``), and unexpected ones are 500
``internal``.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, bus, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger, metrics, tracer
from multiregion_chat.runtime.protocol.chat_model import MAX_USER_ID_CHARS, Sender
from multiregion_chat.runtime.protocol.claims import SYSTEM_USER_PREFIX
from multiregion_chat.runtime.protocol.frames import (
    BAD_REQUEST,
    INTERNAL,
    TOO_LARGE,
    FrameFields,
    ProtocolError,
)
from multiregion_chat.runtime.protocol.http_requests import decode_http_body
from multiregion_chat.runtime.store import connection_store

__all__ = ["handler"]

_SENDER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STATUS = {BAD_REQUEST: 400, TOO_LARGE: 413, INTERNAL: 500}


def _json(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    """An HTTP API (payload 2.0) response with a JSON body."""
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", "cache-control": "no-store"},
        "body": json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        "isBase64Encoded": False,
    }


def _body_object(event: dict[str, Any]) -> dict[str, Any]:
    return decode_http_body(
        event.get("body"),
        max_body_bytes=runtime_settings.get_settings().max_body_bytes,
        is_base64=bool(event.get("isBase64Encoded")),
    )


def publish(room: str, event: dict[str, Any]) -> dict[str, Any]:
    checked_room = FrameFields({"room": unquote(room)}, None).room()
    obj = _body_object(event)
    sender_name = obj.get("sender")
    if not isinstance(sender_name, str) or not _SENDER.fullmatch(sender_name):
        raise ProtocolError(BAD_REQUEST, "'sender' must be 1-64 letters, digits, '_', '.' or '-'")
    settings = runtime_settings.get_settings()
    body = FrameFields(obj, None).body(settings.max_body_bytes)
    sender = Sender(
        user_id=f"{SYSTEM_USER_PREFIX}{sender_name}", name=sender_name, region=settings.region
    )
    try:
        message = bus.publish_message(checked_room, sender, body, server=True)
    except bus.PublishError:
        raise ProtocolError(INTERNAL, "message not accepted; please retry") from None
    count("ServerMessages")
    return _json(202, {"id": message.id})


def disconnect(user_id: str, event: dict[str, Any]) -> dict[str, Any]:
    user = unquote(user_id)
    if not 1 <= len(user) <= MAX_USER_ID_CHARS:
        raise ProtocolError(BAD_REQUEST, f"userId must be 1-{MAX_USER_ID_CHARS} characters")
    detail = {"userId": user, "originRegion": runtime_settings.get_settings().region}
    try:
        bus.publish(bus.DISCONNECT_DETAIL_TYPE, detail)
    except bus.PublishError:
        raise ProtocolError(INTERNAL, "disconnect not accepted; please retry") from None
    count("ServerDisconnects")
    return _json(202, {"userId": user})


# (path pattern, the route's function of its one path parameter and the event): POST only.
_ROUTES: tuple[tuple[re.Pattern[str], Callable[[str, dict[str, Any]], dict[str, Any]]], ...] = (
    (re.compile(r"/server/rooms/([^/]+)/messages"), publish),
    (re.compile(r"/server/users/([^/]+)/disconnect"), disconnect),
)


def _path(event: dict[str, Any]) -> str:
    """``rawPath`` without the stage (a named stage prefixes it; ``$default`` does not)."""
    raw = event.get("rawPath")
    path = raw if isinstance(raw, str) else ""
    stage = (event.get("requestContext") or {}).get("stage")
    if isinstance(stage, str) and stage != "$default" and path.startswith(f"/{stage}/"):
        return path[len(stage) + 1 :]
    return path


def _resolve(event: dict[str, Any]) -> dict[str, Any]:
    method = ((event.get("requestContext") or {}).get("http") or {}).get("method")
    path = _path(event)
    try:
        for pattern, route in _ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and method == "POST":
                return route(match.group(1), event)
        return _json(404, {"code": BAD_REQUEST, "message": "no such resource"})
    except ProtocolError as error:
        logger.info("request answered with an error", extra={"code": error.code})
        count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
        return _json(STATUS.get(error.code, 400), {"code": error.code, "message": error.message})
    except Exception:
        logger.exception("request failed")
        count("InternalErrors")
        return _json(500, {"code": INTERNAL, "message": "internal error"})


def disconnect_here(detail: object) -> dict[str, Any]:
    """Close every connection of ``detail.userId`` in this region."""
    user = detail.get("userId") if isinstance(detail, dict) else None
    if not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_ID_CHARS:
        # A retry would fail the same way: count it and let the event go.
        logger.warning("malformed chat.disconnect event")
        count("MalformedEvents")
        return {"status": "malformed"}
    closed = gone = 0
    for connection_id in connection_store.user_connection_ids(user):
        try:
            aws_clients.management().delete_connection(ConnectionId=connection_id)
            closed += 1
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "GoneException":
                raise  # EventBridge retries the event; closing twice is harmless
            gone += 1
    count("ConnectionsClosed", closed)
    count("GoneConnections", gone)
    logger.info("user disconnected here", extra={"closed": closed, "gone": gone})
    return {"status": "disconnected", "closed": closed, "gone": gone}


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)  # responses name users
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("detail-type") == bus.DISCONNECT_DETAIL_TYPE:
        return disconnect_here(event.get("detail"))
    return _resolve(event)


init_phase.end()
