"""``python -m tools.smoke --endpoints-file ...`` against the sandbox, as a user runs it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from .harness import REGIONS, REPO, SandboxProcess


def run_smoke(endpoints_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m tools.smoke --endpoints-file ...`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "tools.smoke", "--endpoints-file", str(endpoints_file), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def endpoints_with(sandbox: SandboxProcess, tmp_path: Path, **changes: Any) -> Path:
    """A copy of the sandbox's endpoints file with top-level entries replaced."""
    document = {**json.loads(sandbox.endpoints_file.read_text()), **changes}
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps(document))
    return endpoints


def test_smoke_check_passes_against_the_sandbox(sandbox: SandboxProcess) -> None:
    result = run_smoke(sandbox.endpoints_file)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    rows = {
        cells[0]: cells
        for line in result.stdout.splitlines()
        if (cells := re.split(r"\s{2,}", line.strip()))[0] in REGIONS
    }
    assert list(rows) == list(REGIONS)
    for region, cells in rows.items():
        # connect, sent, received (every region's message, once), replica, latency,
        # attachment, result
        assert cells[1] == "ok" and cells[2].startswith("ok") and cells[3] == "3/3", cells
        # The sandbox's moto replicates the first region's secret as the template says.
        assert cells[4] == ("primary" if region == REGIONS[0] else "InSync"), cells
        assert cells[5].startswith("max ") and cells[7] == "PASS"
        # The first region's upload, read back from each other region's own bucket (the
        # sandbox's replication from the rules the custom resource wrote), same sha256.
        assert cells[6] == "uploaded" if region == REGIONS[0] else cells[6].startswith("own copy")
    assert result.stdout.rstrip().endswith("PASS: 3 region(s)")


def test_smoke_check_fails_when_a_region_is_unreachable(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """A region whose endpoint does not answer fails the check (exit 1), the others pass."""
    regions = json.loads(sandbox.endpoints_file.read_text())["regions"]
    regions["eu-west-1"]["websocket"] = "ws://127.0.0.1:9/prod"  # discard port
    result = run_smoke(endpoints_with(sandbox, tmp_path, regions=regions), "--settle", "0")
    assert result.returncode == 1, result.stdout
    assert "eu-west-1: connect: " in result.stdout
    assert "us-east-1: " not in result.stdout
    assert result.stdout.rstrip().endswith("FAIL: eu-west-1")


def test_a_failed_secret_replica_fails_the_smoke_check(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    """A replica that Secrets Manager reports as Failed (CloudFormation would still say
    CREATE_COMPLETE) fails the check: a second secret of another name, made in moto with a
    replica to a region where that name is taken, stands in for the leftover."""
    import boto3

    from tools.smoke.cli import SANDBOX_CREDENTIALS

    url = sandbox.endpoints["secretsmanager"]
    name = f"smoke-test/{tmp_path.name}"

    def client(region: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            "secretsmanager", region_name=region, endpoint_url=url, **SANDBOX_CREDENTIALS
        )

    client("ap-northeast-1").create_secret(Name=name, SecretString="left over")
    client("us-east-1").create_secret(
        Name=name,
        SecretString=sandbox.signing_secret,
        AddReplicaRegions=[{"Region": "eu-west-1"}, {"Region": "ap-northeast-1"}],
    )
    endpoints = endpoints_with(sandbox, tmp_path, signingSecretName=name)
    result = run_smoke(endpoints, "--settle", "0")
    assert result.returncode == 1, result.stdout
    assert "ap-northeast-1: signing secret replica Failed" in result.stdout
    assert result.stdout.rstrip().endswith("FAIL: ap-northeast-1")
