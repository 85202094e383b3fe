"""tools.replay_dlq against moto's SQS and EventBridge: each dead letter back where it was going."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from multiregion_chat.infra.config import ChatConfig
from tools import replay_dlq
from tools.replay_dlq import Replay, main, plan

ACCOUNT = "123456789012"
SOURCE, TARGET = "us-east-1", "eu-west-1"
# The deployment the queues belong to: cdk.json's defaults (chat, prod, three regions).
CONFIG = ChatConfig.from_mapping({})
BUS = CONFIG.bus_name  # chat-prod-chat-bus
TARGET_BUS_ARN = f"arn:aws:events:{TARGET}:{ACCOUNT}:event-bus/{BUS}"
RULE_ARN = f"arn:aws:events:{SOURCE}:{ACCOUNT}:rule/{BUS}/chat-prod-us-east-1-ForwardingRule1-X1"
# CloudFormation's generated name: <stack name>-<logical id>-<suffix>.
FUNCTION_ARN = (
    f"arn:aws:lambda:{SOURCE}:{ACCOUNT}:function:"
    f"{CONFIG.stack_name(SOURCE)}-FunctionsEventBusMessageH-AbCdEf123456"
)


def replay_queue(sqs: Any, queue_url: str, clients: Any, **options: Any) -> Any:
    """The tool's replay for this deployment (CONFIG)."""
    return replay_dlq.replay_queue(sqs, queue_url, clients, config=CONFIG, **options)


def chat_event(message_id: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": f"event-{message_id}",
        "detail-type": "message",
        "source": "chat.prod",
        "account": ACCOUNT,
        "time": "2026-11-29T05:00:00Z",
        "region": SOURCE,
        "resources": [],
        "detail": {"originRegion": SOURCE, "room": "lobby", "id": message_id, "body": "hi"},
    }


def eventbridge_dead_letter(
    sqs: Any, queue_url: str, event: Any, target: str, rule: str | None = RULE_ARN
) -> None:
    """A message as EventBridge writes it to a target's DLQ (``rule`` None: without RULE_ARN)."""
    attributes = {
        "RULE_ARN": rule,
        "TARGET_ARN": target,
        "ERROR_CODE": "CONNECTION_FAILURE",
        "ERROR_MESSAGE": "the target bus could not be reached",
        "EXHAUSTED_RETRY_CONDITION": "MaximumEventAgeInSeconds",
        "RETRY_ATTEMPTS": "184",
    }
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=event if isinstance(event, str) else json.dumps(event),
        MessageAttributes={
            k: {"DataType": "String", "StringValue": v}
            for k, v in attributes.items()
            if v is not None
        },
    )


class Clients:
    """boto3 clients by (service, region); lambda is a recorder (moto's Invoke needs Docker)."""

    def __init__(self) -> None:
        self.invocations: list[dict[str, Any]] = []

    def __call__(self, service: str, region: str) -> Any:
        if service == "lambda":
            return self
        return boto3.client(service, region_name=region)

    def invoke(self, **arguments: Any) -> dict[str, Any]:
        self.invocations.append(arguments)
        return {"StatusCode": 202}


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    found = []
    for _ in range(20):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            break
        for message in batch:
            found.append(message)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_forwarded_events_go_back_to_the_target_bus_once(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    for message_id in ("m1", "m2", "m3"):
        eventbridge_dead_letter(sqs, dlq, chat_event(message_id), TARGET_BUS_ARN)

    report = replay_queue(sqs, dlq, Clients(), wait_seconds=0)

    assert report.as_dict()["outcomes"] == {"replayed": {"event-bus": 3}}
    arrived = [json.loads(m["Body"]) for m in drain(world["target_sqs"], world["observer"])]
    assert sorted(e["detail"]["id"] for e in arrived) == ["m1", "m2", "m3"]
    assert all(e["detail-type"] == "message" and e["source"] == "chat.prod" for e in arrived)
    assert depth(sqs, dlq) == 0
    # A second run finds nothing: each event was put back once.
    assert replay_queue(sqs, dlq, Clients(), wait_seconds=0).as_dict()["outcomes"] == {}


def test_dry_run_changes_nothing(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    eventbridge_dead_letter(sqs, dlq, chat_event("m1"), TARGET_BUS_ARN)
    eventbridge_dead_letter(sqs, dlq, chat_event("m2"), FUNCTION_ARN)
    clients = Clients()

    report = replay_queue(sqs, dlq, clients, dry_run=True, wait_seconds=0)

    assert report.as_dict()["outcomes"] == {"would-replay": {"event-bus": 1, "function": 1}}
    assert drain(world["target_sqs"], world["observer"]) == []
    assert clients.invocations == []
    # Visible again at once, so the real run can follow the dry run.
    assert len(drain(sqs, dlq)) == 2


def test_function_targets_and_on_failure_records_are_invoked_again(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    eventbridge_dead_letter(sqs, dlq, chat_event("m1"), FUNCTION_ARN)
    record = {  # Lambda's on-failure destination record (asynchronous invocation)
        "version": "1.0",
        "timestamp": "2026-11-29T05:00:00.000Z",
        "requestContext": {
            "requestId": "r-1",
            "functionArn": FUNCTION_ARN + ":$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": chat_event("m2"),
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": "history write failed"},
    }
    sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps(record))
    clients = Clients()

    report = replay_queue(sqs, dlq, clients, wait_seconds=0)

    assert report.as_dict()["outcomes"] == {"replayed": {"function": 2}}
    payloads = sorted(json.loads(call["Payload"])["detail"]["id"] for call in clients.invocations)
    assert payloads == ["m1", "m2"]
    assert {call["InvocationType"] for call in clients.invocations} == {"Event"}
    assert depth(sqs, dlq) == 0


def test_a_redrive_dlq_goes_back_to_its_source_queue(aws: None) -> None:
    sqs = boto3.client("sqs", region_name=SOURCE)
    dlq_name = "chat-prod-us-east-1-FanoutFanoutDeadLetterQueue-X"
    dlq = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = f"arn:aws:sqs:{SOURCE}:{ACCOUNT}:{dlq_name}"
    source = sqs.create_queue(
        QueueName="chat-prod-us-east-1-FanoutQueue-X",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5})
        },
    )["QueueUrl"]
    job = json.dumps({"room": "big", "shard": 3})
    sqs.send_message(
        QueueUrl=dlq,
        MessageBody=job,
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "shard"}},
    )

    report = replay_queue(sqs, dlq, Clients(), wait_seconds=0)

    assert report.as_dict()["outcomes"] == {"replayed": {"queue": 1}}
    back = sqs.receive_message(QueueUrl=source, MessageAttributeNames=["All"])["Messages"]
    assert back[0]["Body"] == job
    assert back[0]["MessageAttributes"]["kind"]["StringValue"] == "shard"
    assert depth(sqs, dlq) == 0


def test_refused_and_unrecognized_messages_stay_in_the_queue(world: dict[str, Any]) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    # The deployment's bus in a region where it does not exist (yet): PutEvents fails.
    missing_bus = f"arn:aws:events:ap-northeast-1:{ACCOUNT}:event-bus/{BUS}"
    eventbridge_dead_letter(sqs, dlq, chat_event("m1"), missing_bus)
    eventbridge_dead_letter(sqs, dlq, "not json", TARGET_BUS_ARN)
    eventbridge_dead_letter(sqs, dlq, chat_event("m2"), TARGET_BUS_ARN)

    report = replay_queue(sqs, dlq, Clients(), wait_seconds=0).as_dict()

    assert report["outcomes"] == {
        "failed": {"event-bus": 1},
        "left": {"unrecognized": 1},
        "replayed": {"event-bus": 1},
    }
    assert {e["kind"] for e in report["errors"]} == {"event-bus", "unrecognized"}
    assert len(drain(sqs, dlq)) == 2  # visible again for the next run


def test_plan_reads_the_target_from_the_attributes() -> None:
    message = {
        "Body": json.dumps(chat_event("m1")),
        "MessageAttributes": {
            "TARGET_ARN": {"StringValue": TARGET_BUS_ARN, "DataType": "String"},
            "RULE_ARN": {"StringValue": RULE_ARN, "DataType": "String"},
        },
    }
    replay = plan(message, lambda: "unused")
    assert replay == Replay("event-bus", TARGET, TARGET_BUS_ARN, replay.payload, RULE_ARN)
    assert replay.payload["EventBusName"] == TARGET_BUS_ARN
    assert json.loads(replay.payload["Detail"])["id"] == "m1"


def test_command_line_reports_and_exits_nonzero_when_something_is_left(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sqs, dlq = world["sqs"], world["dlq"]
    eventbridge_dead_letter(sqs, dlq, "not json", TARGET_BUS_ARN)
    deployment = ["--app-name", "chat", "--stage", "prod"]
    assert main(["--queue-url", dlq, "--region", SOURCE, "--json", *deployment]) == 1
    assert json.loads(capsys.readouterr().out)["outcomes"] == {"left": {"unrecognized": 1}}
    assert main(["--queue-url", dlq, "--region", SOURCE, "--dry-run", *deployment]) == 0
