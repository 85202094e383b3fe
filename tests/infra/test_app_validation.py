"""``cdk synth`` runs cdk-nag always and CDK's built-in CloudFormation validation on request.

The built-in plugin (cfn-lint's rules in WebAssembly) cost most of the synth's
CPU time; cfn-lint itself runs in test_cfn_lint.py, and this suite's apps
(helpers.make_app) keep the built-in plugin on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import app
from multiregion_chat.infra import bundling


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, False), ("", False), ("false", False), ("true", True), ("TRUE", True)],
)
def test_builtin_validation_is_opt_in(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("CDK_VALIDATION", raising=False)
    else:
        monkeypatch.setenv("CDK_VALIDATION", value)
    assert app.builtin_validation() is expected


def test_layer_that_cannot_be_built_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Registry out of reach and a cold cache: `cdk synth` says which wheel, in one line."""
    offline = tmp_path / "offline_pip.py"
    offline.write_text(
        "import sys\n"
        "print('ERROR: No matching distribution found for aiohttp==3.14.5', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    monkeypatch.setattr(bundling, "PIP", [sys.executable, str(offline)])
    monkeypatch.setenv(bundling.CACHE_ENV, str(tmp_path / "cold"))
    monkeypatch.setenv("CDK_OUTDIR", str(tmp_path / "out"))
    assert app.main() == 1
    (line,) = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(bundling.LAYER_BUILD_FAILED)
    assert "no wheel of aiohttp==3.14.5 for cp314 manylinux2014_aarch64" in line
