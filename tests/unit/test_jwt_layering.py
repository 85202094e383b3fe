"""Only the authorizer imports PyJWT and cryptography at init: no other handler may import them,
directly or through ``chat.*`` (``chat.claims`` is the standard-library part).
ClientMessageHandler imports them on its first ``refresh`` (chat.token_refresh), so its
cold start stays without them; its ``refresh`` tests are in tests/unit/test_token_expiry.py."""

from __future__ import annotations

import pytest

from bench import cold_start
from tests.unit.lambda_process import run_fresh

WITHOUT_THE_LAYER = [name for name in cold_start.discover_handlers() if name not in ("authorizer",)]


@pytest.mark.parametrize(
    "module",
    [*WITHOUT_THE_LAYER, "chat.claims", "chat.identity", "chat.model", "chat.token_refresh"],
)
def test_module_does_not_import_jwt_or_cryptography(module: str) -> None:
    code = (
        f"import sys, json, {module}\n"
        "print(json.dumps(sorted(m for m in ('jwt', 'cryptography') if m in sys.modules)))"
    )
    assert run_fresh(code) == []
