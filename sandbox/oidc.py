"""``python -m sandbox --oidc``: the sandbox as a small OpenID Connect identity provider.

A deployment synthesized with ``-c jwtIssuer=<issuer> -c jwtAudience=<aud>`` declares its token
issuer and audience as the stack outputs ``TokenIssuer`` and ``TokenAudience`` (the stack's
public interface, what clients of a deployment read too). With ``--oidc`` the sandbox becomes
that issuer, whatever URL it is: it generates an RSA key pair, serves the discovery document
and the JWKS at ``http://127.0.0.1:<web port>/oidc``, and maps the synthesized issuer URL to
that local URL wherever it occurs in a function's environment, the way it maps the APIs'
``execute-api`` URLs to local ports (docs/sandbox.md). The authorizer then fetches the keys
from the sandbox and checks ``iss`` against the local URL; nothing is named by handler.

The endpoints file gets ``"oidc": {"issuer", "audience", "kid", "privateKeyFile"}`` (the
private key in PEM under the state directory, readable by the user only): the bundled clients
mint RS256 tokens with it (``clients.tokens.minter_from_endpoints``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["AUDIENCE_OUTPUT", "ISSUER_OUTPUT", "LocalIdentityProvider", "declared_issuer"]

ISSUER_OUTPUT = "TokenIssuer"
AUDIENCE_OUTPUT = "TokenAudience"
PATH = "/oidc"


def declared_issuer(outputs: list[dict[str, Any]]) -> tuple[str, str] | None:
    """``(issuer, audience)`` the templates declare (the same in every region), or None."""
    found = {
        (str(o[ISSUER_OUTPUT]), str(o[AUDIENCE_OUTPUT]))
        for o in outputs
        if o.get(ISSUER_OUTPUT) and o.get(AUDIENCE_OUTPUT)
    }
    if len(found) > 1:
        raise ValueError(f"the stacks declare different token issuers: {sorted(found)}")
    return next(iter(found), None)


@dataclass
class LocalIdentityProvider:
    """The key pair and the documents of the local issuer."""

    synthesized_issuer: str
    audience: str
    issuer: str  # http://127.0.0.1:<port>/oidc
    kid: str
    private_key_file: Path
    _public_jwk: dict[str, Any]

    @staticmethod
    def create(
        synthesized_issuer: str, audience: str, web_port: int, state_dir: Path
    ) -> LocalIdentityProvider:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = f"sandbox-{secrets.token_hex(4)}"
        folder = state_dir / "oidc"
        folder.mkdir(parents=True, exist_ok=True)
        path = (folder / "private-key.pem").resolve()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as sink:
            sink.write(pem)
        os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        public.pop("key_ops", None)
        public.update({"kid": kid, "use": "sig", "alg": "RS256"})
        return LocalIdentityProvider(
            synthesized_issuer=synthesized_issuer,
            audience=audience,
            issuer=f"http://127.0.0.1:{web_port}{PATH}",
            kid=kid,
            private_key_file=path,
            _public_jwk=public,
        )

    def local_url(self, value: str) -> str:
        """``value`` with the synthesized issuer URL (a whole value or its prefix) made local."""
        issuer = self.synthesized_issuer.rstrip("/")
        if value.rstrip("/") == issuer:
            return self.issuer + ("/" if value.endswith("/") else "")
        if value.startswith(issuer + "/"):
            return self.issuer + value[len(issuer) :]
        return value

    def endpoints_entry(self) -> dict[str, str]:
        return {
            "issuer": self.issuer,
            "audience": self.audience,
            "kid": self.kid,
            "privateKeyFile": str(self.private_key_file),
        }

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["id_token"],
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._public_jwk]}

    def add_routes(self, app: web.Application) -> None:
        async def discovery(_: web.Request) -> web.Response:
            return web.json_response(self.discovery())

        async def jwks(_: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        app.router.add_get(f"{PATH}/.well-known/openid-configuration", discovery)
        app.router.add_get(f"{PATH}/jwks.json", jwks)
