"""What an identity may hold (docs/protocol.md, "Connecting"), and room patterns.

Standard library only: every handler checks identities and rooms, and only the
authorizer carries the JWT library (runtime.auth.tokens). The authorizer applies these
rules to a token's claims; runtime.auth.identity applies them again to the context the
authorizer passed on.

* userId: 1-:data:`MAX_USER_ID_CHARS` characters, no control character;
* name: at most :data:`MAX_NAME_CHARS` characters, no control character
  (empty counts as absent);
* rooms: at most :data:`MAX_ROOM_PATTERNS` room patterns.

A control character is one of Unicode's control (Cc), surrogate (Cs),
line/paragraph separator (Zl, Zp) or bidirectional formatting characters
(U+202A-U+202E, U+2066-U+2069): they break log lines, terminals and the
clients' layout, or spoof the text around them. Other format characters (the
zero-width joiner of emoji sequences, say) are allowed.

A room pattern is a room name (``^[A-Za-z0-9_.:-]{1,64}$``) in which ``*``
stands for any run of characters, the empty run included: ``team-*`` matches
``team-`` and ``team-a``, ``*`` matches every room, ``a*b`` matches ``ab`` and
``a.x.b``. Every other character matches itself (``.`` is a dot, not "any
character").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import TypeGuard

__all__ = [
    "LEEWAY_SECONDS",
    "MAX_NAME_CHARS",
    "MAX_ROOM_PATTERNS",
    "MAX_TOKEN_CHARS",
    "MAX_USER_ID_CHARS",
    "SYSTEM_USER_PREFIX",
    "has_control_characters",
    "is_system_user_id",
    "room_allowed",
    "valid_name",
    "valid_pattern",
    "valid_user_id",
]

# Also the limits of identities in bus events (runtime.protocol.chat_model): one source.
MAX_USER_ID_CHARS = 128
MAX_NAME_CHARS = 64
MAX_ROOM_PATTERNS = 50
# userId prefix of the server API's system senders (runtime/handlers/server_api_handler.py): no
# token may carry it, so no user can pose as one (runtime.auth.tokens refuses it).
SYSTEM_USER_PREFIX = "system:"
# Clock skew between a token's issuer and us: for the verifier (runtime.auth.tokens) and
# for the expiry of open connections (runtime.auth.token_expiry), which must agree.
LEEWAY_SECONDS = 30
# OIDC tokens carry more claims than ours (Entra ID's with groups reach a few
# KB); API Gateway's own header and query limits are 10 KB. Also bounds the
# token of a `refresh` frame (runtime.protocol.frames).
MAX_TOKEN_CHARS = 8192

_PATTERN = re.compile(r"[A-Za-z0-9_.:*-]{1,64}")
_CONTROL_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def has_control_characters(text: str) -> bool:
    return any(
        char in _BIDI_CONTROLS or unicodedata.category(char) in _CONTROL_CATEGORIES for char in text
    )


def _may_show_as(char: str, ascii_char: str) -> bool:
    """``char`` is ``ascii_char``, or a non-ASCII character of the same kind that may look like it.

    A letter stands for any non-ASCII letter (Cyrillic U+0455 for s, Greek omicron for o)
    and the colon for any non-ASCII punctuation, symbol or modifier letter
    (U+2236 RATIO, U+A789 MODIFIER LETTER COLON, ...): no confusables table to
    keep up to date.
    """
    if char == ascii_char:
        return True
    if char.isascii():
        return False
    category = unicodedata.category(char)
    if ascii_char.isalpha():
        return category.startswith("L")
    return category[0] in "PS" or category == "Lm"


def is_system_user_id(user_id: str) -> bool:
    """Whether ``user_id`` is, or could be shown as, a system sender (``system:...``).

    The simplest rule that refuses every look-alike we know of:

    1. NFKC (FULLWIDTH COLON U+FF1A becomes ``:``, compatibility forms their plain
       letters) and casefold (``System`` is ``system``);
    2. drop format characters (Unicode category Cf: zero-width space, joiners,
       soft hyphen, bidi marks) and combining marks (Mn): they are invisible
       or ride on the letter before them;
    3. strip surrounding white space;
    4. compare the first 7 characters with ``system:`` by :func:`_may_show_as`.

    An ASCII id that is not ``system:...`` in some case is never refused. The
    price: a non-ASCII id that *starts* with six letters and a colon-like
    character (six Cyrillic letters and a colon) is refused too, rare in ids and worth it.
    """
    text = unicodedata.normalize("NFKC", user_id).casefold()
    text = "".join(char for char in text if unicodedata.category(char) not in ("Cf", "Mn"))
    text = text.strip()
    return len(text) >= len(SYSTEM_USER_PREFIX) and all(
        _may_show_as(char, want) for char, want in zip(text, SYSTEM_USER_PREFIX, strict=False)
    )


def valid_user_id(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= MAX_USER_ID_CHARS
        and not has_control_characters(value)
    )


def valid_name(value: object) -> bool:
    """A display name (None, the empty string included, means "no name")."""
    if value is None:
        return True
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_CHARS
        and not has_control_characters(value)
    )


def valid_pattern(value: object) -> bool:
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


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
