"""``refresh``: a fresh token on an open connection extends it (docs/protocol.md).

The token is verified exactly as the authorizer verifies one at ``$connect``:
:func:`runtime.auth.tokens.verify` with the same key source and token rules
(:mod:`runtime.auth.token_keys`: the signing secret's HS256 keys with rotation, or an
OIDC issuer's JWKS; the same environment variables as the authorizer). It
must name the same user (the token's user id = the connection's ``userId``);
then the connection's ``tokenExpiresAt`` becomes the new ``exp``. The token's
``rooms`` and ``name`` are not re-read: they were fixed at ``$connect`` (a
client that needs other rooms reconnects). Tokens are never logged.

PyJWT and cryptography are imported on the first ``refresh`` of a container,
not at init: every other frame of ClientMessageHandler keeps its cold start
(``import jwt`` costs about 0.2 s of CPU; a client refreshes every 20 minutes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiregion_chat.runtime.protocol.ids import epoch_seconds
from multiregion_chat.runtime.store import connection_store

if TYPE_CHECKING:
    from multiregion_chat.runtime.auth.tokens import Claims

__all__ = ["RefreshRefused", "refresh"]


class RefreshRefused(Exception):
    """The token is invalid or names someone else; ``str()`` is safe to send."""


def refresh(connection_id: str, token: str) -> Claims:
    """Extend the connection with ``token``; RefreshRefused if it cannot.

    A failure to read the keys (Secrets Manager or the issuer down) raises:
    an outage is not a bad token, and the handler answers ``internal``.
    """
    from multiregion_chat.runtime.auth import token_keys  # on first use: see the module docstring
    from multiregion_chat.runtime.auth.tokens import InvalidTokenError, verify

    policy = token_keys.policy()
    try:
        claims = verify(token, token_keys.keys(policy), epoch_seconds(), policy)
    except InvalidTokenError as error:
        raise RefreshRefused(f"token refused: {error}") from None
    if not connection_store.extend_token(connection_id, claims.user_id, claims.expires_at):
        raise RefreshRefused("the token is for another user (or the connection is gone)")
    return claims
