"""Every dashboard and alarm metric names its resource the way the metric's dimension does.

A dimension value that is a reference must resolve to what AWS puts in that
dimension, or the graph stays empty and the alarm never fires, silently. The
trap: ``Ref`` is not always the name. For an ``AWS::Events::Rule`` on a custom
bus it is ``<bus>|<rule>`` (cloudformation-coverage-roadmap#1131), for a queue
it is the URL. So only the references known to give the dimension's value pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from .helpers import JsonDict, SynthResult, resources

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")

# (resource type, dimension) whose Ref is the dimension's value.
REF_IS_DIMENSION = {
    ("AWS::Lambda::Function", "FunctionName"),
    ("AWS::ApiGatewayV2::Api", "ApiId"),
    ("AWS::ApiGatewayV2::Stage", "Stage"),
    ("AWS::SNS::Topic", "TopicName"),
    # Only for a rule on the default bus (checked below): on a custom bus Ref is bus|rule.
    ("AWS::Events::Rule", "RuleName"),
}
# (resource type, attribute, dimension) whose GetAtt is the dimension's value.
GETATT_IS_DIMENSION = {
    ("AWS::SQS::Queue", "QueueName", "QueueName"),
    ("AWS::Events::EventBus", "Name", "EventBusName"),
    ("AWS::SNS::Topic", "TopicName", "TopicName"),
}

Metric = tuple[str, str, str, Any]  # where, metric name, dimension, value
BUCKET_DIMENSIONS = {"SourceBucket", "DestinationBucket"}
ACCOUNT_ID = {"Ref": "AWS::AccountId"}


def _literal_and_account(value: Any) -> bool:
    """A name made of literal text and the account id only (a dashboard's composite
    string or an alarm's Fn::Join)."""
    if isinstance(value, dict) and set(value) == {"composite", "tokens"}:
        return all(token == ACCOUNT_ID for token in value["tokens"])
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        return all(isinstance(p, str) or p == ACCOUNT_ID for p in value["Fn::Join"][1])
    return False


def _on_custom_bus(rule: JsonDict) -> bool:
    return rule["Properties"].get("EventBusName", "default") != "default"


def dimension_problem(template: JsonDict, dimension: str, value: Any) -> str | None:
    """Why ``value`` is not the value of ``dimension`` in AWS's metrics (None: it is)."""
    if isinstance(value, str):
        return None
    resources_ = template["Resources"]
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in resources_:
        resource = resources_[value["Ref"]]
        if (resource["Type"], dimension) not in REF_IS_DIMENSION:
            return f"Ref of a {resource['Type']} is not its {dimension}"
        if resource["Type"] == "AWS::Events::Rule" and _on_custom_bus(resource):
            return "Ref of a rule on a custom bus is '<bus>|<rule>', not the RuleName"
        return None
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        kind = resources_[logical_id]["Type"]
        if (kind, attribute, dimension) in GETATT_IS_DIMENSION:
            return None
        return f"GetAtt {kind}.{attribute} is not its {dimension}"
    # An attachment bucket: named by the stacks from literals and the account
    # (infra/attachments.py; tests/infra/test_attachments.py checks the names).
    if dimension in BUCKET_DIMENSIONS and _literal_and_account(value):
        return None
    # The name part of a custom-bus rule's Ref: Fn::Select [1, Fn::Split ["|", Ref rule]].
    if dimension == "RuleName" and isinstance(value, dict) and set(value) == {"Fn::Select"}:
        index, split = value["Fn::Select"]
        separator, source = split.get("Fn::Split", [None, None])
        target = resources_.get(source.get("Ref", "") if isinstance(source, dict) else "", {})
        if (
            index in (1, "1")
            and separator == "|"
            and target.get("Type") == "AWS::Events::Rule"
            and _on_custom_bus(target)
        ):
            return None
    return f"{json.dumps(value)} is not known to give the {dimension}"


def dashboard_metrics(template: JsonDict) -> Iterator[Metric]:
    """(dashboard, metric, dimension, value) of every dashboard metric, tokens as intrinsics."""
    for resource in resources(template, "AWS::CloudWatch::Dashboard").values():
        body = resource["Properties"]["DashboardBody"]
        parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
        tokens: dict[str, Any] = {}
        text = ""
        for part in parts:
            if isinstance(part, str):
                text += part
            else:
                placeholder = f"@@token{len(tokens)}@@"
                tokens[placeholder] = part
                text += placeholder
        name = resource["Properties"]["DashboardName"]
        for widget in json.loads(text)["widgets"]:
            for row in widget["properties"].get("metrics", []):
                names = [item for item in row if not isinstance(item, dict)]
                for dimension, value in zip(names[2::2], names[3::2], strict=False):
                    if re.search(r"@@token\d+@@", value) and value not in tokens:
                        used = [tokens[t] for t in re.findall(r"@@token\d+@@", value)]
                        yield name, names[1], dimension, {"composite": value, "tokens": used}
                    else:
                        yield name, names[1], dimension, tokens.get(value, value)


def alarm_metrics(template: JsonDict) -> Iterator[Metric]:
    """(alarm, metric, dimension, value) of every alarm's metric (math alarms included)."""
    for logical_id, alarm in resources(template, "AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        queries = props.get("Metrics", [])
        stats = [props] + [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
        for stat in stats:
            for dimension in stat.get("Dimensions", []):
                yield logical_id, stat["MetricName"], dimension["Name"], dimension["Value"]


def problems(template: JsonDict) -> list[str]:
    return [
        f"{where} {metric} {dimension}: {problem}"
        for source in (dashboard_metrics, alarm_metrics)
        for where, metric, dimension, value in source(template)
        if (problem := dimension_problem(template, dimension, value)) is not None
    ]


@pytest.mark.parametrize("region", REGIONS)
def test_every_dashboard_and_alarm_dimension_is_the_metrics_own(
    app3: SynthResult, region: str
) -> None:
    template = app3.template_json(region)
    checked = list(dashboard_metrics(template)) + list(alarm_metrics(template))
    # The rules' graphs are among what was checked (the bug this test is for).
    assert any(dimension == "RuleName" for _, _, dimension, _ in checked)
    assert problems(template) == []


def test_a_custom_bus_rule_ref_is_refused_and_its_name_part_accepted() -> None:
    template = {
        "Resources": {
            "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "b"}},
            "OnBus": {"Type": "AWS::Events::Rule", "Properties": {"EventBusName": {"Ref": "Bus"}}},
            "OnDefault": {"Type": "AWS::Events::Rule", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Properties": {}},
        }
    }
    name_part = {"Fn::Select": [1, {"Fn::Split": ["|", {"Ref": "OnBus"}]}]}
    assert dimension_problem(template, "RuleName", {"Ref": "OnBus"})
    assert dimension_problem(template, "RuleName", name_part) is None
    assert dimension_problem(template, "RuleName", {"Ref": "OnDefault"}) is None
    assert dimension_problem(template, "QueueName", {"Ref": "Queue"})  # the URL
    assert dimension_problem(template, "QueueName", {"Fn::GetAtt": ["Queue", "QueueName"]}) is None
