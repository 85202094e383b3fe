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

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.protocol.claims import LEEWAY_SECONDS
from multiregion_chat.runtime.protocol.frames import TOKEN_EXPIRED, error_frame
from multiregion_chat.runtime.protocol.ids import epoch_seconds
from multiregion_chat.runtime.protocol.json_codec import compact_json
from multiregion_chat.runtime.store import connection_store, room_store

__all__ = ["close", "expired", "expired_frame", "has_passed", "live_connection_ids"]


def _past(expires_at: int | None, now: int) -> bool:
    return expires_at is not None and now > expires_at + LEEWAY_SECONDS


def has_passed(expires_at: int | None, now: int | None = None) -> bool:
    """Whether a token ``exp`` (as recorded in META) has passed, with the verifier's
    leeway (unknown expiry: no)."""
    return _past(expires_at, epoch_seconds() if now is None else now)


def expired(connection_id: str, now: int | None = None) -> bool:
    """Whether the connection's token has expired (unknown expiry: no); reads META."""
    return has_passed(connection_store.token_expires_at(connection_id), now)


def expired_frame(ref: str | None = None) -> dict[str, Any]:
    return error_frame(TOKEN_EXPIRED, "your token has expired; reconnect with a new token", ref)


def close(connection_id: str, frame: dict[str, Any]) -> str:
    """Push ``frame`` to the connection, then close it: ``"closed"``, ``"gone"``
    (410: already closed, which is fine) or ``"failed"`` (logged; the connection
    is refused again on its next frame, or left out of the next delivery)."""
    api = aws_clients.management()
    try:
        api.post_to_connection(ConnectionId=connection_id, Data=compact_json(frame).encode())
        api.delete_connection(ConnectionId=connection_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "GoneException":
            return "gone"
        logger.warning("closing an expired connection failed", extra={"error": str(error)})
        return "failed"
    return "closed"


# Expired members closed per delivery: each close is two @connections calls in series,
# outside the fan-out engine's rate limiter, so a room where many listen-only members
# expired together must not spend the invocation on them. The ones over the budget are
# left out of the delivery all the same, and closed by a later one (or their next frame).
MAX_CLOSES_PER_DELIVERY = 20


def live_connection_ids(room: str, page_size: int | None = None) -> Iterator[list[str]]:
    """The room's local connection ids to deliver to, one list per Query page.

    Members whose membership item says their token has expired are candidates:
    META (one consistent read each, the record ``refresh`` moves first) decides,
    since a ``join`` racing a ``refresh`` can leave a membership with the old
    expiry. Confirmed ones are left out and closed here, up to
    :data:`MAX_CLOSES_PER_DELIVERY` (synchronous calls; the fan-out engine pulls
    pages off its event loop). A member already gone (410) has its records
    removed, as the fan-out does on 410.
    """
    budget = MAX_CLOSES_PER_DELIVERY
    for page in room_store.iter_room_connections(room, page_size):
        now = epoch_seconds()
        live = [cid for cid, expires_at in page if not _past(expires_at, now)]
        candidates = [cid for cid, expires_at in page if _past(expires_at, now)]
        if candidates:
            refreshed, budget = _close_expired(room, candidates, now, budget)
            live.extend(refreshed)
        yield live


def _close_expired(
    room: str, candidates: list[str], now: int, budget: int
) -> tuple[list[str], int]:
    """Close the candidates META confirms, within ``budget``: (the ones META says
    are live after all, the budget left)."""
    refreshed: list[str] = []
    closed = 0
    frame = expired_frame()
    for cid in candidates:
        if budget <= 0:
            break  # left out of this delivery unconfirmed; a later one closes it
        budget -= 1
        if not expired(cid, now):
            refreshed.append(cid)
            continue
        outcome = close(cid, frame)
        if outcome == "failed":
            continue
        closed += 1
        if outcome == "gone":
            try:
                transitions.cleanup_connection(cid, rooms_hint=(room,))
            except Exception:  # one failed cleanup must not stop the delivery to the others
                logger.exception("cleanup of a gone connection failed", extra={"connectionId": cid})
    if closed:
        count("ExpiredConnectionsClosed", closed)
    return refreshed, budget
