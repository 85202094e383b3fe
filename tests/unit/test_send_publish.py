"""send -> PutEvents: the published event, partial failures, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from chat import clients, ids

BUS = "chat-test-chat-bus"


@pytest.fixture
def member(chat: Any) -> str:
    chat.connect("c1", "alice", "Alice")
    chat.send("c1", {"action": "join", "room": "lobby"})
    return "c1"


@pytest.fixture
def captured(aws: None) -> Any:
    """A rule on the chat bus that copies every chat event to an SQS queue."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="captured")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events = boto3.client("events", region_name="us-east-1")
    events.put_rule(
        Name="capture", EventBusName=BUS, EventPattern=json.dumps({"source": ["chat.chat"]})
    )
    events.put_targets(Rule="capture", EventBusName=BUS, Targets=[{"Id": "q", "Arn": arn}])

    def read(detail_type: str | None = "chat.message") -> list[dict[str, Any]]:
        """The captured events of ``detail_type`` (None: all), oldest first."""
        events_: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            events_.extend(json.loads(m["Body"]) for m in batch)
        return [e for e in events_ if detail_type is None or e["detail-type"] == detail_type]

    return read


@pytest.fixture
def stubbed_events(aws: None) -> Iterator[Stubber]:
    with Stubber(clients.events()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_send_publishes_the_contract_event(chat: Any, member: str, captured: Any) -> None:
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": {"text": "hi"}, "ref": "r"})
    (event,) = captured()
    assert event["source"] == "chat.chat"
    assert event["detail-type"] == "chat.message"
    assert event["detail"] == {
        "originRegion": "us-east-1",
        "room": "lobby",
        "id": ack["id"],
        "sender": {"userId": "alice", "name": "Alice", "region": "us-east-1"},
        "body": {"text": "hi"},
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(ack["id"])),
    }


def test_published_event_flows_to_every_member(
    chat: Any, member: str, captured: Any, posted: Any
) -> None:
    chat.connect("c2", "bob")
    chat.send("c2", {"action": "join", "room": "lobby"})
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": "hello"})
    (event,) = captured()
    assert chat.deliver(event["detail"])["delivered"] == 2
    for cid in (member, "c2"):
        (frame,) = posted(cid)
        assert frame["type"] == "message" and frame["id"] == ack["id"] and frame["body"] == "hello"


def test_put_events_entry_params(chat: Any, member: str, stubbed_events: Stubber) -> None:
    stubbed_events.add_response(
        "put_events",
        {"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}]},
        {
            "Entries": [
                {
                    "Source": "chat.chat",
                    "DetailType": "chat.message",
                    "Detail": ANY,
                    "EventBusName": BUS,
                }
            ]
        },
    )
    assert chat.send(member, {"action": "send", "room": "lobby", "body": 1})["type"] == "ack"


def test_partial_failure_is_retried_then_acked(
    chat: Any, member: str, stubbed_events: Stubber, sleeps: list[float]
) -> None:
    failed = {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}],
    }
    stubbed_events.add_response("put_events", failed)
    stubbed_events.add_response(
        "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}]}
    )
    reply = chat.send(member, {"action": "send", "room": "lobby", "body": 1, "ref": "p"})
    assert reply["type"] == "ack" and reply["ref"] == "p"
    assert len(sleeps) == 1


def test_persistent_failure_is_internal_never_ack(
    chat: Any, member: str, stubbed_events: Stubber, sleeps: list[float], emitted_metrics: Any
) -> None:
    failed = {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "x"}],
    }
    for _ in range(3):
        stubbed_events.add_response("put_events", failed)
    emitted_metrics()
    reply = chat.send(member, {"action": "send", "room": "lobby", "body": 1, "ref": "f"})
    assert reply["type"] == "error" and reply["code"] == "internal" and reply["ref"] == "f"
    assert len(sleeps) == 2  # 3 attempts, backoff between them
    assert emitted_metrics()["PublishFailures"] == 1


def test_put_events_raising_is_internal(
    chat: Any, member: str, stubbed_events: Stubber, emitted_metrics: Any
) -> None:
    stubbed_events.add_client_error("put_events", "AccessDeniedException", http_status_code=400)
    emitted_metrics()
    reply = chat.send(member, {"action": "send", "room": "lobby", "body": 1})
    assert (reply["type"], reply["code"]) == ("error", "internal")
    assert emitted_metrics()["PublishFailures"] == 1


def test_not_member_does_not_publish(chat: Any, stubbed_events: Stubber) -> None:
    chat.connect("c9", "zed")
    # no response queued: any PutEvents call would fail the stubber
    assert chat.send("c9", {"action": "send", "room": "lobby", "body": 1})["code"] == "not_member"
