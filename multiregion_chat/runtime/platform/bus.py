"""Publishing chat events to the region's EventBridge bus.

A ``send`` is acknowledged only once its event is accepted by the bus
(docs/protocol.md, "Delivery guarantees"). PutEvents can succeed as a call yet
reject individual entries (``FailedEntryCount``); those entries are retried
with backoff, a bounded number of times. A call that raises has already been
retried by botocore (standard mode) and is not retried again here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from multiregion_chat.runtime.platform import aws_clients, retry, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.protocol.chat_model import ChatMessage, Sender
from multiregion_chat.runtime.protocol.ids import id_timestamp_ms, iso_from_ms, new_id
from multiregion_chat.runtime.protocol.json_codec import compact_json

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

__all__ = [
    "DISCONNECT_DETAIL_TYPE",
    "MESSAGE_DETAIL_TYPE",
    "PRESENCE_DETAIL_TYPE",
    "PublishError",
    "publish",
    "publish_message",
    "put",
]

# The server API's "disconnect a user everywhere" (runtime/handlers/server_api_handler.py); the
# stacks route it with infra.server_api.DISCONNECT_DETAIL_TYPE (a test ties them).
DISCONNECT_DETAIL_TYPE = "chat.disconnect"
MESSAGE_DETAIL_TYPE = "chat.message"
PRESENCE_DETAIL_TYPE = "chat.presence"
PUBLISH_ATTEMPTS = 3


class PublishError(Exception):
    """The event could not be put on the bus; the request must not be acknowledged."""


def publish(detail_type: str, detail: dict[str, Any]) -> None:
    """Put one chat event on the bus (``source`` ``EVENT_SOURCE``) or raise PublishError."""
    put(runtime_settings.get_settings().source, detail_type, detail)


def put(source: str, detail_type: str, detail: dict[str, Any]) -> None:
    """Put one event with ``source`` on the bus or raise PublishError."""
    settings = runtime_settings.get_settings()
    entries: list[PutEventsRequestEntryTypeDef] = [
        {
            "Source": source,
            "DetailType": detail_type,
            "Detail": compact_json(detail),
            "EventBusName": settings.bus_name,
        }
    ]
    events = aws_clients.events()
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            response = events.put_events(Entries=entries)
        except (ClientError, BotoCoreError) as error:
            raise PublishError(f"PutEvents failed: {type(error).__name__}") from error
        if not response.get("FailedEntryCount"):
            return
        results = response.get("Entries", [])
        failed = [
            entry
            for entry, result in zip(entries, results, strict=False)
            if result.get("ErrorCode") or not result.get("EventId")
        ]
        # A response without per-entry results leaves nothing to match: retry all.
        entries = failed or entries
        codes = sorted({r.get("ErrorCode", "?") for r in results if r.get("ErrorCode")})
        logger.warning(
            "PutEvents rejected entries",
            extra={"attempt": attempt, "failed": len(entries), "errorCodes": codes},
        )
        if attempt < PUBLISH_ATTEMPTS:
            retry.pause(attempt)
    raise PublishError(f"PutEvents rejected {len(entries)} entries {PUBLISH_ATTEMPTS} times")


def publish_message(
    room: str, sender: Sender, body: Any, message_id: str | None = None, *, server: bool = False
) -> ChatMessage:
    """Accept a validated message: mint its id (unless given) and publish ``chat.message``.

    Shared by the WebSocket ``send`` and ``POST /rooms/{room}/messages``: the
    id's timestamp is ``sentAt``, the origin is this region. A sequenced send
    (:mod:`runtime.store.sequence_store`) passes the id its sequence chose; publishing the
    same id twice is harmless (history de-duplicates by id). Counts
    ``MessagesAccepted``, or ``PublishFailures`` and raises PublishError (the
    caller must then not acknowledge). ``server``: the server API's message,
    under ``Settings.server_source`` (EventBusMessageHandler accepts a
    ``system:`` sender only there).
    """
    message_id = message_id or new_id()
    message = ChatMessage(
        room=room,
        id=message_id,
        sender=sender,
        body=body,
        sent_at=iso_from_ms(id_timestamp_ms(message_id)),
        origin_region=runtime_settings.get_settings().region,
    )
    try:
        if server:  # the server API's own source: the only one a system: sender may use
            server_source = runtime_settings.get_settings().server_source
            put(server_source, MESSAGE_DETAIL_TYPE, message.detail())
        else:
            publish(MESSAGE_DETAIL_TYPE, message.detail())
    except PublishError:
        logger.exception("message not published", extra={"room": room, "id": message_id})
        count("PublishFailures")
        raise
    logger.info("message accepted", extra={"room": room, "id": message_id})
    count("MessagesAccepted")
    return message
