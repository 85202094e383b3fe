"""Chat tokens as the protocol defines them (docs/protocol.md, "Tokens"), minted with PyJWT.

Two kinds:

* HS256 with the deployment's signing secret (the default). The secret is one
  key or a rotation document ``{"current": ..., "previous": ..., "next": ...}``;
  tokens are signed with ``current`` and carry its ``kid`` (a fingerprint of the
  key, the same function as the authorizer's ``runtime.auth.tokens.hmac_key_id``).
* RS256 from a private key (the sandbox's identity provider, ``python -m sandbox
  --oidc``: the endpoints file's ``oidc`` entry gives issuer, audience, ``kid``
  and the key file).

The sandbox's endpoints file carries either, so the CLI client, the tests and the
sandbox's token endpoint (for the web page) mint tokens with it. For a deployment
in AWS, mint one from the command line with the deployment's secret (README,
"Tokens")::

    aws secretsmanager get-secret-value --secret-id chat/prod/token-signing-secret \\
        --query SecretString --output text --region us-east-1 \\
      | python -m multiregion_chat.clients.tokens --secret-file - --sub alice --name Alice \\
          --rooms 'lobby,team-*'

The secret comes from ``--secret-file`` (``-``: standard input), the environment variable
``CHAT_SIGNING_SECRET`` or a sandbox ``--endpoints-file``; never from the command line, where
other users could read it in the process list. The token is printed on standard output.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import jwt

__all__ = [
    "Signer",
    "TokenOptions",
    "current_key",
    "hmac_key_id",
    "mint_token",
    "minter_from_endpoints",
]

Minter = Callable[..., str]


def hmac_key_id(key: str) -> str:
    """The ``kid`` of an HS256 key (must equal ``runtime.auth.tokens.hmac_key_id``; a test
    ties them)."""
    digest = hashlib.sha256(b"chat-hs256-kid\0" + key.encode("utf-8")).digest()
    return "hs-" + base64.urlsafe_b64encode(digest[:9]).decode("ascii")


def current_key(secret: str) -> str:
    """The key signers use: the secret itself, or the ``current`` key of a rotation document."""
    text = secret.strip()
    if text.startswith("{"):
        document = json.loads(text)
        current = document.get("current") if isinstance(document, dict) else None
        if not isinstance(current, str) or not current:
            raise ValueError('the secret\'s JSON has no "current" key')
        return current
    return text


class TokenOptions(TypedDict, total=False):
    """The chat claims a token carries besides ``sub`` (see :meth:`Signer.mint`)."""

    name: str | None
    rooms: Sequence[str] | None
    ttl_seconds: int
    now: float | None


@dataclass(frozen=True)
class Signer:
    """A signing key: the algorithm, the key, its ``kid`` and the claims every token of
    this key carries (an identity provider's ``iss`` and ``aud``). The one minting path
    for both kinds of token."""

    algorithm: str
    key: str = field(repr=False)  # a secret or a private key: never in a repr or a log
    kid: str
    fixed_claims: Mapping[str, str] = field(default_factory=dict)

    @staticmethod
    def hs256(secret: str) -> Signer:
        """The signing secret's current key."""
        key = current_key(secret)
        return Signer(algorithm="HS256", key=key, kid=hmac_key_id(key))

    @staticmethod
    def from_oidc_entry(entry: Mapping[str, Any]) -> Signer:
        """RS256 as the identity provider of an endpoints file's ``oidc`` entry issues."""
        return Signer(
            algorithm="RS256",
            key=Path(str(entry["privateKeyFile"])).read_text(encoding="utf-8"),
            kid=str(entry["kid"]),
            fixed_claims={"iss": str(entry["issuer"]), "aud": str(entry["audience"])},
        )

    def mint(
        self,
        sub: str,
        *,
        name: str | None = None,
        rooms: Sequence[str] | None = None,
        ttl_seconds: int = 3600,
        now: float | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {"sub": sub, "iat": issued, "exp": issued + ttl_seconds}
        if name:
            claims["name"] = name
        if rooms is not None:
            claims["rooms"] = list(rooms)
        claims.update(self.fixed_claims)
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"kid": self.kid})


def mint_token(secret: str, sub: str, **options: Unpack[TokenOptions]) -> str:
    """An HS256 token signed with the secret's current key."""
    return Signer.hs256(secret).mint(sub, **options)


def minter_from_endpoints(document: Mapping[str, Any]) -> Minter | None:
    """``mint(sub, name=..., rooms=..., ttl_seconds=...)`` for a sandbox endpoints document:
    RS256 when it has an ``oidc`` entry, else HS256 with its ``signingSecret``; None when it
    has neither (an app without auth)."""
    entry = document.get("oidc")
    if isinstance(entry, Mapping):
        return Signer.from_oidc_entry(entry).mint
    secret = document.get("signingSecret")
    if isinstance(secret, str) and secret:
        return lambda sub, **options: mint_token(secret, sub, **options)
    return None


def _secret(args: argparse.Namespace) -> str:
    if args.secret_file == "-":
        return sys.stdin.read().strip()
    if args.secret_file:
        return Path(args.secret_file).read_text(encoding="utf-8").strip()
    if os.environ.get("CHAT_SIGNING_SECRET"):
        return os.environ["CHAT_SIGNING_SECRET"].strip()
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multiregion_chat.clients.tokens",
        description="Mint a chat token (HS256 with the signing secret's current key, or "
        "RS256 from a sandbox endpoints file with an oidc entry).",
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
    rooms = [r.strip() for r in args.rooms.split(",") if r.strip()] if args.rooms else None
    options: dict[str, Any] = {"name": args.name, "rooms": rooms, "ttl_seconds": args.ttl}
    secret = _secret(args)
    if secret:
        print(mint_token(secret, args.sub, **options))
        return 0
    if args.endpoints_file:
        document = json.loads(Path(args.endpoints_file).read_text(encoding="utf-8"))
        mint = minter_from_endpoints(document)
        if mint is not None:
            print(mint(args.sub, **options))
            return 0
    parser.error("no key: --secret-file, CHAT_SIGNING_SECRET or --endpoints-file")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
