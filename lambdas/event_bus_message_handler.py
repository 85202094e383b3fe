"""Bus -> history -> local fan-out (handler ``event_bus_message_handler.handler``).

Invoked by the region's delivery rule for every chat event, local or
forwarded from another region. For ``chat.message``:

1. Validate the detail. A malformed event is logged (without its body),
   counted (``MalformedEvents``) and dropped; raising would only make
   EventBridge retry an event that can never succeed. Other detail types
   (e.g. the later ``chat.presence``) are counted as ``IgnoredEvents``.
2. Write the message to this region's history with
   ``attribute_not_exists(id)``. This write is the de-duplication point: if
   the id is already there the event is a duplicate (an EventBridge retry or a
   repeated forward), counted as ``DuplicateEvents`` and not delivered again.
   If the write itself fails the handler raises, so Lambda's async retries
   (and then the target's dead-letter queue) get another chance; nothing was
   delivered yet, so a retry cannot duplicate.
3. Post the ``message`` frame to every local connection in the room.

Delivery failures after the write are not raised. The message is durable in
history, so a client that missed it (a failed post, or a crash mid fan-out)
gets it by re-joining with ``after`` = the last id it saw, and the ``id``
lets it de-duplicate. Raising would not help anyway: the retried event would
find the history item and be discarded as a duplicate. Failures show up as
``FailedDeliveries`` (and ``FanoutErrors`` if the member query broke off).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from chat import fanout, store
from chat.bus import MESSAGE_DETAIL_TYPE
from chat.ids import id_timestamp_ms, now_ms
from chat.observability import MetricUnit, count, logger, metrics, tracer
from chat.protocol import ChatMessage, compact_json


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not isinstance(event, dict) or event.get("detail-type") != MESSAGE_DETAIL_TYPE:
        detail_type = event.get("detail-type") if isinstance(event, dict) else None
        logger.info("event ignored", extra={"detailType": str(detail_type)[:64]})
        count("IgnoredEvents")
        return {"status": "ignored"}
    try:
        message = ChatMessage.from_detail(event.get("detail"))
    except ValueError as error:
        logger.warning(
            "malformed chat event dropped", extra={"reason": str(error), "eventId": event.get("id")}
        )
        count("MalformedEvents")
        return {"status": "malformed"}
    logger.append_keys(room=message.room, messageId=message.id, originRegion=message.origin_region)

    try:
        stored = store.put_message(message)
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

    data = compact_json(message.to_frame()).encode("utf-8")
    try:
        result = fanout.deliver(message.room, data)
    except Exception:
        logger.exception("fan-out aborted; the message stays in history")
        count("FanoutErrors")
        return {"status": "fanout_error"}
    count("DeliveredMessages", result.delivered)
    count("GoneConnections", result.gone)
    count("FailedDeliveries", result.failed)
    count("DeliveryRetries", result.retries)
    logger.info(
        "message delivered",
        extra={
            "delivered": result.delivered,
            "gone": result.gone,
            "failed": result.failed,
            "retries": result.retries,
        },
    )
    return {
        "status": "delivered",
        "delivered": result.delivered,
        "gone": result.gone,
        "failed": result.failed,
    }
