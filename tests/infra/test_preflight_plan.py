"""The preflight reads a real cdk.out the way `cdk synth` writes it (tools/preflight/plan.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.preflight.plan import PlanError, plan_from_cdk_out, plan_from_config

from .helpers import SynthResult


def test_the_cdk_out_plan_matches_the_templates_and_the_config(app3: SynthResult) -> None:
    plans = plan_from_cdk_out(app3.outdir, app3.config)
    assert [plan.region for plan in plans] == list(app3.config.regions)
    for plan, from_config in zip(plans, plan_from_config(app3.config), strict=True):
        assert plan.stack_name == from_config.stack_name
        # The same total whether counted from the templates or from the config.
        assert plan.reserved_total == from_config.reserved_total == 100
        assert plan.bootstrap_version >= 6
        assert plan.bootstrap_parameter == "/cdk-bootstrap/hnb659fds/version"


def test_a_cdk_out_of_another_stage_is_refused(app3: SynthResult, tmp_path: Path) -> None:
    other = app3.config.__class__(stage="dev", regions=app3.config.regions)
    with pytest.raises(PlanError, match="has no stack chat-dev-us-east-1"):
        plan_from_cdk_out(app3.outdir, other)
    with pytest.raises(PlanError, match="cannot read"):
        plan_from_cdk_out(tmp_path, app3.config)
