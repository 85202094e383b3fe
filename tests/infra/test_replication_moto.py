"""The synthesized replication rules, replayed in moto: every region gets one copy.

For each region of the 3-region app, the test recreates in moto the chat bus
and the template's forwarding rules with their real event patterns and
targets (ARNs resolved for account 123456789012), plus a stand-in for the
delivery rule (same pattern, an SQS queue instead of the function). One chat
event is put on us-east-1's bus; each region's queue must receive exactly one
copy. moto forwards events between buses synchronously and has no hop limit,
so a forwarding loop would recurse until RecursionError: the negative test
shows that the harness does catch one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto import mock_aws

from .helpers import ACCOUNT, JsonDict, SynthResult, delivery_rule, forwarding_rules, resolve

if TYPE_CHECKING:
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef, TargetTypeDef

FORWARDING_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/chat-forwarding"


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for service in ("EVENTS", "SQS"):
        monkeypatch.delenv(f"AWS_ENDPOINT_URL_{service}", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _queue(region: str, name: str) -> tuple[str, str]:
    sqs = boto3.client("sqs", region_name=region)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def _deploy_region(
    template: JsonDict, region: str, bus_name: str, *, strip_origin_filter: bool = False
) -> str:
    """Recreate ``region``'s bus and rules in moto; return its delivery queue URL."""
    events = boto3.client("events", region_name=region)
    events.create_event_bus(Name=bus_name)
    delivery_url, delivery_arn = _queue(region, "delivered")
    _, dlq_arn = _queue(region, "dead-letters")

    _, rule = delivery_rule(template)
    events.put_rule(
        Name="delivery",
        EventBusName=bus_name,
        EventPattern=json.dumps(rule["Properties"]["EventPattern"]),
    )
    events.put_targets(
        Rule="delivery",
        EventBusName=bus_name,
        Targets=[{"Id": "EventBusMessageHandler", "Arn": delivery_arn}],
    )

    for logical_id, rule in forwarding_rules(template).items():
        pattern: dict[str, Any] = dict(rule["Properties"]["EventPattern"])
        if strip_origin_filter:
            pattern.pop("detail")
        events.put_rule(Name=logical_id, EventBusName=bus_name, EventPattern=json.dumps(pattern))
        targets: list[TargetTypeDef] = []
        for target in rule["Properties"]["Targets"]:
            targets.append(
                {
                    "Id": target["Id"],
                    "Arn": resolve(target["Arn"], region=region),
                    "RoleArn": FORWARDING_ROLE_ARN,
                    "RetryPolicy": target["RetryPolicy"],
                    "DeadLetterConfig": {"Arn": dlq_arn},
                }
            )
        events.put_targets(Rule=logical_id, EventBusName=bus_name, Targets=targets)
    return delivery_url


def _deploy(app3: SynthResult, *, strip_origin_filter: bool = False) -> dict[str, str]:
    return {
        region: _deploy_region(
            app3.template_json(region),
            region,
            app3.config.bus_name,
            strip_origin_filter=strip_origin_filter,
        )
        for region in app3.config.regions
    }


def _chat_event(app3: SynthResult, origin: str, message_id: str) -> PutEventsRequestEntryTypeDef:
    """An event in the shape of docs/contracts.md, "Chat events on the bus"."""
    detail = {
        "originRegion": origin,
        "room": "lobby",
        "id": message_id,
        "sender": {"userId": "alice", "name": "Alice", "region": origin},
        "body": {"text": "hello"},
        "sentAt": "2026-11-21T23:59:59.123Z",
    }
    return {
        "Source": app3.config.event_source,
        "DetailType": "chat.message",
        "Detail": json.dumps(detail),
        "EventBusName": app3.config.bus_name,
    }


def _drain(region: str, url: str) -> list[JsonDict]:
    sqs = boto3.client("sqs", region_name=region)
    bodies: list[JsonDict] = []
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return bodies
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("origin", ["us-east-1", "ap-northeast-1"])
def test_each_region_receives_exactly_one_copy(app3: SynthResult, origin: str) -> None:
    queues = _deploy(app3)
    message_id = "01JDXZ0000000000000000000A"
    result = boto3.client("events", region_name=origin).put_events(
        Entries=[_chat_event(app3, origin, message_id)]
    )
    assert result["FailedEntryCount"] == 0

    for region, url in queues.items():
        received = _drain(region, url)
        assert len(received) == 1, (region, received)
        (event,) = received
        assert event["source"] == app3.config.event_source
        assert event["detail"]["id"] == message_id
        assert event["detail"]["originRegion"] == origin
        # Nothing trickles in afterwards either.
        assert _drain(region, url) == []


@pytest.mark.usefixtures("aws")
def test_forwarded_events_are_not_forwarded_again(app3: SynthResult) -> None:
    """An event that arrives from elsewhere is delivered locally, and only locally."""
    queues = _deploy(app3)
    # As if eu-west-1's forwarding rule had delivered a us-east-1 event here.
    boto3.client("events", region_name="eu-west-1").put_events(
        Entries=[_chat_event(app3, "us-east-1", "01JDXZ0000000000000000000B")]
    )
    assert len(_drain("eu-west-1", queues["eu-west-1"])) == 1
    assert _drain("us-east-1", queues["us-east-1"]) == []
    assert _drain("ap-northeast-1", queues["ap-northeast-1"]) == []


@pytest.mark.usefixtures("aws")
def test_without_the_origin_filter_the_mesh_loops(app3: SynthResult) -> None:
    """Control: the same rules minus the originRegion filter recurse forever in moto."""
    _deploy(app3, strip_origin_filter=True)
    with pytest.raises(RecursionError):
        boto3.client("events", region_name="us-east-1").put_events(
            Entries=[_chat_event(app3, "us-east-1", "01JDXZ0000000000000000000C")]
        )
