"""Only the authorizer imports PyJWT and cryptography at init: no other handler may import them,
directly or through ``chat.*`` (``chat.claims`` is the standard-library part).
ClientMessageHandler imports them on its first ``refresh`` (chat.token_refresh), so its
cold start stays without them; its ``refresh`` tests are in tests/unit/test_token_expiry.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cold_start

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_THE_LAYER = [name for name in cold_start.discover_handlers() if name not in ("authorizer",)]


@pytest.mark.parametrize(
    "module",
    [*WITHOUT_THE_LAYER, "chat.claims", "chat.identity", "chat.model", "chat.token_refresh"],
)
def test_module_does_not_import_jwt_or_cryptography(module: str) -> None:
    env = {**cold_start.LAMBDA_ENV, "PYTHONPATH": str(ROOT / "lambdas")}
    env["PATH"] = str(Path(sys.executable).parent)
    code = (
        f"import sys, json, {module}\n"
        "print(json.dumps(sorted(m for m in ('jwt', 'cryptography') if m in sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
