"""A team's FunctionSpec: CDK's terms (memory_size in MB, timeout a Duration), Lambda's ranges."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from typing import Any

import pytest
from aws_cdk import Duration

from multiregion_chat import FunctionSpec


def spec(**sizes: Any) -> FunctionSpec:
    return FunctionSpec(code_dir="team_handlers", handler="whoami.handler", **sizes)


def test_defaults_are_the_built_in_functions_size() -> None:
    default = spec()
    assert default.memory_size == 256
    assert default.timeout.to_seconds() == 10


@pytest.mark.parametrize(
    "sizes",
    [
        {"memory_size": 128, "timeout": Duration.seconds(1)},
        {"memory_size": 10_240, "timeout": Duration.minutes(15)},
        {"timeout": Duration.millis(30_000)},
    ],
)
def test_lambdas_limits_are_accepted(sizes: dict[str, Any]) -> None:
    assert spec(**sizes)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ({"memory_size": 127}, "memory_size 127: Lambda accepts an integer from 128 to 10240 (MB)"),
        ({"memory_size": 10_241}, "memory_size 10241: Lambda accepts an integer from 128 to"),
        ({"memory_size": 512.0}, "memory_size 512.0: Lambda accepts an integer"),
        ({"memory_size": True}, "memory_size True: Lambda accepts an integer"),
        ({"timeout": 30}, "timeout 30 is not a Duration: give e.g. timeout=Duration.seconds(30)"),
        ({"timeout": Duration.seconds(0)}, "timeout 0 seconds: Lambda accepts whole seconds"),
        ({"timeout": Duration.seconds(901)}, "from 1 to 900"),
        ({"timeout": Duration.millis(1_500)}, "timeout 1 second 500 millis: Lambda accepts whole"),
    ],
)
def test_sizes_outside_lambdas_ranges_are_refused(sizes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^FunctionSpec ") as refused:
        spec(**sizes)
    assert message in str(refused.value)
