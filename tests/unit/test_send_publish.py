"""send -> PutEvents: the published event, partial failures, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol import ids

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
    with Stubber(aws_clients.events()) as stubber:
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
    chat: Any, member: str, captured: Any, posted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bus path (the fast path off): EventBusMessageHandler posts to every member."""
    monkeypatch.setenv("LOCAL_FAST_PATH_MAX_MEMBERS", "0")
    runtime_settings.reset()
    chat.connect("c2", "bob")
    chat.send("c2", {"action": "join", "room": "lobby"})
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": "hello"})
    assert posted(member) == [] and posted("c2") == []  # nothing before the bus
    (event,) = captured()
    assert chat.deliver(event["detail"])["delivered"] == 2
    for cid in (member, "c2"):
        (frame,) = posted(cid)
        assert frame["type"] == "message" and frame["id"] == ack["id"] and frame["body"] == "hello"


def test_the_fast_path_posts_before_the_ack_and_the_bus_event_is_a_duplicate(
    chat: Any, member: str, captured: Any, posted: Any
) -> None:
    """Issue 17: a small room's local members get the frame from ClientMessageHandler, once:
    the origin region's EventBusMessageHandler finds the history item and posts nothing."""
    chat.connect("c2", "bob")
    chat.send("c2", {"action": "join", "room": "lobby"})
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": "hello"})
    for cid in (member, "c2"):  # already there when the ack came back
        (frame,) = posted(cid)
        assert frame["type"] == "message" and frame["id"] == ack["id"] and frame["body"] == "hello"
    (event,) = captured()  # the bus still got it, for every other region
    assert event["detail"]["id"] == ack["id"]
    assert chat.deliver(event["detail"])["status"] == "duplicate"
    assert [len(posted(cid)) for cid in (member, "c2")] == [1, 1]
    history = chat.send(member, {"action": "history", "room": "lobby"})
    assert [m["id"] for m in history["messages"]] == [ack["id"]]


def test_above_the_limit_the_room_takes_the_bus_path(
    chat: Any, member: str, captured: Any, posted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_FAST_PATH_MAX_MEMBERS", "1")
    runtime_settings.reset()
    chat.connect("c2", "bob")
    chat.send("c2", {"action": "join", "room": "lobby"})
    chat.send(member, {"action": "send", "room": "lobby", "body": "hello"})
    assert posted(member) == [] and posted("c2") == []
    (event,) = captured()
    assert chat.deliver(event["detail"])["delivered"] == 2


def test_when_the_bus_path_stored_it_first_the_fast_path_posts_nothing(
    chat: Any, member: str, posted: Any
) -> None:
    from multiregion_chat.runtime.delivery import local_delivery
    from multiregion_chat.runtime.platform.bus import publish_message
    from multiregion_chat.runtime.protocol.chat_model import Sender

    message = publish_message("lobby", Sender("alice", "Alice", "us-east-1"), "raced")
    assert chat.deliver(message.detail())["delivered"] == 1  # the bus handler won the race
    assert local_delivery.deliver_locally(message) == "already_stored"
    assert len(posted(member)) == 1


def test_a_failed_history_write_leaves_the_message_to_the_bus_path(
    chat: Any, member: str, captured: Any, posted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multiregion_chat.runtime.store import history_store

    real = history_store.put_message

    def throttled(message: Any) -> bool:
        raise RuntimeError("ProvisionedThroughputExceeded")

    monkeypatch.setattr(history_store, "put_message", throttled)
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": "x"})
    assert ack["type"] == "ack" and posted(member) == []  # acked: the bus has it
    monkeypatch.setattr(history_store, "put_message", real)
    (event,) = captured()
    assert chat.deliver(event["detail"])["delivered"] == 1
    assert [f["id"] for f in posted(member)] == [ack["id"]]


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
