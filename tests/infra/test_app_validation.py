"""``cdk synth`` runs cdk-nag always and CDK's built-in CloudFormation validation on request.

The built-in plugin (cfn-lint's rules in WebAssembly) cost most of the synth's
CPU time; cfn-lint itself runs in test_cfn_lint.py, and this suite's apps
(helpers.make_app) keep the built-in plugin on.
"""

from __future__ import annotations

import pytest

import app


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
