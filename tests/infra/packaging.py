"""What the packaging tests share (test_wheel.py, test_example_app.py): a copy of the checkout
as a build sees it, pip kept offline, and venvs that see this test environment's packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from .helpers import REPO_ROOT

# What a wheel build needs from the checkout (everything else stays behind).
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", ".venv-checkov", "node_modules", "cdk.out", ".cache", ".bench", ".sandbox",
    "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
)  # fmt: skip
# The test environment's packages (the CDK libraries, setuptools, the clients' dependencies).
TEST_SITE = sysconfig.get_paths()["purelib"]


def run_checked(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def copy_checkout(destination: Path) -> Path:
    shutil.copytree(REPO_ROOT, destination, ignore=NOT_SHIPPED)
    return destination


def offline_pip_env() -> dict[str, str]:
    """This environment, with pip offline (pip's own settings, not other commands): no index,
    and the environment's setuptools instead of an isolated build environment."""
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def venv_seeing_tests(folder: Path, env: dict[str, str]) -> Path:
    """``python -m venv .venv`` in ``folder`` (with this Python: the one the tests pin), whose
    site-packages also sees TEST_SITE through a ``.pth`` file; its site-packages."""
    run_checked([sys.executable, "-m", "venv", ".venv"], cwd=folder, env=env)
    (site,) = (folder / ".venv" / "lib").glob("python3.*/site-packages")
    (site / "test-environment.pth").write_text(TEST_SITE + "\n")
    return site
