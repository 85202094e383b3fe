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
import requests
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from sandbox.moto_dispatch import DirectDispatch
from sandbox.moto_front import MotoFront
from sandbox.s3_post_policy import PolicyCheck
from sandbox.s3_replication_rules import ReplicationCheck

# moto keeps its tables for the whole test process: a name of this run alone
TABLE = f"front-{uuid.uuid4().hex[:8]}"
ACCOUNT = "123456789012"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # as aws_local does
    app = DirectDispatch(
        ReplicationCheck(PolicyCheck(DomainDispatcherApplication(create_backend_app)))
    )
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


def test_s3_head_reports_the_size_and_the_post_policy_is_enforced(endpoint: str) -> None:
    s3 = _client("s3", endpoint)
    bucket = f"front-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    post = s3.generate_presigned_post(
        bucket, "k", Conditions=[["content-length-range", 1, 10]], ExpiresIn=60
    )
    stored = requests.post(post["url"], data=post["fields"], files={"file": b"x" * 10}, timeout=30)
    assert stored.status_code == 204, stored.text
    # HEAD has no body: its Content-Length is the object's size, kept through the front.
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 10
    refused = requests.post(post["url"], data=post["fields"], files={"file": b"x" * 11}, timeout=30)
    assert refused.status_code == 400 and "<Code>EntityTooLarge</Code>" in refused.text
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 10  # not replaced


def test_replication_rules_are_checked_as_s3_checks_them(endpoint: str) -> None:
    """The custom resource's rules pass and keep their metrics; an event threshold without
    Replication Time Control, or a Filter without DeleteMarkerReplication, is refused as S3
    refuses it (sandbox.s3_replication_rules)."""
    from multiregion_chat.runtime.handlers import attachment_replication

    s3 = _client("s3", endpoint)
    run = uuid.uuid4().hex[:8]
    buckets = {region: f"repl-{run}-{region}" for region in ("eu-west-1", "us-east-1")}
    for name in buckets.values():
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    source = buckets["eu-west-1"]
    role = f"arn:aws:iam::{ACCOUNT}:role/repl"
    rules = attachment_replication.replication_rules("eu-west-1", buckets, list(buckets), "aws")

    def put(rules: list[dict[str, Any]]) -> None:
        s3.put_bucket_replication(
            Bucket=source, ReplicationConfiguration={"Role": role, "Rules": rules}
        )

    put(rules)
    (stored,) = s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]["Rules"]
    assert stored["ID"] == "to-us-east-1"
    assert stored["Destination"]["Metrics"] == {"Status": "Enabled"}

    threshold = {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}
    with_threshold = [
        {**rules[0], "Destination": {**rules[0]["Destination"], "Metrics": threshold}}
    ]
    with pytest.raises(s3.exceptions.ClientError) as refused:
        put(with_threshold)
    assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    assert "Metrics cannot contain an event threshold" in str(refused.value)
    # With Replication Time Control the same threshold is what S3 wants.
    rtc = {"Status": "Enabled", "Time": {"Minutes": 15}}
    put([{**with_threshold[0], "Destination": {**with_threshold[0]["Destination"],
                                               "ReplicationTime": rtc}}])  # fmt: skip

    without_marker = {k: v for k, v in rules[0].items() if k != "DeleteMarkerReplication"}
    with pytest.raises(s3.exceptions.ClientError) as refused:
        put([without_marker])
    assert refused.value.response["Error"]["Code"] == "InvalidRequest"
    assert "DeleteMarkerReplication" in str(refused.value)
