"""Strict JSON for the wire, the bus and history.

Everything the server parses (client frames, HTTP bodies, shard jobs, stored
messages, and a token's header and payload with runtime.auth.tokens' tighter depth
bound) goes through :func:`loads_strict`, everything it writes through
:func:`compact_json`, so one set of rules holds on every path:

* no ``NaN``/``Infinity``, neither as literals nor as a number that overflows
  to infinity (``1e400``): the output would not be JSON;
* at most :data:`MAX_DEPTH` nested arrays/objects. The standard library's
  parser has no depth option; without a bound, depth is limited only by the
  interpreter's recursion limit, which differs between Python versions
  (thousands of levels on 3.13), and every later ``json.dumps`` of the value
  (history, fan-out, clients) recurses as deep again.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any, Final

__all__ = [
    "MAX_BODY_DEPTH",
    "MAX_DEPTH",
    "TooDeepError",
    "compact_json",
    "loads_strict",
    "too_deep",
    "value_too_deep",
]

# A client frame (and an HTTP body) nests at most this deep; a message body
# is one level inside its frame. Chat payloads are flat in practice.
MAX_DEPTH: Final = 32
MAX_BODY_DEPTH: Final = MAX_DEPTH - 1

# A string, closed or not, matched from its opening quote to its closing quote or the end of
# the text. Possessive (``*+``, ``++``) and never failing once it has begun, so the scan is
# linear: a pattern that must see the closing quote fails on an unclosed string and is
# retried from every later quote, quadratic in the number of ``\"`` pairs (issue 18: 3 s of
# CPU for a 32 KB frame, before the rate limit).
_STRING: Final = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")


class TooDeepError(ValueError):
    """The JSON text nests deeper than allowed."""


def compact_json(value: Any) -> str:
    """The compact encoding the size limit is measured on (and history stores).

    ``allow_nan=False``: a non-finite float raises ValueError instead of
    producing ``NaN``/``Infinity``, which no JSON parser accepts.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether ``[``/``{`` nest more than ``limit`` levels outside strings in ``text``.

    Written by hand because the standard library's parser has no depth option
    (and third-party parsers are not on the Lambda runtime). Linear and
    non-recursive: when the text has no more openers than ``limit`` (nearly
    every frame) one C-speed count answers; otherwise strings are removed by
    one regular expression and only the brackets are walked. Malformed text
    (an unclosed string, unbalanced brackets) is left to the parser to refuse.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def value_too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether a decoded value nests more than ``limit`` arrays/objects (``[]`` is 1).

    Iterative, for values parsed by others (EventBridge events reach the
    handler already decoded); stops at the first level past ``limit``.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf
        raise ValueError(f"number {text[:32]} is out of range")
    return value


def loads_strict(raw: str | bytes, is_base64: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``raw`` (base64 first when ``is_base64``) as strict JSON.

    Raises ValueError (json.JSONDecodeError, UnicodeDecodeError and
    :class:`TooDeepError`, past ``max_depth``, are ValueErrors) or
    binascii.Error on anything that is not strict JSON.
    """
    if is_base64:
        raw = base64.b64decode(raw, validate=True)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if too_deep(raw, max_depth):
        raise TooDeepError(f"JSON nests deeper than {max_depth} levels")
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
