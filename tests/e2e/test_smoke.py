"""``python -m tools.smoke --endpoints-file ...`` against the sandbox, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

from .harness import REGIONS, REPO, SandboxProcess


def test_smoke_check_passes_against_the_sandbox(sandbox: SandboxProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--endpoints-file", str(sandbox.endpoints_file)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    rows = {
        cells[0]: cells
        for line in result.stdout.splitlines()
        if (cells := re.split(r"\s{2,}", line.strip()))[0] in REGIONS
    }
    assert list(rows) == list(REGIONS)
    for cells in rows.values():
        # connect, sent, received (every region's message, once), replica, latency, result
        assert cells[1] == "ok" and cells[2].startswith("ok") and cells[3] == "3/3", cells
        assert cells[4] == "skipped" and cells[5].startswith("max ") and cells[6] == "PASS"
    assert "exposes no Secrets Manager endpoint" in result.stdout
    assert result.stdout.rstrip().endswith("PASS: 3 region(s)")


def test_smoke_check_fails_when_a_region_is_unreachable(sandbox: SandboxProcess, tmp_path) -> None:
    """A region whose endpoint does not answer fails the check (exit 1), the others pass."""
    import json

    document = json.loads(sandbox.endpoints_file.read_text())
    document["regions"]["eu-west-1"]["websocket"] = "ws://127.0.0.1:9/prod"  # discard port
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps(document))
    result = subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--endpoints-file", str(endpoints), "--settle", "0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "eu-west-1: connect: " in result.stdout
    assert result.stdout.rstrip().endswith("FAIL: eu-west-1")
