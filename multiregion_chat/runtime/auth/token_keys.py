"""Which keys verify a token here, chosen by the environment (docs/contracts.md).

One choice for every verifier (the authorizer at ``$connect`` and on the HTTP
API, ClientMessageHandler's ``refresh``), so a refreshed token follows exactly
the rules of the first one (kid, rotation, OIDC, front door, lifetime):

* ``JWT_ISSUER`` unset: HS256 with the signing secret, read with Powertools
  Parameters from Secrets Manager (name in ``SIGNING_SECRET_NAME``), cached
  for 5 minutes per execution environment. A failure to read it raises: an
  outage of Secrets Manager must not look like a bad token.
* ``JWT_ISSUER`` set: RS256/ES256 tokens of that issuer (``JWT_AUDIENCE``),
  keys from its JWKS (``JWKS_URL`` or discovered; runtime.auth.jwks).

PyJWT and ``cryptography`` come with runtime.auth.jwks, which is imported only when
``JWT_ISSUER`` is set: at module import (an OIDC deployment verifies every
token with them, so their import belongs to init, where provisioned
concurrency and SnapStart-style pre-initialization absorb it), or on the first
key lookup when the environment changed later (tests). HS256 deployments
verify with the standard library (runtime.auth.tokens) and never load them.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities import parameters

from multiregion_chat.runtime.auth.tokens import HmacKeys, KeySource, TokenPolicy

if TYPE_CHECKING:
    from multiregion_chat.runtime.auth.jwks import JwksKeys

if os.environ.get("JWT_ISSUER", "").strip():
    import multiregion_chat.runtime.auth.jwks  # noqa: F401  (an OIDC deployment's import, paid at init: docstring)

__all__ = ["SECRET_MAX_AGE_SECONDS", "keys", "policy", "reset"]

SECRET_MAX_AGE_SECONDS = 300


@functools.cache
def policy() -> TokenPolicy:
    """The token rules of ``TokenPolicy.from_env`` (read once per container)."""
    return TokenPolicy.from_env()


@functools.cache
def _jwks(issuer: str, jwks_url: str | None) -> JwksKeys:
    from multiregion_chat.runtime.auth import jwks

    return jwks.JwksKeys(issuer, jwks_url)


def reset() -> None:
    """Forget the policy and the cached JWKS (tests change the environment)."""
    policy.cache_clear()
    _jwks.cache_clear()


def keys(token_policy: TokenPolicy) -> KeySource:
    """The key source for ``token_policy``: the issuer's JWKS or the signing secret's keys."""
    if token_policy.issuer:
        return _jwks(token_policy.issuer, os.environ.get("JWKS_URL", "").strip() or None)
    name = os.environ.get("SIGNING_SECRET_NAME", "")
    if not name:
        raise RuntimeError("SIGNING_SECRET_NAME is not set")
    value = parameters.get_secret(name, max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(value, str | bytes):  # pragma: no cover - get_secret returns str/bytes
        raise RuntimeError("the signing secret is not a string")
    return HmacKeys.from_secret(value)
