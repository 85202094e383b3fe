"""HS256 JWTs as the protocol defines them (docs/protocol.md), standard library only.

The sandbox's endpoints file carries its signing secret, so the CLI client and the sandbox's
token endpoint (for the web page) mint tokens with it. For a deployment in AWS, mint one from
the command line with the deployment's secret (README, "Tokens")::

    aws secretsmanager get-secret-value --secret-id chat/prod/token-signing-secret \
        --query SecretString --output text --region us-east-1 \
      | python -m clients.tokens --secret-file - --sub alice --name Alice --rooms 'lobby,team-*'

The secret comes from ``--secret-file`` (``-``: standard input), the environment variable
``CHAT_SIGNING_SECRET`` or a sandbox ``--endpoints-file``; never from the command line, where
other users could read it in the process list. The token is printed on standard output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


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


def _secret(args: argparse.Namespace) -> str:
    if args.secret_file == "-":
        return sys.stdin.read().strip()
    if args.secret_file:
        return Path(args.secret_file).read_text(encoding="utf-8").strip()
    if os.environ.get("CHAT_SIGNING_SECRET"):
        return os.environ["CHAT_SIGNING_SECRET"].strip()
    if args.endpoints_file:
        document = json.loads(Path(args.endpoints_file).read_text(encoding="utf-8"))
        return str(document.get("signingSecret") or "")
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.tokens", description="Mint a chat token (HS256 JWT)."
    )
    parser.add_argument("--sub", required=True, help="user id (1-128 characters)")
    parser.add_argument("--name", default=None, help="display name (at most 64 characters)")
    parser.add_argument(
        "--rooms", default=None, help="comma-separated room patterns (default: every room)"
    )
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    parser.add_argument("--secret-file", default=None, help="file with the secret; - for stdin")
    parser.add_argument("--endpoints-file", default=None, help="a sandbox endpoints file")
    args = parser.parse_args(argv)
    if not 1 <= len(args.sub) <= 128 or (args.name and len(args.name) > 64) or args.ttl <= 0:
        parser.error("--sub must be 1-128 characters, --name at most 64, --ttl > 0")
    secret = _secret(args)
    if not secret:
        parser.error("no secret: --secret-file, CHAT_SIGNING_SECRET or --endpoints-file")
    rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
    print(mint_token(secret, args.sub, name=args.name, rooms=rooms, ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
