"""Open connections honour their token's ``exp`` (docs/protocol.md, "token_expired").

API Gateway authorizes a WebSocket only at ``$connect``; without this a
connection would outlive its token by up to API Gateway's 2-hour limit.
``$connect`` records the token's ``exp`` in META (``tokenExpiresAt``);
ClientMessageHandler checks it on every client frame and, once it has passed
(plus the verifier's clock leeway), pushes an ``error`` frame with code
``token_expired`` and closes the connection with ``DeleteConnection``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chat import clients, connection_store
from chat.claims import LEEWAY_SECONDS
from chat.frames import TOKEN_EXPIRED, error_frame
from chat.ids import epoch_seconds
from chat.json_codec import compact_json
from chat.observability import logger

__all__ = ["close", "expired", "expired_frame"]


def expired(connection_id: str, now: int | None = None) -> bool:
    """Whether the connection's token has expired (unknown expiry: no)."""
    expires_at = connection_store.token_expires_at(connection_id)
    now = epoch_seconds() if now is None else now
    return expires_at is not None and now > expires_at + LEEWAY_SECONDS


def expired_frame(ref: str | None = None) -> dict[str, Any]:
    return error_frame(TOKEN_EXPIRED, "your token has expired; reconnect with a new token", ref)


def close(connection_id: str, frame: dict[str, Any]) -> None:
    """Push ``frame`` to the connection, then close it. A connection already
    gone (410) is fine; any other failure is logged, and the connection is
    refused again on its next frame."""
    api = clients.management()
    try:
        api.post_to_connection(ConnectionId=connection_id, Data=compact_json(frame).encode())
        api.delete_connection(ConnectionId=connection_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "GoneException":
            logger.warning("closing an expired connection failed", extra={"error": str(error)})
