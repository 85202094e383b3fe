"""Who is calling: the user named by an authorizer, or (until one exists) the query string.

Shared by ``$connect`` (ConnectionHandler) and the HTTP fallback (HttpHandler),
so both accept exactly the same identities (docs/contracts.md, "Identity at
``$connect``"): the authorizer's context wins when it carries ``userId``
(1-128 characters) and optionally ``name`` (at most 64; empty counts as
absent); otherwise the query parameters ``userId`` and ``name`` are used.
"""

from __future__ import annotations

from typing import Any

from chat.protocol import MAX_USER_ID_CHARS

__all__ = ["MAX_NAME_CHARS", "MAX_USER_ID_CHARS", "InvalidIdentityError", "resolve"]

MAX_NAME_CHARS = 64


class InvalidIdentityError(ValueError):
    """The request does not name a valid user."""


def resolve(authorizer: Any, query: Any) -> tuple[str, str | None]:
    """``(userId, name)`` from an authorizer context or a query-string mapping."""
    if isinstance(authorizer, dict) and authorizer.get("userId") is not None:
        source = authorizer
    else:
        source = query if isinstance(query, dict) else {}
    user_id, name = source.get("userId"), source.get("name")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= MAX_USER_ID_CHARS:
        raise InvalidIdentityError(f"userId must be 1-{MAX_USER_ID_CHARS} characters")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
        raise InvalidIdentityError(f"name must be at most {MAX_NAME_CHARS} characters")
    return user_id, name or None
