"""HS256 JWTs as the protocol defines them (docs/protocol.md), standard library only.

For local use: the sandbox's endpoints file carries its signing secret, so the CLI client and
the sandbox's token endpoint (for the web page) can mint tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Sequence


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(
    secret: str,
    sub: str,
    *,
    name: str | None = None,
    rooms: Sequence[str] | None = None,
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> str:
    claims: dict[str, object] = {"sub": sub, "exp": int((now or time.time()) + ttl_seconds)}
    if name:
        claims["name"] = name
    if rooms is not None:
        claims["rooms"] = list(rooms)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"
