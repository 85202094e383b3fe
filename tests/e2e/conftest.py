"""The end-to-end fixtures: the app synthesized once, the sandbox started once (3 regions).

Set ``SANDBOX_TEST_CDK_OUT`` to a synthesized cdk.out to skip the synth while iterating.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import SandboxProcess, synth


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    preset = os.environ.get("SANDBOX_TEST_CDK_OUT")
    if preset:
        return Path(preset).resolve()
    return synth(tmp_path_factory.mktemp("synth") / "cdk.out")


@pytest.fixture(scope="session")
def sandbox(cdk_out: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = SandboxProcess(cdk_out, tmp_path_factory.mktemp("sandbox")).start()
    try:
        yield process
    finally:
        status = process.stop()
        assert status == 0, f"the sandbox exited {status}:\n{process.stderr()[-4000:]}"
