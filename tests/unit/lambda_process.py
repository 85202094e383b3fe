"""Run code in a fresh interpreter with the environment Lambda gives a function."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import cold_start

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(code: str) -> Any:
    """Run ``code`` with the repository root (the package ``multiregion_chat``) on the path and
    Lambda's environment; its last
    printed line, parsed as JSON."""
    env = {**cold_start.LAMBDA_ENV, "PYTHONPATH": str(ROOT)}
    env["PATH"] = str(Path(sys.executable).parent)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
