"""Bus -> history -> local fan-out (handler ``runtime.handlers.event_bus_message_handler.handler``).

Invoked by the region's delivery rule for every chat event, local or
forwarded from another region. For ``chat.message``:

1. Validate the detail as strictly as a client frame (docs/contracts.md,
   "Bus events"): the fields' shapes, ``originRegion`` one of the deployment's
   regions (``CHAT_REGIONS``) and equal to ``sender.region``, identity fields
   within the token's limits (length, no control characters), the body within
   the JSON depth limit and ``MAX_BODY_BYTES`` (the ``send`` limit), a
   ``system:`` sender (or a look-alike, ``runtime.protocol.claims.is_system_user_id``)
   only with the server API's source (``EVENT_SOURCE`` + ``.server``), and
   the message id's time no later than now plus
   ``BUS_CLOCK_SKEW_SECONDS``. A malformed event is logged (without its body),
   counted (``MalformedEvents``) and dropped; raising would only make
   EventBridge retry an event that can never succeed. Detail types other
   than ``chat.message`` and ``chat.presence`` are counted as ``IgnoredEvents``.
2. Write the message to this region's history with
   ``attribute_not_exists(id)``. This write is the de-duplication point: if
   the id is already there the event is a duplicate (an EventBridge retry or a
   repeated forward), counted as ``DuplicateEvents`` and not delivered again.
   If the write itself fails the handler raises, so Lambda's async retries
   (and then the target's dead-letter queue) get another chance; nothing was
   delivered yet, so a retry cannot duplicate.
3. Push the ``message`` frame to every local connection in the room
   (:func:`runtime.delivery.broadcast.broadcast`: in this invocation, or as shard jobs
   for FanoutWorkers when the room is above ``FANOUT_SHARD_THRESHOLD``;
   the summary's status is then ``sharded``).

Delivery failures after the write are not raised. The message is durable in
history, so a client that missed it (a failed post, or a crash mid fan-out)
gets it by re-joining with ``after`` = the last id it saw, and the ``id``
lets it de-duplicate. Raising would not help anyway: the retried event would
find the history item and be discarded as a duplicate. Failures show up as
``FailedDeliveries`` (and ``FanoutErrors`` if the member query broke off).

For ``chat.presence`` (:mod:`runtime.presence.transitions` publishes it):

1. Validate (``MalformedEvents``), with the same rules for ``member`` and
   ``at`` (a forged ``at`` far in the future would make every later genuine
   event of that user stale; a ``system:`` member has no presence). An event older than
   ``CONNECTION_TTL_SECONDS`` is dropped as stale (``StalePresenceEvents``):
   any tombstone that could refuse it may have expired.
2. From another region: record it in the ``REMOTE#<region>#<userId>`` item
   (:func:`runtime.store.room_store.apply_remote_presence`, conditional on ``updatedAt <
   at``). A refused (older or duplicate) event stops here
   (``StalePresenceEvents``); an applied event that changes nothing visible
   (a lease renewal, a repeated "left") stops here too. A failing write
   raises, like the history write, so the event is retried.
   From this region: nothing is written (the local memberships are the truth)
   and renewals (``refresh``) stop here.
3. Push a ``member`` frame to every local connection in the room (the same
   fan-out, 410 cleanup and metrics as messages; ``PresenceEvents`` counts
   the valid events, ``PresenceFrames`` those that were pushed). The frame
   describes the user as ``presence`` now shows them
   (:func:`runtime.store.room_store.member_presence`): "joined" with the merged entry while
   the user is present anywhere (so a "left" from one region of a user still
   connected in another becomes "joined" with that region), else "left".
   Not in a room above ``PRESENCE_LIVE_MAX_MEMBERS`` (``quiet``,
   ``PresenceFramesSuppressed``): there a remote event that changed what
   ``presence`` shows only moves the origin region's ``memberCount``, and one
   ``members`` frame announces each switch of the room's mode (:mod:`runtime.presence.roster`).
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import uuid
from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.delivery import broadcast
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.bus import MESSAGE_DETAIL_TYPE, PRESENCE_DETAIL_TYPE
from multiregion_chat.runtime.platform.observability import (
    MetricUnit,
    count,
    logger,
    metrics,
    tracer,
)
from multiregion_chat.runtime.presence import roster
from multiregion_chat.runtime.protocol.chat_model import (
    ChatMessage,
    PresenceEvent,
    check_not_future,
    check_origin,
)
from multiregion_chat.runtime.protocol.claims import is_system_user_id
from multiregion_chat.runtime.protocol.ids import id_timestamp_ms, now_ms
from multiregion_chat.runtime.protocol.json_codec import compact_json
from multiregion_chat.runtime.store import history_store, room_store


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    detail_type = event.get("detail-type") if isinstance(event, dict) else None
    if detail_type == MESSAGE_DETAIL_TYPE:
        return _message(event)
    if detail_type == PRESENCE_DETAIL_TYPE:
        return _presence(event)
    logger.info("event ignored", extra={"detailType": str(detail_type)[:64]})
    count("IgnoredEvents")
    return {"status": "ignored"}


def _fanout(room: str, frame: dict[str, Any], job_id: str | None = None) -> dict[str, Any]:
    """Push ``frame`` to the room's local connections; the handler's summary.

    ``job_id`` names the shards of a big room (the message id for messages;
    a fresh id otherwise).
    """
    try:
        result = broadcast.broadcast(room, compact_json(frame), job_id=job_id or uuid.uuid4().hex)
    except Exception:
        logger.exception("fan-out aborted")
        count("FanoutErrors")
        return {"status": "fanout_error"}
    count("DeliveredMessages", result.delivered)
    count("GoneConnections", result.gone)
    count("FailedDeliveries", result.failed)
    count("DeliveryRetries", result.retries)
    count("FanoutShards", result.shards)
    summary = {
        "delivered": result.delivered,
        "gone": result.gone,
        "failed": result.failed,
        "shards": result.shards,
        "handedOn": result.handed_on,
    }
    logger.info("frame delivered", extra={"frameType": frame.get("type"), **summary})
    return {"status": "sharded" if result.sharded else "delivered", **summary}


def _validated_presence(detail: object) -> PresenceEvent:
    presence = PresenceEvent.from_detail(detail)
    if is_system_user_id(presence.member.user_id):
        raise ValueError("detail.member is a system sender: they have no presence")
    settings = runtime_settings.get_settings()
    check_origin(presence.origin_region, presence.member.region, settings.origin_regions, "member")
    check_not_future(presence.at, now_ms(), settings.bus_clock_skew_seconds * 1000, "detail.at")
    return presence


def _validated_message(event: dict[str, Any]) -> ChatMessage:
    settings = runtime_settings.get_settings()
    message = ChatMessage.from_detail(event.get("detail"), settings.max_body_bytes)
    if is_system_user_id(message.sender.user_id) and event.get("source") != (
        settings.server_source
    ):
        raise ValueError("a system sender comes only in the server API's events")
    check_origin(message.origin_region, message.sender.region, settings.origin_regions)
    check_not_future(
        id_timestamp_ms(message.id),
        now_ms(),
        settings.bus_clock_skew_seconds * 1000,
        "the time of detail.id",
    )
    return message


def _presence(event: dict[str, Any]) -> dict[str, Any]:
    try:
        presence = _validated_presence(event.get("detail"))
    except ValueError as error:
        logger.warning(
            "malformed presence event dropped",
            extra={"reason": str(error), "eventId": event.get("id")},
        )
        count("MalformedEvents")
        return {"status": "malformed"}
    logger.append_keys(
        room=presence.room, presenceEvent=presence.event, originRegion=presence.origin_region
    )
    count("PresenceEvents")
    settings = runtime_settings.get_settings()
    if now_ms() - presence.at > settings.connection_ttl_seconds * 1000:
        logger.info("presence event too old; dropped")
        count("StalePresenceEvents")
        return {"status": "stale"}
    if presence.origin_region != settings.region:
        try:
            outcome = room_store.apply_remote_presence(presence)
        except Exception:
            logger.exception("remote presence write failed; raising so the event is retried")
            count("PresenceWriteFailures")
            raise
        if outcome is room_store.RemotePresenceOutcome.STALE:
            logger.info("presence event older than the stored state; dropped")
            count("StalePresenceEvents")
            return {"status": "stale"}
        if outcome is room_store.RemotePresenceOutcome.UNCHANGED:
            return {"status": "unchanged"}
        roster.add(presence.room, presence.origin_region, 1 if presence.event == "joined" else -1)
    elif presence.refresh:
        return {"status": "unchanged"}
    if not _presence_live(presence.room):
        count("PresenceFramesSuppressed")
        return {"status": "quiet"}
    current = room_store.member_presence(presence.room, presence.member.user_id)
    count("PresenceFrames")
    return _fanout(presence.room, presence.to_frame(current))


def _presence_live(room: str) -> bool:
    """Whether the room gets live ``member`` frames (:mod:`runtime.presence.roster`).

    Above ``PRESENCE_LIVE_MAX_MEMBERS`` it does not; the first handler to see
    the room cross the threshold (either way) stores the mode and pushes one
    ``members`` frame with ``live`` and ``memberCount``, so clients know to
    switch between applying ``member`` frames and reading ``presence`` pages.
    A failure to read the count keeps the frames live (today's behaviour).
    """
    try:
        room_count = roster.read(room)
        live = roster.is_live(room_count)
        if live == room_count.quiet and roster.set_quiet(room, not live):
            count("PresenceModeSwitches")
            _fanout(room, roster.mode_frame(room, room_count, live))
    except Exception:
        logger.exception("presence mode check failed; member frames stay live")
        count(roster.FAILURE_METRIC)
        return True
    return live


def _message(event: dict[str, Any]) -> dict[str, Any]:
    try:
        message = _validated_message(event)
    except ValueError as error:
        logger.warning(
            "malformed chat event dropped", extra={"reason": str(error), "eventId": event.get("id")}
        )
        count("MalformedEvents")
        return {"status": "malformed"}
    logger.append_keys(room=message.room, messageId=message.id, originRegion=message.origin_region)

    try:
        stored = history_store.put_message(message)
    except Exception:
        logger.exception("history write failed; raising so the event is retried")
        count("HistoryWriteFailures")
        raise
    if not stored:
        logger.info("duplicate event; already delivered")
        count("DuplicateEvents")
        return {"status": "duplicate"}
    metrics.add_metric(
        name="EventAge",
        unit=MetricUnit.Milliseconds,
        value=max(0, now_ms() - id_timestamp_ms(message.id)),
    )

    summary = _fanout(message.room, message.to_frame(), job_id=message.id)
    if summary["status"] == "fanout_error":
        logger.warning("the message stays in history for clients that resume")
    return summary


init_phase.end()
