"""A team's own client action, handled like the built-in ones (docs/extending.md).

``ChatDeployment.add_client_route`` gives a route key its own function; this
module is what that function's handler is made of::

    @client_action("whoami")
    def handler(request: ActionRequest) -> dict[str, Any]:
        connection = request.connection()
        return {"userId": connection.user_id}

The decorated function receives the validated frame and returns the reply's
fields; the decorator makes it a Lambda handler that answers through the
route response exactly like ClientMessageHandler, through the same steps
(:mod:`runtime.intake.frame_intake`): the frame is charged to the connection's and the
user's request budget before it is read (``rate_limited`` over it), its
envelope is checked by the runtime's own validation (a JSON object, ``ref``,
``action`` equal to the route key; a ``body`` field is checked against
``MAX_BODY_BYTES`` by ``request.checked.body(...)``), a connection whose token
has expired gets ``token_expired`` and is closed, and a reply over API
Gateway's message limit becomes ``internal`` "reply too large". Every failure
is the protocol's ``error`` frame with the ``ref`` echoed
(:class:`runtime.protocol.frames.ProtocolError` raised by the function included), anything
unexpected is ``internal`` (logged with the exception, never with the frame),
and ``Requests`` / ``ClientErrors`` / ``InternalErrors`` are counted. It never
raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.intake import frame_intake
from multiregion_chat.runtime.intake.frame_state import FrameState
from multiregion_chat.runtime.platform.observability import count, logger, metrics
from multiregion_chat.runtime.protocol.frames import (
    BAD_REQUEST,
    INTERNAL,
    FrameFields,
    ProtocolError,
    error_frame,
    frame,
)
from multiregion_chat.runtime.store.connection_store import Connection

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
    state: FrameState | None = field(default=None, repr=False)

    def connection(self) -> Connection:
        """The connection's record (user, name, rooms), as read with the frame;
        ``internal`` error without one."""
        found = self.state.connection if self.state is not None else None
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
                assert request.state is not None
                expired = frame_intake.expired_reply(request.state, ref)
                if expired is not None:
                    return frame_intake.route_response(expired)
                fields = function(request)
                reply = frame(action, ref, **fields)
            except ProtocolError as error:
                logger.info("request answered with an error", extra={"code": error.code})
                count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
                error.ref = error.ref or ref
                reply = error.to_frame()  # rate_limited carries retryAfterMs
            except Exception:
                logger.exception("request failed")
                count("InternalErrors")
                reply = error_frame(INTERNAL, "internal error", ref)
            return frame_intake.route_response(reply)

        handler.__wrapped_action__ = function  # type: ignore[attr-defined]
        return handler

    return decorate


def _request(action: str, event: dict[str, Any]) -> ActionRequest:
    request_context = event.get("requestContext") or {}
    logger.append_keys(connectionId=request_context.get("connectionId"), action=action)
    intake = frame_intake.intake(event)
    obj, ref, sent_action = intake.fields, intake.ref, intake.action
    if sent_action != action:
        raise ProtocolError(BAD_REQUEST, f"this route serves action {action!r}", ref)
    fields = {key: value for key, value in obj.items() if key not in ("action", "ref")}
    return ActionRequest(
        action=action,
        connection_id=intake.state.connection_id,
        ref=ref,
        fields=fields,
        checked=FrameFields(obj, ref),
        state=intake.state,
    )
