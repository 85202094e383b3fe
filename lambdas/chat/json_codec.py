"""Strict JSON for the wire and for history: the compact encoding, and a decoder
that refuses what is not JSON (``NaN``/``Infinity`` literals, invalid UTF-8,
bad base64), shared by client frames, HTTP requests and the stored messages."""

from __future__ import annotations

import base64
import json
from typing import Any

__all__ = ["compact_json", "loads_strict"]


def compact_json(value: Any) -> str:
    """The compact encoding the size limit is measured on (and history stores)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(raw: str | bytes, is_base64: bool) -> Any:
    """Decode ``raw`` (base64 first when ``is_base64``); raises ValueError
    (json.JSONDecodeError and UnicodeDecodeError are ValueErrors),
    binascii.Error or RecursionError on anything that is not strict JSON."""
    if is_base64:
        raw = base64.b64decode(raw, validate=True)
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw, parse_constant=_reject_constant)
