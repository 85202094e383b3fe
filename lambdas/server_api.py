"""The server API (handler ``server_api.handler``): IAM-authorized calls of a team's backends.

HTTP API routes (payload 2.0, ``AWS_IAM``; docs/protocol.md, "Server API"):

* ``POST /server/rooms/{room}/messages`` ``{"body": <any JSON>, "sender": "<name>"}``
  -> 202 ``{"id"}``: published exactly like a client's ``send``
  (:func:`chat.bus.publish_message`), the sender being the system sender
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

Routing uses Powertools' HTTP API resolver (it is made for this: path
parameters, one function per route); errors are ``{"code", "message"}`` like
the HTTP fallback API's, and unexpected ones are 500 ``internal``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from chat import bus, clients, config, connection_store
from chat.claims import SYSTEM_USER_PREFIX
from chat.frames import (
    BAD_REQUEST,
    INTERNAL,
    TOO_LARGE,
    FrameFields,
    ProtocolError,
)
from chat.http_requests import decode_http_body
from chat.model import MAX_USER_ID_CHARS, Sender
from chat.observability import count, logger, metrics, tracer

__all__ = ["handler"]

_SENDER = re.compile(r"[A-Za-z0-9_.-]{1,64}")
STATUS = {BAD_REQUEST: 400, TOO_LARGE: 413, INTERNAL: 500}

app = APIGatewayHttpResolver()


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        headers={"cache-control": "no-store"},
    )


def _body_object() -> dict[str, Any]:
    event = app.current_event
    return decode_http_body(
        event.body,
        max_body_bytes=config.get_settings().max_body_bytes,
        is_base64=bool(event.is_base64_encoded),
    )


@app.post("/server/rooms/<room>/messages")
def publish(room: str) -> Response:
    checked_room = FrameFields({"room": unquote(room)}, None).room()
    obj = _body_object()
    sender_name = obj.get("sender")
    if not isinstance(sender_name, str) or not _SENDER.fullmatch(sender_name):
        raise ProtocolError(BAD_REQUEST, "'sender' must be 1-64 letters, digits, '_', '.' or '-'")
    settings = config.get_settings()
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


@app.post("/server/users/<user_id>/disconnect")
def disconnect(user_id: str) -> Response:
    user = unquote(user_id)
    if not 1 <= len(user) <= MAX_USER_ID_CHARS:
        raise ProtocolError(BAD_REQUEST, f"userId must be 1-{MAX_USER_ID_CHARS} characters")
    detail = {"userId": user, "originRegion": config.get_settings().region}
    try:
        bus.publish(bus.DISCONNECT_DETAIL_TYPE, detail)
    except bus.PublishError:
        raise ProtocolError(INTERNAL, "disconnect not accepted; please retry") from None
    count("ServerDisconnects")
    return _json(202, {"userId": user})


@app.exception_handler(ProtocolError)
def _protocol_error(error: ProtocolError) -> Response:
    logger.info("request answered with an error", extra={"code": error.code})
    count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
    return _json(STATUS.get(error.code, 400), {"code": error.code, "message": error.message})


@app.exception_handler(Exception)
def _unexpected(error: Exception) -> Response:
    logger.exception("request failed")
    count("InternalErrors")
    return _json(500, {"code": INTERNAL, "message": "internal error"})


@app.not_found
def _not_found(_: Exception) -> Response:
    return _json(404, {"code": BAD_REQUEST, "message": "no such resource"})


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
            clients.management().delete_connection(ConnectionId=connection_id)
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
    return app.resolve(event, context)
