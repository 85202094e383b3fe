"""The moto world the dead-letter tests replay in (each test builds its own)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.dlq.test_replay_dlq import ACCOUNT, BUS, SOURCE, TARGET


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "MOTO_ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def world(aws: None) -> dict[str, Any]:
    """The replication DLQ in us-east-1; eu-west-1's bus with a rule copying events to a queue."""
    sqs = boto3.client("sqs", region_name=SOURCE)
    dlq = sqs.create_queue(QueueName="chat-prod-us-east-1-ReplicationDeadLetterQueue-X")["QueueUrl"]
    target_sqs = boto3.client("sqs", region_name=TARGET)
    observer = target_sqs.create_queue(QueueName="observer")["QueueUrl"]
    observer_arn = f"arn:aws:sqs:{TARGET}:{ACCOUNT}:observer"
    events = boto3.client("events", region_name=TARGET)
    events.create_event_bus(Name=BUS)
    events.put_rule(
        Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": ["chat.prod"]})
    )
    events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "o", "Arn": observer_arn}])
    return {"sqs": sqs, "dlq": dlq, "target_sqs": target_sqs, "observer": observer}
