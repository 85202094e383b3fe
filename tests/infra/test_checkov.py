"""checkov over every synthesized template: no finding without a reason.

Accepted findings are skipped on their resources, each with its reason, from
one list (infra/checkov.py); everything else fails here with the check, the
resource and the template. checkov lives in its own venv (``make
checkov-setup``; ``CHECKOV`` names another executable).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import SynthResult, synth
from .test_global_endpoint import DOMAIN, ZONE

pytestmark = pytest.mark.slow  # about 30 s over the three templates

REPO_ROOT = Path(__file__).resolve().parents[2]


def _checkov() -> str:
    executable = os.environ.get("CHECKOV") or str(REPO_ROOT / ".venv-checkov" / "bin" / "checkov")
    assert Path(executable).exists(), (
        f"checkov not found at {executable}: run `make checkov-setup` (or set CHECKOV)"
    )
    return executable


def _reports(result: SynthResult) -> list[dict[str, Any]]:
    templates = [str(path) for path in result.template_files()]
    assert len(templates) == len(result.stacks)
    done = subprocess.run(
        # --skip-download: no call to the vendor's API (offline, deterministic).
        [_checkov(), "--framework", "cloudformation", "--skip-download", "--compact", "-o", "json"]
        + [arg for template in templates for arg in ("-f", template)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]  # 1 = failed checks
    report = json.loads(done.stdout)
    return report if isinstance(report, list) else [report]


@pytest.fixture(scope="module", params=["default", "global-endpoint"])
def app_shape(
    request: pytest.FixtureRequest, app3: SynthResult, tmp_path_factory: pytest.TempPathFactory
) -> SynthResult:
    """The default app, and the one with every optional resource (the global endpoint)."""
    if request.param == "default":
        return app3
    return synth({"domainName": DOMAIN, "hostedZoneId": ZONE}, tmp_path_factory.mktemp("ckv"))


def test_checkov_reports_no_unexplained_failure(app_shape: SynthResult) -> None:
    reports = _reports(app_shape)
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
        for report in reports
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, (
        "checkov findings with no reason in multiregion_chat/infra/checkov.py:\n"
        + "\n".join(failed)
    )
    skipped = [check for report in reports for check in report["results"]["skipped_checks"]]
    assert skipped, (
        "expected the suppressions of multiregion_chat/infra/checkov.py to reach the templates"
    )
    assert all(check["check_result"].get("suppress_comment") for check in skipped)
    assert {report["summary"]["resource_count"] > 0 for report in reports} == {True}
