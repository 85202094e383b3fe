"""moto behind the aiohttp front (sandbox.moto_front) and without Flask (sandbox.moto_dispatch):
the services answer through boto3 as they do behind moto's own server, errors included, and an
SQS long poll does not stall DynamoDB."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sandbox.moto_dispatch import DirectDispatch
from sandbox.moto_front import MotoFront

# moto keeps its tables for the whole test process: a name of this run alone
TABLE = f"front-{uuid.uuid4().hex[:8]}"
ACCOUNT = "123456789012"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = DirectDispatch(DomainDispatcherApplication(create_backend_app))  # as aws_local does
    front = MotoFront(app, "127.0.0.1", port)
    ready = threading.Event()
    threading.Thread(target=lambda: asyncio.run(front.serve(ready.set)), daemon=True).start()
    assert ready.wait(30)
    yield f"http://127.0.0.1:{port}"


def _client(service: str, endpoint: str) -> Any:
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        region_name="eu-west-1",
        endpoint_url=endpoint,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )


def test_dynamodb_errors_and_secrets_answer_as_from_moto(endpoint: str) -> None:
    dynamodb = _client("dynamodb", endpoint)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"S": "é" * 10}})
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "a"}})["Item"]
    assert item["v"] == {"S": "é" * 10}
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(
            TableName=TABLE,
            Item={"pk": {"S": "a"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    secrets = _client("secretsmanager", endpoint)
    secrets.create_secret(Name="s", SecretString="v")
    assert secrets.get_secret_value(SecretId="s")["SecretString"] == "v"


def test_a_long_poll_does_not_hold_up_other_requests(endpoint: str) -> None:
    sqs = _client("sqs", endpoint)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    dynamodb = _client("dynamodb", endpoint)
    polled: list[float] = []  # (seconds waited, when it ended)
    ended: list[float] = []

    def poll() -> None:
        started = time.monotonic()
        sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3)
        ended.append(time.monotonic())
        polled.append(ended[0] - started)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.3)  # the poll is in moto by now on any sane machine; if not, this still passes
    dynamodb.list_tables()
    listed_at = time.monotonic()
    poller.join(30)
    assert polled and polled[0] >= 2.5  # the poll did wait
    assert listed_at < ended[0]  # and DynamoDB answered while it waited
