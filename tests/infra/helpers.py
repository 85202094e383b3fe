"""Synthesis and template helpers for the infrastructure tests."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from app import build_app
from multiregion_chat.infra.config import ChatConfig
from multiregion_chat.infra.deployment import ChatDeployment
from multiregion_chat.infra.region_stack import ChatRegionStack

REPO_ROOT = Path(__file__).resolve().parents[2]
# The context `cdk synth` would pass: cdk.json's defaults and feature flags.
CDK_JSON_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]

ACCOUNT = "123456789012"
PARTITION = "aws"
# The UUID `resolve` gives every stack id (AWS::StackId ends with it).
STACK_UUID = "11111111-2222-3333-4444-555555555555"

JsonDict = dict[str, Any]


@dataclass
class SynthResult:
    """One synthesized app: its config, stacks (by region) and templates on disk."""

    app: App
    config: ChatConfig
    outdir: Path
    stacks: dict[str, ChatRegionStack]
    deployment: ChatDeployment

    def template(self, region: str) -> Template:
        return Template.from_stack(self.stacks[region])

    def template_json(self, region: str) -> JsonDict:
        return dict(self.template(region).to_json())

    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))


def make_app(overrides: Mapping[str, Any], outdir: Path | None = None) -> App:
    """An App with cdk.json's context plus ``overrides`` (as ``-c`` would give)."""
    context = {**CDK_JSON_CONTEXT, **overrides}
    return App(context=context, outdir=str(outdir) if outdir else None)


def synth(overrides: Mapping[str, Any], outdir: Path) -> SynthResult:
    """Build and synthesize the app; raises if cdk-nag (or CFN validation) fails."""
    app = make_app(overrides, outdir)
    deployment = build_app(app)
    app.synth()
    return SynthResult(
        app=app,
        config=deployment.config,
        outdir=outdir,
        stacks=dict(deployment.stacks),
        deployment=deployment,
    )


# ---- template queries -------------------------------------------------------
def resources(template: JsonDict, resource_type: str) -> dict[str, JsonDict]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: JsonDict, resource_type: str) -> tuple[str, JsonDict]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def api(template: JsonDict, protocol: str) -> tuple[str, JsonDict]:
    """The one ``AWS::ApiGatewayV2::Api`` of ``protocol`` ("WEBSOCKET" or "HTTP")."""
    found = {
        logical_id: resource
        for logical_id, resource in resources(template, "AWS::ApiGatewayV2::Api").items()
        if resource["Properties"]["ProtocolType"] == protocol
    }
    assert len(found) == 1, f"expected one {protocol} API, found {sorted(found)}"
    return next(iter(found.items()))


def of_api(template: JsonDict, resource_type: str, api_id: str) -> dict[str, JsonDict]:
    """The ``AWS::ApiGatewayV2::*`` resources of ``resource_type`` that belong to ``api_id``."""
    return {
        logical_id: resource
        for logical_id, resource in resources(template, resource_type).items()
        if resource["Properties"]["ApiId"] == {"Ref": api_id}
    }


def getatt_id(value: Any) -> str:
    """Logical id of a ``{"Fn::GetAtt": [id, attr]}``."""
    assert isinstance(value, dict) and "Fn::GetAtt" in value, value
    logical_id: str = value["Fn::GetAtt"][0]
    return logical_id


def access_log_group_id(stage: JsonDict, region: str) -> str:
    """Logical id of the log group a stage's access logs go to.

    The destination must be the log group's ARN without the ``:*`` that
    ``GetAtt LogGroup.Arn`` ends with: API Gateway stores it without, so a
    ``:*`` makes drift detection report the stage as modified forever
    (aws-cdk#38816).
    """
    arn = resolve(stage["Properties"]["AccessLogSettings"]["DestinationArn"], region=region)
    match = re.fullmatch(rf"arn:{PARTITION}:logs:{region}:{ACCOUNT}:log-group:<(\w+)>", arn)
    assert match, f"access-log destination {arn!r} is not a log group ARN without ':*'"
    return match.group(1)


def resolve(value: Any, *, region: str, refs: Mapping[str, str] | None = None) -> Any:
    """Resolve pseudo parameters, Ref, Fn::Join, Fn::Select, Fn::Split and Fn::Sub as
    CloudFormation would (the stack id ends with ``STACK_UUID``).

    ``refs`` maps logical ids to stand-in values; unknown Refs/GetAtts resolve
    to ``<LogicalId>`` / ``<LogicalId.Attr>`` so comparisons stay readable.
    """
    pseudo = {
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": PARTITION,
        "AWS::Region": region,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::StackId": f"arn:{PARTITION}:cloudformation:{region}:{ACCOUNT}:stack/s/{STACK_UUID}",
    }
    known = {**pseudo, **(refs or {})}
    if isinstance(value, list):
        return [resolve(item, region=region, refs=refs) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return known.get(value["Ref"], f"<{value['Ref']}>")
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return known.get(f"{logical_id}.{attribute}", f"<{logical_id}.{attribute}>")
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(resolve(part, region=region, refs=refs)) for part in parts)
    if set(value) == {"Fn::Select"}:
        index, items = value["Fn::Select"]
        return resolve(items, region=region, refs=refs)[int(index)]
    if set(value) == {"Fn::Split"}:
        separator, source = value["Fn::Split"]
        return str(resolve(source, region=region, refs=refs)).split(separator)
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        assert isinstance(text, str), "Fn::Sub with variables is not used by this app"
        for name, replacement in known.items():
            text = text.replace("${" + name + "}", replacement)
        return text
    return {key: resolve(item, region=region, refs=refs) for key, item in value.items()}


def role_statements(template: JsonDict, role_id: str) -> list[JsonDict]:
    """Every statement of every AWS::IAM::Policy attached to ``role_id``."""
    statements: list[JsonDict] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_by_handler(template: JsonDict, handler: str) -> tuple[str, JsonDict]:
    matches = {
        logical_id: resource
        for logical_id, resource in resources(template, "AWS::Lambda::Function").items()
        if resource["Properties"]["Handler"] == handler
    }
    assert len(matches) == 1, f"{handler}: {sorted(matches)}"
    return next(iter(matches.items()))


def forwarding_rules(template: JsonDict) -> dict[str, JsonDict]:
    return {
        logical_id: rule
        for logical_id, rule in resources(template, "AWS::Events::Rule").items()
        if "detail" in rule["Properties"]["EventPattern"]
    }


def delivery_rule(template: JsonDict) -> tuple[str, JsonDict]:
    """The rule that matches every chat event (its pattern names the source only)."""
    rules = {
        logical_id: rule
        for logical_id, rule in resources(template, "AWS::Events::Rule").items()
        if set(rule["Properties"]["EventPattern"]) == {"source"}
    }
    assert len(rules) == 1, sorted(rules)
    return next(iter(rules.items()))
