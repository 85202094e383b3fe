"""The AWS requests of each scenario, counted by the sandbox, are exactly the checked-in table.

A new request on a hot path fails here: it is then a decision (regenerate the table with
``python -m bench.calls --write-expected`` and say why in the change), not an accident.

The scenarios run in a sandbox of their own (nothing another test left running is counted),
started through ``tests.e2e.harness`` as ``bench.calls`` imports it, so both share its tokens.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.calls import EXPECTED_FILE, differences, measure_calls, start_sandbox
from tests.e2e.harness import REGIONS


def test_each_scenario_makes_exactly_the_expected_requests(
    cdk_out: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = json.loads(EXPECTED_FILE.read_text())
    sandbox = start_sandbox(cdk_out, tmp_path_factory.mktemp("calls"))
    try:
        measured = asyncio.run(measure_calls(sandbox, REGIONS))
    finally:
        assert sandbox.stop() == 0, sandbox.stderr()[-4000:]
    found = differences(expected, measured)
    assert not found, (
        "the app's AWS requests changed (if on purpose: python -m bench.calls "
        "--write-expected, and say why):\n" + "\n".join(found)
    )
