"""A team's own client action, handled like the built-in ones (docs/extending.md).

``ChatDeployment.add_client_route`` gives a route key its own function; this
module is what that function's handler is made of::

    @client_action("whoami")
    def handler(request: ActionRequest) -> dict[str, Any]:
        connection = request.connection()
        return {"userId": connection.user_id}

The decorated function receives the validated frame and returns the reply's
fields; the decorator makes it a Lambda handler that answers through the
route response exactly like ClientMessageHandler: the frame's envelope is
checked by the runtime's own validation (:func:`chat.frames.parse_envelope`:
a JSON object, ``ref``, ``action`` equal to the route key; a ``body`` field
is checked against ``MAX_BODY_BYTES`` by ``request.checked.body(...)``),
every failure is the protocol's ``error`` frame with the ``ref`` echoed
(:class:`chat.frames.ProtocolError` raised by the function included), anything
unexpected is ``internal`` (logged with the exception, never with the frame),
and ``Requests`` / ``ClientErrors`` / ``InternalErrors`` are counted. It never
raises and never closes the connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from chat import connection_store
from chat.connection_store import Connection
from chat.frames import (
    BAD_REQUEST,
    INTERNAL,
    FrameFields,
    ProtocolError,
    error_frame,
    frame,
    parse_envelope,
)
from chat.observability import count, logger, metrics

__all__ = ["ActionRequest", "client_action"]

UNREGISTERED = "connection is not registered; reconnect"


@dataclass
class ActionRequest:
    """One validated frame of the action.

    Attributes:
        action: the route key (the frame's ``action``).
        connection_id: the WebSocket connection it came on.
        ref: the frame's ``ref`` (echoed in the reply), or None.
        fields: the frame's other fields, as sent (``action`` and ``ref`` removed).
        checked: typed access to the common fields (``room()``, ``after()``,
            ``limit()``, ...) with the built-in frames' rules and error codes.
    """

    action: str
    connection_id: str
    ref: str | None
    fields: dict[str, Any]
    checked: FrameFields = field(repr=False)

    def connection(self) -> Connection:
        """The connection's record (user, name, rooms); ``internal`` error without one."""
        found = connection_store.get_connection(self.connection_id)
        if found is None:
            count("UnknownConnections")
            raise ProtocolError(INTERNAL, UNREGISTERED, self.ref)
        return found


ActionFunction = Callable[[ActionRequest], dict[str, Any]]
LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def client_action(action: str) -> Callable[[ActionFunction], LambdaHandler]:
    """Make ``function`` the Lambda handler of the client action ``action``."""

    def decorate(function: ActionFunction) -> LambdaHandler:
        @logger.inject_lambda_context(
            correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
        )
        @metrics.log_metrics
        def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
            count("Requests")
            ref: str | None = None
            try:
                request = _request(action, event)
                ref = request.ref
                fields = function(request)
                reply = frame(action, ref, **fields)
            except ProtocolError as error:
                logger.info("request answered with an error", extra={"code": error.code})
                count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
                reply = error_frame(error.code, error.message, error.ref or ref)
            except Exception:
                logger.exception("request failed")
                count("InternalErrors")
                reply = error_frame(INTERNAL, "internal error", ref)
            return {"statusCode": 200, "body": json.dumps(reply, separators=(",", ":"))}

        handler.__wrapped_action__ = function  # type: ignore[attr-defined]
        return handler

    return decorate


def _request(action: str, event: dict[str, Any]) -> ActionRequest:
    request_context = event.get("requestContext") or {}
    connection_id = request_context.get("connectionId")
    logger.append_keys(connectionId=connection_id, action=action)
    if not isinstance(connection_id, str) or not connection_id:
        raise RuntimeError("event without requestContext.connectionId")
    obj, ref, sent_action = parse_envelope(
        event.get("body"), is_base64=bool(event.get("isBase64Encoded"))
    )
    if sent_action != action:
        raise ProtocolError(BAD_REQUEST, f"this route serves action {action!r}", ref)
    fields = {key: value for key, value in obj.items() if key not in ("action", "ref")}
    return ActionRequest(
        action=action,
        connection_id=connection_id,
        ref=ref,
        fields=fields,
        checked=FrameFields(obj, ref),
    )
