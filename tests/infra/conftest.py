"""Shared synthesized apps for the infrastructure tests.

Synthesis costs seconds (jsii + cdk-nag), so each app shape is synthesized
once per session and shared: the 3-region default app serves the template,
cfn-lint and moto tests, the 20-region app the scaling and cfn-lint tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import SynthResult, synth

TWENTY_REGIONS = (
    "us-east-1,us-east-2,us-west-1,us-west-2,ca-central-1,eu-west-1,eu-west-2,eu-west-3,"
    "eu-central-1,eu-north-1,eu-south-1,ap-northeast-1,ap-northeast-2,ap-northeast-3,"
    "ap-southeast-1,ap-southeast-2,ap-south-1,sa-east-1,me-central-1,af-south-1"
)


@pytest.fixture(scope="session")
def app3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    """The app exactly as cdk.json configures it (3 regions, prod)."""
    yield synth({}, tmp_path_factory.mktemp("app3"))


@pytest.fixture(scope="session")
def app20(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    """20 regions: 19 forwarding targets per stack, 4 forwarding rules."""
    yield synth({"regions": TWENTY_REGIONS}, tmp_path_factory.mktemp("app20"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
