"""Every client action (handler ``runtime.handlers.client_message_handler.handler``).

Invoked for the ``join``, ``leave``, ``send``, ``history``, ``presence``,
``ping``, ``refresh``, ``upload``, ``download`` and ``$default`` routes, all with
route responses: the returned ``{"statusCode": 200, "body": <frame>}`` is sent back
to the client as the direct reply. The frame's own ``action`` selects the operation (it equals the
route key, except on ``$default``, where it is unknown, missing or the body
is not JSON), so the function behaves the same behind any route.

The handler never raises and closes a connection in one case only: its
token's ``exp`` has passed (:mod:`runtime.auth.token_expiry`: a ``token_expired``
error frame, then ``DeleteConnection``). Otherwise protocol errors become
``error`` frames with their code, anything unexpected becomes an ``internal``
error frame (logged with the exception, never with the body).

A connection without a META item (it never completed ``$connect``, or was
cleaned up after a 410 / expired) cannot ``join`` or ``ping``: the reply is
``internal`` with the message "connection is not registered; reconnect",
because the client did nothing wrong and the only remedy is a new connection
(``bad_request`` would blame the frame). ``send``/``history``/``presence``
only need the membership, ``leave`` works either way.

``join`` of a room the connection's token does not allow (its ``rooms``
patterns, kept in META as ``allowedRooms``) answers ``forbidden``; the
connection stays up. ``send``/``history``/``presence`` need a membership, which
only an allowed ``join`` creates.

``joined`` and ``presence`` carry one page of the member list (``limit`` /
``memberLimit``, ``cursor``; ``next`` / ``membersNext`` when more follow),
``memberCount`` and ``live`` (False: the room is above
``PRESENCE_LIVE_MAX_MEMBERS`` and no ``member`` frames are pushed;
:mod:`runtime.presence.roster`).

Every frame first goes through :mod:`runtime.intake.frame_intake`: one consistent read
of the sender's budget, META and sequence (:mod:`runtime.intake.frame_state`), the
charge to the connection's and the user's request budget
(:mod:`runtime.quota.client_budget`) before the frame is read at all (each one costs an
invocation, whatever it asks, so counting them all is both simplest and what
bounds the cost; over budget: ``rate_limited`` with ``retryAfterMs`` and
nothing else happens), a length cap, one linear decode, and the token expiry.

A ``send`` to a room with at most ``LOCAL_FAST_PATH_MAX_MEMBERS`` local members is delivered to them
by this handler once the bus accepted it, before the ``ack``
(:mod:`runtime.delivery.local_delivery`). A ``join`` that would put the connection in more than
``MAX_ROOMS_PER_CONNECTION`` rooms answers ``too_many_rooms``. ``history`` and ``joined.missed``
stop before the reply would pass ``MAX_REPLY_BYTES`` and say ``more``
(:mod:`runtime.protocol.reply_limits`).

``join`` and ``leave`` publish ``chat.presence`` events on the user's presence transitions in this
region, and ``ping`` renews the announcement when it is due (:mod:`runtime.presence.transitions`);
presence publishing never changes the reply.

``upload`` and ``download`` (attachments, :mod:`runtime.attachments.transfers`) need a
membership like ``send``; ``upload`` also takes one of the user's upload slots. A ``send``
whose body references an attachment is accepted only when the object is there, in that room,
uploaded by this user in this region and within ``MAX_ATTACHMENT_BYTES``.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.attachments import transfers
from multiregion_chat.runtime.auth import token_refresh
from multiregion_chat.runtime.delivery import local_delivery
from multiregion_chat.runtime.intake import frame_intake
from multiregion_chat.runtime.intake.frame_state import FrameState
from multiregion_chat.runtime.platform import bus, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger, metrics, tracer
from multiregion_chat.runtime.presence import roster, transitions
from multiregion_chat.runtime.protocol import frames, reply_limits
from multiregion_chat.runtime.protocol.chat_model import Sender
from multiregion_chat.runtime.protocol.claims import room_allowed
from multiregion_chat.runtime.protocol.frames import (
    FORBIDDEN,
    INTERNAL,
    NOT_MEMBER,
    TOKEN_INVALID,
    Download,
    History,
    Join,
    Leave,
    Ping,
    Presence,
    ProtocolError,
    Refresh,
    Request,
    Send,
    Upload,
    frame,
)
from multiregion_chat.runtime.store import (
    connection_store,
    history_store,
    room_store,
    sequence_store,
)

MAX_MISSED = 100
UNREGISTERED = "connection is not registered; reconnect"


def _not_member(room: str, ref: str | None) -> ProtocolError:
    return ProtocolError(NOT_MEMBER, f"not a member of room {room!r}; join it first", ref)


def _join(state: FrameState, request: Join, ref: str | None) -> dict[str, Any]:
    # The token's rooms (META ``allowedRooms``, read with the frame) decide.
    connection_id, connection = state.connection_id, state.connection
    if connection is None:
        count("UnknownConnections")
        raise ProtocolError(INTERNAL, UNREGISTERED, ref)
    if not room_allowed(connection.allowed_rooms, request.room):
        count("ForbiddenRequests")
        raise ProtocolError(FORBIDDEN, f"your token does not allow room {request.room!r}", ref)
    max_rooms = runtime_settings.get_settings().max_rooms_per_connection
    try:
        reply_limits.check_room_cap(connection.rooms, request.room, max_rooms, ref)
    except reply_limits.TooManyRoomsError:
        count("RoomCapRefused")
        raise
    try:
        joined = connection_store.join_room(connection_id, request.room, max_rooms)
    except connection_store.UnknownConnectionError:
        count("UnknownConnections")
        raise ProtocolError(INTERNAL, UNREGISTERED, ref) from None
    except connection_store.RoomCapReachedError:  # a join racing this one took the last place
        count("RoomCapRefused")
        raise reply_limits.TooManyRoomsError(max_rooms, ref) from None
    transitions.after_join(connection_id, request.room, joined)
    page = _member_page(request.room, request.member_limit, None)
    reply = frame(
        "joined",
        ref,
        room=request.room,
        members=page["members"],
        missed=[],
        more=False,
        memberCount=page["memberCount"],
        live=page["live"],
        **({"membersNext": page["next"]} if "next" in page else {}),
    )
    if request.after is not None:
        missed, more = history_store.query_messages(request.room, request.after, MAX_MISSED)
        reply["missed"], cut = reply_limits.fit_messages(reply, "missed", missed)
        reply["more"] = more or cut
    return reply


def _leave(connection_id: str, request: Leave, ref: str | None) -> dict[str, Any]:
    member = connection_store.leave_room(connection_id, request.room)
    if member is None:
        raise _not_member(request.room, ref)
    transitions.after_leave(request.room, member, connection_id)
    return frame("left", ref, room=request.room)


def _member(state: FrameState, room: str, ref: str | None) -> Sender:
    """The connection as a member of ``room``; ``not_member`` when it is not one."""
    sender = state.member(room)
    if sender is None:
        raise _not_member(room, ref)
    return sender


def _sender(state: FrameState, request: Send, ref: str | None) -> Sender:
    sender = _member(state, request.room, ref)
    transfers.check_reference(request.room, sender.user_id, request.body, ref)
    return sender


def _publish(request: Send, sender: Sender, ref: str | None, message_id: str | None) -> str:
    try:
        message = bus.publish_message(request.room, sender, request.body, message_id)
    except bus.PublishError:
        # Never acknowledge what the bus did not accept (docs/protocol.md).
        raise ProtocolError(INTERNAL, "message not accepted; please retry", ref) from None
    # Only once the bus has it, so every other region gets it too (runtime.delivery.local_delivery).
    local_delivery.deliver_locally(message)
    return message.id


def _send(state: FrameState, request: Send, ref: str | None) -> dict[str, Any]:
    message_id = _publish(request, _sender(state, request, ref), ref, None)
    return frame("ack", ref, room=request.room, id=message_id)


def _send_in_order(
    state: FrameState, request: Send, ref: str | None, seq: int, budget_s: float | None
) -> dict[str, Any]:
    """A numbered ``send``: accepted in the connection's ``seq`` order
    (:mod:`runtime.store.sequence_store`).

    The membership and the sequence were read with the frame, so the turn itself (claim,
    publish, commit) holds up the sends behind it as briefly as possible.
    """
    key = sequence_store.connection_key(state.connection_id)
    try:
        sender = _sender(state, request, ref)
    except ProtocolError as error:
        raise sequence_store.reject(key, seq, error, budget_s, state.sequence_item) from None
    message_id = sequence_store.accept(
        key,
        seq,
        lambda chosen: _publish(request, sender, ref, chosen),
        ref,
        budget_s,
        state.sequence_item,
        sequence_store.message_digest(request.room, request.body),
    )
    return frame("ack", ref, room=request.room, id=message_id, seq=seq)


def _refused_in_order(
    state: FrameState, obj: dict[str, Any], error: ProtocolError, budget_s: float | None
) -> ProtocolError:
    """A ``send`` with a ``seq`` refused by validation still takes its place in the order.

    Only frames that were charged get here: an over-budget frame never touches the order.
    """
    if obj.get("action") != "send":
        return error
    try:
        seq = sequence_store.read_seq(obj)
    except ProtocolError:
        return error
    if seq is None:
        return error
    key = sequence_store.connection_key(state.connection_id)
    return sequence_store.reject(key, seq, error, budget_s, state.sequence_item)


def _history(state: FrameState, request: History, ref: str | None) -> dict[str, Any]:
    _member(state, request.room, ref)
    messages, more = history_store.query_messages(request.room, request.after, request.limit)
    reply = frame("history", ref, room=request.room, messages=[], more=False)
    reply["messages"], cut = reply_limits.fit_messages(reply, "messages", messages)
    reply["more"] = more or cut
    return reply


def _member_page(room: str, limit: int, cursor: str | None) -> dict[str, Any]:
    """``members`` (one page), ``next`` (only when more follow), ``memberCount``, ``live``."""
    room_count = roster.read(room)
    members, next_cursor = room_store.room_members_page(room, limit, cursor)
    page: dict[str, Any] = {"members": members}
    if next_cursor is not None:
        page["next"] = next_cursor
    page["memberCount"] = room_count.total
    page["live"] = roster.is_live(room_count)
    return page


def _presence(state: FrameState, request: Presence, ref: str | None) -> dict[str, Any]:
    _member(state, request.room, ref)
    return frame(
        "presence",
        ref,
        room=request.room,
        **_member_page(request.room, request.limit, request.cursor),
    )


def _upload(state: FrameState, request: Upload, ref: str | None) -> dict[str, Any]:
    sender = _member(state, request.room, ref)
    slot = transfers.upload_slot(request, sender.user_id, ref)
    return frame("upload_slot", ref, room=request.room, **slot)


def _download(state: FrameState, request: Download, ref: str | None) -> dict[str, Any]:
    _member(state, request.room, ref)
    return frame(
        "download_url",
        ref,
        room=request.room,
        key=request.key,
        **transfers.download_url(request, ref),
    )


def _ping(connection_id: str, ref: str | None) -> dict[str, Any]:
    try:
        _, due = connection_store.refresh_connection(connection_id)
    except connection_store.UnknownConnectionError:
        count("UnknownConnections")
        raise ProtocolError(INTERNAL, UNREGISTERED, ref) from None
    transitions.renew(connection_id, due)
    return frame("pong", ref)


def _refresh(connection_id: str, request: Refresh, ref: str | None) -> dict[str, Any]:
    try:
        claims = token_refresh.refresh(connection_id, request.token)
    except token_refresh.RefreshRefused as error:
        count("RefusedRefreshes")
        raise ProtocolError(TOKEN_INVALID, str(error), ref) from None
    count("Refreshes")
    return frame("refreshed", ref, expiresAt=claims.expires_at)


def dispatch(state: FrameState, request: Request, ref: str | None) -> dict[str, Any]:
    """Run one validated request; returns the reply frame or raises ProtocolError."""
    connection_id = state.connection_id
    match request:
        case Join():
            return _join(state, request, ref)
        case Leave():
            return _leave(connection_id, request, ref)
        case Send():
            return _send(state, request, ref)
        case History():
            return _history(state, request, ref)
        case Presence():
            return _presence(state, request, ref)
        case Ping():
            return _ping(connection_id, ref)
        case Refresh():
            return _refresh(connection_id, request, ref)
        case Upload():
            return _upload(state, request, ref)
        case Download():
            return _download(state, request, ref)
    raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)  # replies carry message bodies
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ref: str | None = None
    count("Requests")
    try:
        request_context = event.get("requestContext") or {}
        logger.append_keys(
            connectionId=request_context.get("connectionId"),
            routeKey=request_context.get("routeKey"),
        )
        budget_s = sequence_store.budget_seconds(context)
        frame = frame_intake.intake(event)
        state, ref = frame.state, frame.ref
        try:
            request = frames.parse_request(
                frame.fields,
                ref,
                frame.action,
                max_body_bytes=runtime_settings.get_settings().max_body_bytes,
            )
        except ProtocolError as error:
            raise _refused_in_order(state, frame.fields, error, budget_s) from None
        logger.append_keys(action=type(request).__name__.lower())
        expired = frame_intake.expired_reply(state, ref)
        if expired is not None:
            return frame_intake.route_response(expired)
        seq = sequence_store.read_seq(frame.fields, ref) if isinstance(request, Send) else None
        if isinstance(request, Send) and seq is not None:
            reply = _send_in_order(state, request, ref, seq, budget_s)
        else:
            reply = dispatch(state, request, ref)
    except ProtocolError as error:
        logger.info("request answered with an error", extra={"code": error.code})
        count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
        reply = error.to_frame()
    except Exception:
        logger.exception("request failed")
        count("InternalErrors")
        reply = frames.error_frame(INTERNAL, "internal error", ref)
    return frame_intake.route_response(reply)


init_phase.end()
