"""``refresh``: a fresh token on an open connection extends it (docs/protocol.md).

The token is verified exactly as the authorizer verifies one at ``$connect``
(:func:`chat.tokens.verify`, the signing secret from Secrets Manager, cached
5 minutes per container like the authorizer's) and must name the same user
(``sub`` = the connection's ``userId``); then the connection's
``tokenExpiresAt`` becomes the new ``exp``. The token's ``rooms`` and ``name``
are not re-read: they were fixed at ``$connect`` (a client that needs other
rooms reconnects). Tokens are never logged.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.utilities import parameters

from chat import connection_store
from chat.ids import epoch_seconds
from chat.tokens import Claims, InvalidTokenError, verify

__all__ = ["SECRET_MAX_AGE_SECONDS", "RefreshRefused", "refresh"]

SECRET_MAX_AGE_SECONDS = 300


class RefreshRefused(Exception):
    """The token is invalid or names someone else; ``str()`` is safe to send."""


def _secret() -> str | bytes:
    # The same read as the authorizer's (lambdas/authorizer.py): a failure
    # raises (an outage is not a bad token) and the handler answers internal.
    name = os.environ.get("SIGNING_SECRET_NAME", "")
    if not name:
        raise RuntimeError("SIGNING_SECRET_NAME is not set")
    value = parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(value, str | bytes):  # pragma: no cover - get_secret returns str/bytes
        raise RuntimeError("the signing secret is not a string")
    return value


def refresh(connection_id: str, token: str) -> Claims:
    """Extend the connection with ``token``; RefreshRefused if it cannot."""
    try:
        claims = verify(token, _secret(), epoch_seconds())
    except InvalidTokenError as error:
        raise RefreshRefused(f"token refused: {error}") from None
    if not connection_store.extend_token(connection_id, claims.user_id, claims.expires_at):
        raise RefreshRefused("the token is for another user (or the connection is gone)")
    return claims
