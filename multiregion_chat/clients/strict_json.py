"""Parsing server frames without trusting them: the clients' half of the
server's JSON rules (runtime/protocol/json_codec.py).

A frame nesting deeper than :data:`MAX_FRAME_DEPTH`, or holding ``NaN`` /
``Infinity`` (or a number that overflows to it), raises ValueError instead of
reaching the renderer: without the bound, depth is limited only by the
interpreter's recursion limit and a later ``json.dumps`` of the body crashes
the client. Kept separate from the server's module because the clients ship
without the Lambda code; the scan is the same small linear one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

__all__ = ["MAX_FRAME_DEPTH", "loads_frame"]

# The server accepts 32 levels in a client frame (so 31 in a body) and nests a
# body at most 3 levels deeper in its own frames (history: frame, messages,
# entry): 64 leaves room for that and refuses the pathological.
MAX_FRAME_DEPTH: Final = 64

_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")


def _too_deep(text: str, limit: int) -> bool:
    # Hand-written: the standard library's parser has no depth option. One
    # C-speed count answers for nearly every frame; otherwise strings are
    # removed and only the brackets are walked (linear, no recursion).
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def loads_frame(raw: str | bytes, max_depth: int = MAX_FRAME_DEPTH) -> Any:
    """Decode one server frame (or HTTP reply); ValueError if it is not strict
    JSON or nests deeper than ``max_depth``."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if _too_deep(text, max_depth):
        raise ValueError(f"frame nests deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
