"""Who is calling: the user the token authorizer vouched for, and nothing else.

Every entry point that names a user runs behind the token authorizer
(``runtime/handlers/authorizer.py``): the WebSocket ``$connect`` route and both HTTP
API routes. So identity comes only from the authorizer's context
(docs/contracts.md, "Identity"): ``userId`` (1-128 characters), optional
``name`` (at most 64; empty counts as absent), neither with control
characters (runtime.protocol.claims), and ``rooms``, a JSON string
holding the token's list of room patterns or ``null`` (every room). There is
no query-string fallback: a request without that context (an API deployed
without the authorizer, a hand-made event) is refused.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from multiregion_chat.runtime.protocol.claims import (
    MAX_NAME_CHARS,
    MAX_ROOM_PATTERNS,
    MAX_USER_ID_CHARS,
    valid_name,
    valid_pattern,
    valid_user_id,
)
from multiregion_chat.runtime.protocol.json_codec import loads_strict

__all__ = ["MAX_NAME_CHARS", "MAX_USER_ID_CHARS", "Identity", "InvalidIdentityError", "resolve"]


class InvalidIdentityError(ValueError):
    """The request carries no valid authorizer identity."""


class Identity(NamedTuple):
    user_id: str
    name: str | None
    rooms: tuple[str, ...] | None  # room patterns; None = every room
    expires_at: int | None = None  # the token's exp (epoch s), when the authorizer passed it


def _rooms(raw: object) -> tuple[str, ...] | None:
    if not isinstance(raw, str):
        raise InvalidIdentityError("authorizer context has no rooms")
    try:
        value = loads_strict(raw)
    except ValueError:
        raise InvalidIdentityError("authorizer rooms is not JSON") from None
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_ROOM_PATTERNS
        or not all(valid_pattern(p) for p in value)
    ):
        raise InvalidIdentityError("authorizer rooms is not a list of room patterns")
    return tuple(value)


def resolve(authorizer: Any) -> Identity:
    """The identity in an authorizer context, or InvalidIdentityError."""
    if not isinstance(authorizer, dict):
        raise InvalidIdentityError("no authorizer identity")
    user_id, name = authorizer.get("userId"), authorizer.get("name")
    if not valid_user_id(user_id):
        raise InvalidIdentityError(
            f"userId must be 1-{MAX_USER_ID_CHARS} characters without control characters"
        )
    if not valid_name(name):
        raise InvalidIdentityError(
            f"name must be at most {MAX_NAME_CHARS} characters without control characters"
        )
    return Identity(
        user_id=user_id,
        name=name or None,
        rooms=_rooms(authorizer.get("rooms")),
        expires_at=_expires_at(authorizer.get("expiresAt")),
    )


def _expires_at(raw: object) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str | int) or isinstance(raw, bool) or not str(raw).isdigit():
        raise InvalidIdentityError("authorizer expiresAt is not epoch seconds")
    return int(raw)
