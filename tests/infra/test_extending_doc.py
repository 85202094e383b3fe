"""docs/extending.md runs: its Python blocks, in order, then a synth and the template checks.

The blocks share one namespace, like one app.py would; the test provides
``context`` (cdk.json's, two regions to keep it quick) and synthesizes the
``app`` they built. cdk-nag runs in that synth (ChatDeployment enables it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .helpers import CDK_JSON_CONTEXT, REPO_ROOT, resources
from .template_checks import (
    check_no_wildcards_except_xray,
    check_queues_enforce_tls,
    check_rule_targets,
)

DOC = REPO_ROOT / "docs" / "extending.md"
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
REGIONS = ["us-east-1", "eu-west-1"]


def python_blocks() -> list[str]:
    return _PYTHON_BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_a_block_per_extension_point() -> None:
    code = "\n".join(python_blocks())
    for call in (
        "ChatDeployment(",
        "RegionOverrides(",
        "add_client_route(",
        "@client_action(",
        "add_bus_consumer_function(",
        "add_bus_consumer(",
        "add_environment(",
        "add_to_role_policy(",
        "grant_publish(",
        "grant_disconnect(",
    ):
        assert call in code, call


def test_the_doc_synthesizes_and_passes_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the blocks name folders relative to the repository
    namespace: dict[str, object] = {
        "__name__": "extending_doc",
        "context": {**CDK_JSON_CONTEXT, "regions": ",".join(REGIONS)},
    }
    for number, block in enumerate(python_blocks(), start=1):
        exec(compile(block, f"docs/extending.md block {number}", "exec"), namespace)
    app = namespace["app"]
    assembly = app.synth(force=True)  # type: ignore[attr-defined]
    templates = {
        stack.stack_name: stack.template
        for stack in assembly.stacks  # type: ignore[attr-defined]
    }
    assert sorted(templates) == sorted(f"chat-prod-{region}" for region in REGIONS)
    for template in templates.values():
        check_rule_targets(template)
        check_no_wildcards_except_xray(template)
        check_queues_enforce_tls(template)
    eu = templates["chat-prod-eu-west-1"]
    by_handler = {
        f["Properties"]["Handler"]: f["Properties"]
        for f in resources(eu, "AWS::Lambda::Function").values()
    }
    assert {"whoami.handler", "moderation.handler"} <= set(by_handler)
    # FunctionSpec's memory_size and Duration timeout, as CloudFormation's MB and seconds.
    whoami = by_handler["whoami.handler"]
    assert (whoami["MemorySize"], whoami["Timeout"]) == (256, 5)
    moderation = by_handler["moderation.handler"]
    assert (moderation["MemorySize"], moderation["Timeout"]) == (256, 10)
    assert resources(eu, "AWS::KinesisFirehose::DeliveryStream")
    granted = [
        policy["Properties"]["Roles"]
        for policy in resources(eu, "AWS::IAM::Policy").values()
        if any(
            statement["Action"] == "execute-api:Invoke"
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert sorted(granted) == [["announcements-backend"], ["moderation-backend"]]
    client_handler = next(
        f
        for f in resources(eu, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"]
        == "multiregion_chat.runtime.handlers.client_message_handler.handler"
    )
    assert client_handler["Properties"]["MemorySize"] == 1024
    assert client_handler["Properties"]["Environment"]["Variables"]["TEAM_SUPPORT_ROOM"] == "help"
