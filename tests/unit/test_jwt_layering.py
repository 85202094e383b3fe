"""No handler imports PyJWT and cryptography at init in an HS256 deployment (the default): HS256
tokens are verified with hmac (runtime.auth.tokens). An OIDC deployment's authorizer imports them at
init (runtime.auth.token_keys, with ``JWT_ISSUER`` set), where its first token would otherwise pay
for them. ClientMessageHandler's ``refresh`` (runtime.auth.token_refresh) verifies like the
authorizer; its tests are in tests/unit/test_token_expiry.py."""

from __future__ import annotations

import pytest

from bench import cold_start
from tests.unit.lambda_process import run_fresh

LOADED = "print(json.dumps(sorted(m for m in ('jwt', 'cryptography') if m in sys.modules)))"


@pytest.mark.parametrize(
    "module",
    [
        *map(cold_start.importable, cold_start.discover_handlers()),
        "multiregion_chat.runtime.protocol.claims",
        "multiregion_chat.runtime.auth.identity",
        "multiregion_chat.runtime.protocol.chat_model",
        "multiregion_chat.runtime.auth.tokens",
        "multiregion_chat.runtime.auth.token_keys",
        "multiregion_chat.runtime.auth.token_refresh",
    ],
)
def test_module_does_not_import_jwt_or_cryptography(module: str) -> None:
    assert run_fresh(f"import sys, json, {module}\n{LOADED}") == []


def test_an_oidc_authorizer_imports_them_at_init() -> None:
    code = (
        "import os\n"
        "os.environ.update(JWT_ISSUER='https://issuer.example', JWT_AUDIENCE='chat')\n"
        f"import sys, json, multiregion_chat.runtime.handlers.authorizer\n{LOADED}"
    )
    assert run_fresh(code) == ["cryptography", "jwt"]
