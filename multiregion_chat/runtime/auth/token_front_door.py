"""The front door of token verification (issue 8: refuse, never raise): what every token must
be before any signature is checked (runtime.auth.tokens, docs/protocol.md "Tokens").

In this order:

* a string of at most :data:`~runtime.protocol.claims.MAX_TOKEN_CHARS` ASCII characters: three
non-empty
  base64url segments, no padding, no other character;
* each segment in the canonical encoding (decoding then encoding gives the same text: no set
  trailing bits; base64 decoders ignore them, so without this one signature would have
  several spellings);
* header and payload: UTF-8 JSON objects nested at most :data:`MAX_JSON_DEPTH` deep (counted
  before parsing: a few thousand ``[`` would otherwise exhaust the parser's recursion),
  without NaN, Infinity or numbers that overflow a float: the server's one strict reader,
  ``runtime.protocol.json_codec.loads_strict``, with this tighter depth bound;
* header: ``alg`` one the key source accepts (never ``none``; the algorithm is the server's
  choice, never the token's), no ``crit``, no detached payload, ``kid`` (if any) a short string.

Every failure is :class:`InvalidTokenError` whose message names the reason and never contains
the token. Standard library only (and the strict JSON reader).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from multiregion_chat.runtime.protocol.claims import MAX_TOKEN_CHARS
from multiregion_chat.runtime.protocol.json_codec import TooDeepError, loads_strict

__all__ = ["MAX_JSON_DEPTH", "InvalidTokenError", "WellFormedToken", "parse"]

MAX_JSON_DEPTH = 8  # {"rooms": [...]} is 2; IdPs nest a few levels (Keycloak's realm_access.roles)
_MAX_KID_CHARS = 256

_TOKEN = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)")


class InvalidTokenError(ValueError):
    """The token is refused; ``str(error)`` is a reason safe to log (no token content)."""


class WellFormedToken(NamedTuple):
    """A token that passed the front door: its header, its payload (not yet verified), the
    bytes its signature covers (``header.payload`` as sent) and the signature's bytes."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _segment(text: str, what: str) -> bytes:
    if len(text) % 4 == 1:
        raise InvalidTokenError(f"{what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidTokenError(f"{what} is not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise InvalidTokenError(f"{what} is not canonical base64url")
    return raw


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = loads_strict(raw, max_depth=MAX_JSON_DEPTH)
    except UnicodeDecodeError:
        raise InvalidTokenError(f"{what} is not UTF-8") from None
    except TooDeepError:
        raise InvalidTokenError(f"{what} nests deeper than {MAX_JSON_DEPTH}") from None
    except (ValueError, RecursionError):  # JSONDecodeError, huge integers, NaN, 1e400
        raise InvalidTokenError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidTokenError(f"{what} is not a JSON object")
    return value


def parse(token: object, algorithms: Iterable[str]) -> WellFormedToken:
    """The parts of a well-formed token whose ``alg`` is one of ``algorithms``, or
    InvalidTokenError."""
    if not isinstance(token, str) or not token:
        raise InvalidTokenError("no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidTokenError(f"token longer than {MAX_TOKEN_CHARS} characters")
    match = _TOKEN.fullmatch(token)
    if match is None:
        if token.count(".") != 2:
            raise InvalidTokenError("token is not three dot-separated segments")
        raise InvalidTokenError("token is not base64url (ASCII letters, digits, - and _)")
    header_text, payload_text, signature_text = match.groups()
    header = _json_object(_segment(header_text, "header"), "header")
    payload = _json_object(_segment(payload_text, "payload"), "payload")
    signature = _segment(signature_text, "signature")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidTokenError(f"alg is not {' or '.join(sorted(algorithms))}")
    if "crit" in header or header.get("b64") is not None:
        raise InvalidTokenError("crit and b64 header parameters are not supported")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not 1 <= len(kid) <= _MAX_KID_CHARS):
        raise InvalidTokenError("kid must be a string")
    signing_input = f"{header_text}.{payload_text}".encode("ascii")
    return WellFormedToken(header, payload, signing_input, signature)
