"""cfn-lint on the synthesized templates of the 3- and 20-region apps, each in its own region.

cfn-lint checks a template against one region's CloudFormation resource
registry and silently uses us-east-1's when told no region, or when it has no
schema for the region it is told. Each region stack therefore names its
region in the template (``Metadata.cfn-lint.config.regions``, set in
infra/region_stack.py) and cfn-lint runs with no ``--regions`` (which would
override it), so every template is linted where it is deployed.
``CFN_LINT_LACKS`` lists the accepted regions cfn-lint has no schema for
(their templates fall back to us-east-1's): none today; me-south-1, the one
region of the partition it lacks, is not accepted (infra/config.py).

Nothing is ignored on the command line. The one warning CDK's output would
raise (W3005: lambda.Function's DependsOn repeats its role next to the Role
GetAtt) is silenced on those resources only, in infra/lambda_function.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import cfnlint
import pytest

from multiregion_chat.infra.config import ACCEPTED_REGIONS

from .helpers import SynthResult
from .template_checks import CFN_LINT_ERROR, CFN_LINT_WARNING, cfn_lint

PROVIDER_SCHEMAS = Path(cfnlint.__file__).parent / "data" / "schemas" / "providers"
# Accepted regions without a cfn-lint schema (linted against us-east-1's).
CFN_LINT_LACKS: frozenset[str] = frozenset()
ERROR, WARNING = CFN_LINT_ERROR, CFN_LINT_WARNING


def _run(templates: list[str]) -> tuple[int, str]:
    return cfn_lint([Path(template) for template in templates])


def _cfn_lint(result: SynthResult) -> tuple[int, str]:
    """Lint every template of ``result``, each in the region it names."""
    templates = result.template_files()
    assert len(templates) == len(result.stacks)
    for region, stack in result.stacks.items():
        template = json.loads((result.outdir / stack.template_file).read_text())
        assert template["Metadata"]["cfn-lint"]["config"]["regions"] == [region]
    return _run([str(path) for path in templates])


def test_accepted_regions_cfn_lint_lacks() -> None:
    lacking = {r for r in ACCEPTED_REGIONS if not (PROVIDER_SCHEMAS / f"{r}.json").is_file()}
    assert lacking == CFN_LINT_LACKS


def test_the_template_region_is_the_one_linted(tmp_path: Path) -> None:
    """A resource type one region lacks: an error there, none where it exists."""
    us_east_1 = set(json.loads((PROVIDER_SCHEMAS / "us-east-1.json").read_text()))
    ap_east_2 = set(json.loads((PROVIDER_SCHEMAS / "ap-east-2.json").read_text()))
    missing = sorted(t for t in us_east_1 - ap_east_2 if t.startswith("AWS::"))[0]
    templates = []
    for region in ("ap-east-2", "us-east-1"):
        path = tmp_path / f"{region}.json"
        path.write_text(
            json.dumps(
                {
                    "Metadata": {"cfn-lint": {"config": {"regions": [region]}}},
                    "Resources": {"Probe": {"Type": missing}},
                }
            )
        )
        templates.append(path)
    code, output = _run([str(path) for path in templates])
    assert code & ERROR, output
    assert "does not exist in 'ap-east-2'" in output
    # The same type in us-east-1 exists (its properties are checked instead).
    assert "does not exist in 'us-east-1'" not in output


def test_three_region_templates_lint_clean(app3: SynthResult) -> None:
    code, output = _cfn_lint(app3)
    assert code & ERROR == 0, output
    assert code & WARNING == 0, output
    assert code == 0, output


@pytest.mark.slow
# The 20-region synth (setup) and 20 templates linted took 112 s + 297 s on
# 2 cores at load average 20: the default 300 s is not generous enough.
@pytest.mark.timeout(1800)
def test_twenty_region_templates_lint_clean(app20: SynthResult) -> None:
    code, output = _cfn_lint(app20)
    assert code & ERROR == 0, output
    assert code & WARNING == 0, output
    assert code == 0, output
