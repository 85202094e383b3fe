"""Open connections honour their token's ``exp`` (docs/protocol.md, "token_expired").

API Gateway authorizes a WebSocket only at ``$connect``; without this a
connection would outlive its token by up to API Gateway's 2-hour limit.
``$connect`` records the token's ``exp`` in META (``tokenExpiresAt``), and a
join copies it into the membership item (``refresh`` moves both). Once it has
passed (plus the verifier's clock leeway) the connection gets an ``error``
frame with code ``token_expired`` and is closed with ``DeleteConnection``:

* ClientMessageHandler checks META on every client frame;
* a room delivery reads the expiry with the member ids, for free
  (:func:`live_connection_ids`), so a listen-only connection, whose pushes
  keep API Gateway's idle timer alive, is closed at the next frame to its room.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from chat import clients, connection_store, presence, room_store
from chat.claims import LEEWAY_SECONDS
from chat.frames import TOKEN_EXPIRED, error_frame
from chat.ids import epoch_seconds
from chat.json_codec import compact_json
from chat.observability import count, logger

__all__ = ["close", "expired", "expired_frame", "live_connection_ids"]


def _past(expires_at: int | None, now: int) -> bool:
    return expires_at is not None and now > expires_at + LEEWAY_SECONDS


def expired(connection_id: str, now: int | None = None) -> bool:
    """Whether the connection's token has expired (unknown expiry: no)."""
    expires_at = connection_store.token_expires_at(connection_id)
    return _past(expires_at, epoch_seconds() if now is None else now)


def expired_frame(ref: str | None = None) -> dict[str, Any]:
    return error_frame(TOKEN_EXPIRED, "your token has expired; reconnect with a new token", ref)


def close(connection_id: str, frame: dict[str, Any]) -> bool:
    """Push ``frame`` to the connection, then close it; True if it was already
    gone (410), which is fine. Any other failure is logged, and the connection
    is refused again on its next frame (or delivery)."""
    api = clients.management()
    try:
        api.post_to_connection(ConnectionId=connection_id, Data=compact_json(frame).encode())
        api.delete_connection(ConnectionId=connection_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "GoneException":
            return True
        logger.warning("closing an expired connection failed", extra={"error": str(error)})
    return False


def live_connection_ids(room: str, page_size: int | None = None) -> Iterator[list[str]]:
    """The room's local connection ids to deliver to, one list per Query page.

    Members whose token has expired are left out and closed here, one by one
    (synchronous ``@connections`` calls: they are few, since each is closed
    once; the fan-out engine pulls pages off its event loop). A member already
    gone (410) has its records removed, as the fan-out does on 410.
    """
    for page in room_store.iter_room_connections(room, page_size):
        now = epoch_seconds()
        live = [cid for cid, expires_at in page if not _past(expires_at, now)]
        if len(live) < len(page):
            _close_expired(room, [cid for cid, expires_at in page if _past(expires_at, now)])
        yield live


def _close_expired(room: str, connection_ids: list[str]) -> None:
    count("ExpiredConnectionsClosed", len(connection_ids))
    frame = expired_frame()
    for cid in connection_ids:
        if close(cid, frame):
            try:
                presence.cleanup_connection(cid, rooms_hint=(room,))
            except Exception:  # one failed cleanup must not stop the delivery to the others
                logger.exception("cleanup of a gone connection failed", extra={"connectionId": cid})
