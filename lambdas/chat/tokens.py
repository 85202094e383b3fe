"""Token verification and room patterns (docs/protocol.md, "Connecting").

A token is a JWT signed with HMAC-SHA256 (``alg`` HS256, nothing else) with
the deployment's signing secret. Hand-written with ``hmac``/``base64``/``json``
from the standard library: the Lambda asset is not bundled (docs/contracts.md:
only the standard library, boto3 and the dependencies layer's pins may be
imported), PyJWT is not among those pins, and HS256 alone is a few lines.

Rules, checked in this order (any failure is :class:`InvalidTokenError`, whose
message names the reason and never contains the token):

* at most :data:`MAX_TOKEN_CHARS` characters, three non-empty base64url
  segments (no padding);
* header: a JSON object with ``alg`` exactly ``HS256`` (``none``, ``HS512``,
  ``RS256``... are refused: the algorithm is fixed by the server, never chosen
  by the token) and no ``crit`` extensions;
* signature: HMAC-SHA256 of ``<header>.<payload>`` with the secret, compared in
  constant time (:func:`hmac.compare_digest`);
* claims: a JSON object; ``sub`` a string of 1-128 characters, not starting
  with ``system:`` (the server API's senders); ``exp`` an
  integer (seconds since the epoch) not more than :data:`LEEWAY_SECONDS` in the
  past; ``nbf``, when present, not more than the leeway in the future;
  ``name`` (optional) a string of at most 64 characters, empty = absent;
  ``rooms`` (optional) a list of at most :data:`MAX_ROOM_PATTERNS` room
  patterns.

A room pattern is a room name (``^[A-Za-z0-9_.:-]{1,64}$``) in which ``*``
stands for any run of characters, the empty run included: ``team-*`` matches
``team-`` and ``team-a``, ``*`` matches every room, ``a*b`` matches ``ab`` and
``a.x.b``. Every other character matches itself (``.`` is a dot, not "any
character").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chat.model import MAX_USER_ID_CHARS

__all__ = [
    "LEEWAY_SECONDS",
    "MAX_NAME_CHARS",
    "MAX_ROOM_PATTERNS",
    "MAX_TOKEN_CHARS",
    "MAX_USER_ID_CHARS",
    "SYSTEM_USER_PREFIX",
    "Claims",
    "InvalidTokenError",
    "room_allowed",
    "valid_pattern",
    "verify",
]

MAX_TOKEN_CHARS = 4096
# userId prefix of the server API's system senders (lambdas/server_api.py): no
# token may carry it, so no user can pose as one.
SYSTEM_USER_PREFIX = "system:"
MAX_NAME_CHARS = 64
MAX_ROOM_PATTERNS = 50
LEEWAY_SECONDS = 30  # clock skew between the token's issuer and the authorizer

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_PATTERN = re.compile(r"[A-Za-z0-9_.:*-]{1,64}")


class InvalidTokenError(ValueError):
    """The token is refused; ``str(error)`` is a reason safe to log (no token content)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid token says: ``rooms`` None means every room."""

    user_id: str
    name: str | None
    rooms: tuple[str, ...] | None
    expires_at: int


def _b64decode(segment: str, what: str) -> bytes:
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        raise InvalidTokenError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTokenError(f"{what} is not base64url") from None


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = _b64decode(segment, what)
    try:
        value = json.loads(raw)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        raise InvalidTokenError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError(f"{what} is not a JSON object")
    return value


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def valid_pattern(value: object) -> bool:
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


def verify(token: object, secret: str | bytes, now: float) -> Claims:
    """The claims of ``token`` if it is valid at ``now`` (epoch seconds); else InvalidTokenError."""
    return _claims(_signed_payload(token, secret), now)


def _signed_payload(token: object, secret: str | bytes) -> dict[str, Any]:
    """The payload of ``token`` once its form, header and HS256 signature are checked."""
    if not isinstance(token, str) or not token:
        raise InvalidTokenError("no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidTokenError(f"token longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidTokenError("token is not three dot-separated segments")
    header_segment, payload_segment, signature_segment = parts
    header = _json_object(header_segment, "header")
    if header.get("alg") != "HS256":
        raise InvalidTokenError("alg is not HS256")
    if "crit" in header:
        raise InvalidTokenError("crit header extensions are not supported")
    signature = _b64decode(signature_segment, "signature")
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise InvalidTokenError("no signing secret")
    expected = hmac.new(
        key, f"{header_segment}.{payload_segment}".encode("ascii"), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(expected, signature):
        raise InvalidTokenError("bad signature")
    return _json_object(payload_segment, "payload")


def _claims(claims: dict[str, Any], now: float) -> Claims:
    """The validated claims of a signed payload at ``now``."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= MAX_USER_ID_CHARS:
        raise InvalidTokenError(f"sub must be a string of 1-{MAX_USER_ID_CHARS} characters")
    if sub.startswith(SYSTEM_USER_PREFIX):
        raise InvalidTokenError(f"sub must not start with {SYSTEM_USER_PREFIX!r} (system senders)")
    exp = claims.get("exp")
    if not _integer(exp):
        raise InvalidTokenError("exp must be an integer")
    assert isinstance(exp, int)
    if exp + LEEWAY_SECONDS <= now:
        raise InvalidTokenError("token expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not _integer(nbf) or nbf - LEEWAY_SECONDS > now):
        raise InvalidTokenError("token not valid yet")
    name = claims.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
        raise InvalidTokenError(f"name must be a string of at most {MAX_NAME_CHARS} characters")
    rooms = claims.get("rooms")
    if rooms is not None:
        if not isinstance(rooms, list) or len(rooms) > MAX_ROOM_PATTERNS:
            raise InvalidTokenError(f"rooms must be a list of at most {MAX_ROOM_PATTERNS} patterns")
        if not all(valid_pattern(pattern) for pattern in rooms):
            raise InvalidTokenError("rooms must hold room names, optionally with *")
    return Claims(
        user_id=sub,
        name=name or None,
        rooms=tuple(rooms) if rooms is not None else None,
        expires_at=exp,
    )


def _matches(pattern: str, room: str) -> bool:
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return pattern == room
    # Glob with one wildcard: the first piece is a prefix, the last a suffix,
    # the ones between occur in order (greedy leftmost search is exact here).
    first, *middle, last = pieces
    if len(room) < len(first) + len(last) or not room.startswith(first):
        return False
    if not room.endswith(last):
        return False
    position, end = len(first), len(room) - len(last)
    for piece in middle:
        found = room.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def room_allowed(patterns: Sequence[str] | None, room: str) -> bool:
    """True when ``room`` matches one of ``patterns`` (None: every room is allowed)."""
    if patterns is None:
        return True
    return any(_matches(pattern, room) for pattern in patterns)
