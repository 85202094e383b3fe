"""The steps every client frame goes through before its action runs, and its reply after.

ClientMessageHandler and a team's own actions (:mod:`runtime.intake.extension`) share them, so a
team-added action is charged, expiry-checked and reply-fitted exactly like ``ping``:

1. the sender's items are read once (:mod:`runtime.intake.frame_state`);
2. the frame is charged to its connection and user (:mod:`runtime.quota.client_budget`) before it is
   read at all: every frame costs an invocation, valid or not (docs/protocol.md, "Limits");
3. its length is checked, then it is decoded once (linear: :mod:`runtime.protocol.json_codec`);
4. a connection whose token has expired gets ``token_expired`` and is closed
   (:mod:`runtime.auth.token_expiry`);
5. the reply is sent only if it fits API Gateway's message limit
(:mod:`runtime.protocol.reply_limits`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from multiregion_chat.runtime.auth import token_expiry
from multiregion_chat.runtime.auth.identity import InvalidIdentityError, resolve
from multiregion_chat.runtime.intake import frame_state
from multiregion_chat.runtime.intake.frame_state import FrameState
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.protocol import frames, reply_limits
from multiregion_chat.runtime.protocol.frames import INTERNAL, ProtocolError
from multiregion_chat.runtime.quota import client_budget
from multiregion_chat.runtime.store import sequence_store

__all__ = ["Intake", "expired_reply", "intake", "route_response"]


class Intake(NamedTuple):
    """A charged, decoded frame: ``fields`` is its JSON object, ``ref`` and ``action`` its
    envelope, ``state`` what was read about its sender."""

    state: FrameState
    fields: dict[str, Any]
    ref: str | None
    action: str


def _connection_id(event: dict[str, Any]) -> str:
    connection_id = (event.get("requestContext") or {}).get("connectionId")
    if not isinstance(connection_id, str) or not connection_id:
        raise RuntimeError("event without requestContext.connectionId")
    return connection_id


def _user_id(request_context: dict[str, Any], connection_id: str) -> str:
    """The user of the connection, from the ``$connect`` authorizer's context (API
    Gateway passes it with every frame); a connection without one is its own user."""
    try:
        return resolve(request_context.get("authorizer")).user_id
    except InvalidIdentityError:
        return f"connection:{connection_id}"


def _over_budget(state: FrameState, user_id: str) -> reply_limits.RateLimitedFrameError | None:
    try:
        client_budget.enforce(user_id, state.connection_id, state.rate_item)
    except client_budget.RateLimitedError as error:
        return reply_limits.RateLimitedFrameError(error.retry_after_ms, error.message, None)
    return None


def intake(event: dict[str, Any]) -> Intake:
    """Steps 1-3 for one route event; ProtocolError (``rate_limited``, ``too_large``,
    ``bad_request``) with the frame's ``ref`` where it could be read."""
    connection_id = _connection_id(event)
    request_context = event.get("requestContext") or {}
    user_id = _user_id(request_context, connection_id)
    # The connection's sequence is read with the rest: a numbered send then needs no read
    # of its own, and any other frame pays one more item in the same request.
    state = frame_state.read_frame_state(
        connection_id, user_id, sequence_store.connection_key(connection_id)
    )
    over_budget = _over_budget(state, user_id)
    raw = event.get("body")
    try:
        frames.check_frame_size(raw, runtime_settings.get_settings().max_body_bytes)
        fields, ref, action = frames.parse_envelope(
            raw, is_base64=bool(event.get("isBase64Encoded"))
        )
    except ProtocolError as invalid:
        raise over_budget or invalid from None
    if over_budget is not None:
        over_budget.ref = ref  # the one decode above read it for the reply
        raise over_budget
    return Intake(state=state, fields=fields, ref=ref, action=action)


def expired_reply(state: FrameState, ref: str | None) -> dict[str, Any] | None:
    """Step 4: the ``token_expired`` frame when the token has expired (the connection is
    closed after it is pushed), else None."""
    connection = state.connection
    if connection is None or not token_expiry.has_passed(connection.token_expires_at):
        return None
    logger.info("token expired; closing the connection")
    count("ExpiredConnections")
    reply = token_expiry.expired_frame(ref)
    token_expiry.close(state.connection_id, reply)
    return reply


def route_response(reply: dict[str, Any]) -> dict[str, Any]:
    """Step 5: the route response carrying ``reply``, or ``internal`` "reply too large"."""
    body = reply_limits.encode_reply(reply)
    if len(body.encode("utf-8")) > reply_limits.MAX_REPLY_BYTES:
        # API Gateway would not deliver it: say so rather than leave the client waiting.
        logger.error("reply over the message size limit", extra={"type": reply.get("type")})
        count("OversizedReplies")
        body = reply_limits.encode_reply(
            frames.error_frame(INTERNAL, "reply too large", reply.get("ref"))
        )
    return {"statusCode": 200, "body": body}
