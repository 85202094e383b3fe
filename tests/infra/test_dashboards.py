"""The CloudWatch dashboards: one per region, one global (primary region) with every region."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from multiregion_chat.infra.attachments import ATTACHMENT_RUNTIME_METRICS
from multiregion_chat.infra.dashboards import (
    CONNECTION_METRICS,
    EVENT_AGE_METRIC,
    FANOUT_METRICS,
    GLOBAL_METRICS,
    MESSAGE_METRICS,
    RUNTIME_ERROR_METRICS,
)

from .helpers import JsonDict, SynthResult, api, delivery_rule, forwarding_rules, resources

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
RUNTIME = Path(__file__).resolve().parents[2] / "multiregion_chat" / "runtime"
NAMESPACE = "chat/prod"


def dashboards(template: JsonDict) -> dict[str, JsonDict]:
    """Each dashboard's body (as JSON, a reference shown as ``<Ref:LogicalId>``), by name."""
    found = {}
    for resource in resources(template, "AWS::CloudWatch::Dashboard").values():
        body = resource["Properties"]["DashboardBody"]
        parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
        text = "".join(part if isinstance(part, str) else _reference(part) for part in parts)
        found[resource["Properties"]["DashboardName"]] = json.loads(text)
    return found


def _reference(token: dict[str, Any]) -> str:
    if "Ref" in token:
        return f"<Ref:{token['Ref']}>"
    if "Fn::GetAtt" in token:
        return f"<GetAtt:{'.'.join(token['Fn::GetAtt'])}>"
    if "Fn::Select" in token:  # a custom-bus rule's name: the part of its Ref after "|"
        index, split = token["Fn::Select"]
        separator, source = split["Fn::Split"]
        return f"<Select{index}:Split{separator}:{_reference(source)}>"
    return "<token>"


def widgets(body: JsonDict) -> dict[str, JsonDict]:
    return {w["properties"].get("title", w["type"]): w for w in body["widgets"]}


def metric_rows(widget: JsonDict) -> list[list[Any]]:
    return list(widget["properties"]["metrics"])


def runtime_names(widget: JsonDict) -> list[str]:
    return [row[1] for row in metric_rows(widget) if row[0] == NAMESPACE]


@pytest.fixture(scope="module", params=REGIONS)
def region(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_one_dashboard_per_region_and_one_global(app3: SynthResult) -> None:
    names = {region: set(dashboards(app3.template_json(region))) for region in REGIONS}
    assert names == {
        "us-east-1": {"chat-prod-us-east-1", "chat-prod-global"},
        "eu-west-1": {"chat-prod-eu-west-1"},
        "ap-northeast-1": {"chat-prod-ap-northeast-1"},
    }


def test_regional_dashboard_widgets(app3: SynthResult, region: str) -> None:
    template = app3.template_json(region)
    body = dashboards(template)[f"chat-prod-{region}"]
    shown = widgets(body)
    assert set(shown) >= {
        "Connections",
        "Messages in and out",
        "Fan-out deliveries and failures",
        "EventBridge rules: failed and dead-lettered invocations",
        "Event age (p99, ms)",
        "Dead-letter queue depth",
        "Throttles",
        "Errors",
        "p99 durations (ms)",
    }
    # Every widget fits the 24-unit grid and stays in this region.
    for widget in body["widgets"]:
        assert widget["x"] + widget["width"] <= 24
        for row in widget["properties"].get("metrics", []):
            assert "region" not in row[-1], row

    websocket_api, _ = api(template, "WEBSOCKET")
    connect_count = ["AWS/ApiGateway", "ConnectCount", "ApiId", f"<Ref:{websocket_api}>"]
    assert [*connect_count, "Stage", "prod"] in [r[:6] for r in metric_rows(shown["Connections"])]
    assert runtime_names(shown["Connections"]) == list(CONNECTION_METRICS)
    assert set(MESSAGE_METRICS) <= set(runtime_names(shown["Messages in and out"]))
    assert runtime_names(shown["Fan-out deliveries and failures"]) == list(FANOUT_METRICS)
    assert set(RUNTIME_ERROR_METRICS) <= set(runtime_names(shown["Errors"]))


def test_regional_dashboard_covers_every_function_queue_and_rule(
    app3: SynthResult, region: str
) -> None:
    template = app3.template_json(region)
    shown = widgets(dashboards(template)[f"chat-prod-{region}"])
    functions = {
        logical_id
        for logical_id, fn in resources(template, "AWS::Lambda::Function").items()
        if fn["Properties"].get("Handler", "").endswith("_handler.handler")
        or fn["Properties"].get("Handler")
        == "multiregion_chat.runtime.handlers.fanout_worker.handler"
    }
    for title, metric in (
        ("Throttles", "Throttles"),
        ("Errors", "Errors"),
        ("p99 durations (ms)", "Duration"),
    ):
        rows = [r for r in metric_rows(shown[title]) if r[0] == "AWS/Lambda" and r[1] == metric]
        assert {r[3] for r in rows} >= {f"<Ref:{f}>" for f in functions}, title
    for row in metric_rows(shown["p99 durations (ms)"]):
        assert row[-1]["stat"] == "p99"

    queues = set(resources(template, "AWS::SQS::Queue"))
    dlq_rows = metric_rows(shown["Dead-letter queue depth"])
    assert all(r[1] == "ApproximateNumberOfMessagesVisible" for r in dlq_rows)
    # replication, bus handler failures, fan-out, the server API's disconnects
    assert len(dlq_rows) == 4 and {r[3] for r in dlq_rows} <= {
        f"<GetAtt:{q}.QueueName>" for q in queues
    }

    disconnect_rules = [
        rule_id
        for rule_id, rule in resources(template, "AWS::Events::Rule").items()
        if rule["Properties"]["EventPattern"].get("detail-type") == ["chat.disconnect"]
    ]
    rules = [delivery_rule(template)[0], *forwarding_rules(template), *disconnect_rules]
    failures = metric_rows(shown["EventBridge rules: failed and dead-lettered invocations"])
    for rule_id in rules:
        for name in ("FailedInvocations", "InvocationsSentToDlq"):
            assert ["AWS/Events", name, "EventBusName", "chat-prod-chat-bus", "RuleName",
                    f"<Select1:Split|:<Ref:{rule_id}>>"] in [r[:6] for r in failures]  # fmt: skip
    age = metric_rows(shown["Event age (p99, ms)"])
    assert {r[1] for r in age} == {
        "IngestiontoInvocationStartLatency",
        "AsyncEventAge",
        EVENT_AGE_METRIC,
    }
    assert all(r[-1]["stat"] == "p99" for r in age)


def test_global_dashboard_shows_every_region_side_by_side(app3: SynthResult) -> None:
    body = dashboards(app3.template_json("us-east-1"))["chat-prod-global"]
    shown = widgets(body)
    for name, title in GLOBAL_METRICS:
        rows = metric_rows(shown[title])
        assert [row[:4] for row in rows] == [[NAMESPACE, name, "service", "chat"]] * 3
        assert [row[-1]["region"] for row in rows] == list(REGIONS)
        assert [row[-1]["label"] for row in rows] == list(REGIONS)
    age = metric_rows(shown["Replication delay: EventAge p99 (ms)"])
    assert [(r[1], r[-1]["region"], r[-1]["stat"]) for r in age] == [
        (EVENT_AGE_METRIC, region, "p99") for region in REGIONS
    ]
    markdown = body["widgets"][0]["properties"]["markdown"]
    for region in REGIONS:
        assert f"region={region}#dashboards/dashboard/chat-prod-{region}" in markdown


def test_global_dashboard_scales_with_the_regions(app20: SynthResult) -> None:
    primary = app20.config.primary_region
    body = dashboards(app20.template_json(primary))["chat-prod-global"]
    rows = metric_rows(widgets(body)["Failed deliveries"])
    assert [row[-1]["region"] for row in rows] == list(app20.config.regions)
    assert all(len(dashboards(app20.template_json(r))) == 1 for r in app20.config.regions[1:])


def test_dashboard_metric_names_are_emitted_by_the_handlers() -> None:
    """A renamed metric would leave its graph silently empty."""
    source = "\n".join(path.read_text() for path in RUNTIME.rglob("*.py"))
    assert "def handler" in source
    emitted = set(re.findall(r'count\(\s*"([A-Za-z]+)"', source))
    emitted |= set(re.findall(r'FAILURE_METRIC = "([A-Za-z]+)"', source))
    emitted |= set(re.findall(r'add_metric\(\s*name="([A-Za-z]+)"', source))
    shown = {
        *CONNECTION_METRICS,
        *MESSAGE_METRICS,
        *FANOUT_METRICS,
        *RUNTIME_ERROR_METRICS,
        *(name for name, _ in GLOBAL_METRICS),
        *ATTACHMENT_RUNTIME_METRICS,
        EVENT_AGE_METRIC,
    }
    assert shown - emitted == set()


def test_regional_dashboard_shows_uploads_and_replication_per_destination(
    app3: SynthResult, region: str
) -> None:
    """Uploads (the runtime's counts) and, per other region, S3's replication lag (its
    maximum: S3 publishes no other statistic of it), failed operations (left) and pending
    ones (right), on the rules' dimensions."""
    shown = widgets(dashboards(app3.template_json(region))[f"chat-prod-{region}"])
    assert runtime_names(shown["Attachments"]) == list(ATTACHMENT_RUNTIME_METRICS)
    others = [r for r in REGIONS if r != region]

    def bucket(r: str) -> str:
        return f"chat-prod-files-<Ref:AWS::AccountId>-{r}"

    def s3_rows(title: str) -> list[tuple[str, dict[str, str], str, str]]:
        found = []
        for row in metric_rows(shown[title]):
            assert row[0] == "AWS/S3", row
            options = row[-1]
            dimensions = dict(zip(row[2:-1:2], row[3:-1:2], strict=True))
            found.append((row[1], dimensions, options["stat"], options.get("yAxis", "left")))
        return found

    def rule(r: str) -> dict[str, str]:
        return {"SourceBucket": bucket(region), "DestinationBucket": bucket(r), "RuleId": f"to-{r}"}

    assert s3_rows("Attachment replication latency (s): max") == [
        ("ReplicationLatency", rule(r), "Maximum", "left") for r in others
    ]
    assert s3_rows("Attachment replication: failed / pending operations") == [
        *(("OperationsFailedReplication", rule(r), "Sum", "left") for r in others),
        *(("OperationsPendingReplication", rule(r), "Maximum", "right") for r in others),
    ]
