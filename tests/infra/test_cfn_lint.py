"""cfn-lint on the synthesized templates of the 3- and 20-region apps.

Nothing is ignored on the command line. The one warning CDK's output would
raise (W3005: lambda.Function's DependsOn repeats its role next to the Role
GetAtt) is silenced on those three resources only, in stacks/functions.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .helpers import SynthResult

# cfn-lint's exit code is a bit mask (8 = informational, not checked).
ERROR, WARNING = 2, 4


def _cfn_lint(result: SynthResult) -> tuple[int, str]:
    """Lint every template of ``result``; (OR of the exit codes, combined output)."""
    executable = shutil.which(
        "cfn-lint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    )
    assert executable, "cfn-lint is not installed (requirements-dev.txt)"
    templates = [str(path) for path in result.template_files()]
    assert len(templates) == len(result.stacks)
    # cfn-lint is single-threaded: one process per core halves the 20-region run.
    workers = max(1, min(os.cpu_count() or 1, 4, len(templates)))
    processes = [
        subprocess.Popen(
            [executable, "--regions", *result.config.regions, "--", *templates[i::workers]],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    code, output = 0, ""
    for process in processes:
        out, _ = process.communicate(timeout=600)
        code |= process.returncode
        output += out
    return code, output


def test_three_region_templates_lint_clean(app3: SynthResult) -> None:
    code, output = _cfn_lint(app3)
    assert code & ERROR == 0, output
    assert code & WARNING == 0, output
    assert code == 0, output


@pytest.mark.slow
def test_twenty_region_templates_lint_clean(app20: SynthResult) -> None:
    code, output = _cfn_lint(app20)
    assert code & ERROR == 0, output
    assert code & WARNING == 0, output
    assert code == 0, output
