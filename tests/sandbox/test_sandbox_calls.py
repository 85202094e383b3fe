"""Counting the functions' AWS requests (sandbox.calls): who sent a request, which operation,
DynamoDB's units, and moto's WSGI app wrapped so that it counts through boto3 for real."""

from __future__ import annotations

import io
import json
import uuid
from typing import Any

import boto3
import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

from sandbox.calls import (
    CALLS_PATH,
    CallCounts,
    CountingApp,
    DynamoDbUnits,
    caller_of,
    function_access_key,
    merge,
    moto_item_size,
    operation_of,
    totals,
)

# moto keeps its tables for the whole test process: a name of this run alone
TABLE = f"calls-{uuid.uuid4().hex[:8]}"
SCOPE = "20261205/eu-west-1/dynamodb/aws4_request"


def _authorization(access_key: str, scope: str = SCOPE) -> str:
    return f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders=host, Signature=ab"


def test_a_functions_access_key_names_it_and_the_scope_names_service_and_region() -> None:
    key = function_access_key("us-east-1", "ClientMessageHandler1A2B")
    assert caller_of(_authorization(key)) == (
        "us-east-1",
        "ClientMessageHandler1A2B",
        "eu-west-1",
        "dynamodb",
    )


@pytest.mark.parametrize(
    "header",
    ["", "Bearer x", _authorization("sandbox"), _authorization("sandbox.us-east-1"), "Credential="],
)
def test_requests_not_signed_by_a_function_are_not_attributed(header: str) -> None:
    assert caller_of(header) is None


def test_operations_from_target_form_and_rest_method() -> None:
    assert operation_of("dynamodb", "POST", "/", "DynamoDB_20120810.GetItem", "") == "GetItem"
    assert operation_of("events", "POST", "/", "AWSEvents.PutEvents", "") == "PutEvents"
    assert operation_of("sqs", "POST", "/", "", "Action=SendMessage&QueueUrl=x") == "SendMessage"
    assert operation_of("execute-api", "POST", "/prod/@connections/a", "", "") == (
        "PostToConnection"
    )
    assert operation_of("execute-api", "DELETE", "/x", "", "") == "DeleteConnection"
    # S3, path style: the method, whether a key is named, the subresource.
    assert operation_of("s3", "HEAD", "/bucket/rooms/r/k", "", "") == "HeadObject"
    assert operation_of("s3", "HEAD", "/bucket", "", "") == "HeadBucket"
    assert operation_of("s3", "PUT", "/bucket", "", "", "replication") == "PutBucketReplication"
    assert operation_of("s3", "DELETE", "/bucket", "", "", "replication=") == (
        "DeleteBucketReplication"
    )


def test_counts_by_region_function_and_operation_merge_and_total() -> None:
    counts = CallCounts()
    here = ("us-east-1", "Fn", "us-east-1", "dynamodb")
    counts.record(here, "GetItem", read_units=0.5)
    counts.record(here, "GetItem", read_units=1.0)
    counts.record(("eu-west-1", "Fn", "us-east-1", "events"), "PutEvents")
    own = CallCounts()
    own.record(here, "GetItem", read_units=0.5)
    tree = merge(counts.snapshot(), own.snapshot())
    assert tree == {
        "us-east-1": {
            "Fn": {"dynamodb:GetItem": {"calls": 3, "readUnits": 2.0, "writeUnits": 0.0}},
            "Fn@eu-west-1": {"events:PutEvents": {"calls": 1}},
        }
    }
    assert totals(tree)["all"] == {
        "calls": 4,
        "dynamodbCalls": 3,
        "readUnits": 2.0,
        "writeUnits": 0.0,
    }
    counts.reset()
    assert counts.snapshot() == {}


def _item(size_of_value: int) -> dict[str, Any]:
    return {"pk": {"S": "k"}, "v": {"S": "x" * size_of_value}}


def test_read_units_round_up_per_4kb_and_halve_for_eventual_consistency() -> None:
    units = DynamoDbUnits(lambda *_: None)
    small = {"Item": _item(10)}
    big = {"Item": _item(5000)}  # 2 + 1 + 1 + 5000 bytes: two 4 KB units
    assert units.units("r", "GetItem", {"ConsistentRead": True}, small, []) == (1.0, 0.0)
    assert units.units("r", "GetItem", {}, small, []) == (0.5, 0.0)
    assert units.units("r", "GetItem", {"ConsistentRead": True}, big, []) == (2.0, 0.0)
    assert units.units("r", "GetItem", {}, {}, []) == (0.5, 0.0)  # a miss still costs
    three = {"Items": [_item(2000)] * 3}  # about 6 KB together: 2 units, not 3
    assert units.units("r", "Query", {"ConsistentRead": True}, three, []) == (2.0, 0.0)


def test_write_units_take_the_larger_of_before_and_after_per_1kb() -> None:
    sizes: dict[str, int | None] = {"before": 3000}
    units = DynamoDbUnits(lambda region, table, key: sizes.get("now"))
    request = {"TableName": "t", "Key": {"pk": {"S": "k"}}}
    sizes["now"] = 3000
    before = units.before("r", "UpdateItem", request)
    sizes["now"] = 100
    assert units.units("r", "UpdateItem", request, {}, before) == (0.0, 3.0)
    sizes["now"] = None  # deleted, or a condition failed on a missing item: still one unit
    assert units.units("r", "DeleteItem", request, {}, [0]) == (0.0, 1.0)
    put = {"TableName": "t", "Item": _item(10)}
    sizes["now"] = 20
    assert units.units("r", "TransactWriteItems", {"TransactItems": [{"Put": put}]}, {}, [0]) == (
        0.0,
        2.0,
    )


@pytest.fixture
def moto_url(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MOTO_ACCOUNT_ID", "123456789012")
    app = CountingApp(
        DomainDispatcherApplication(create_backend_app), moto_item_size("123456789012")
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()


def test_moto_counts_a_functions_dynamodb_requests_with_units(moto_url: Any) -> None:
    url, app = moto_url
    client = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id=function_access_key("eu-west-1", "Handler"),
        aws_secret_access_key="x",
    )
    sandbox_own = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="sandbox",
        aws_secret_access_key="x",
    )
    sandbox_own.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "v": {"S": "x" * 1500}})
    client.get_item(TableName=TABLE, Key={"pk": {"S": "a"}}, ConsistentRead=True)
    client.get_item(TableName=TABLE, Key={"pk": {"S": "missing"}})
    assert app.counts.snapshot() == {
        "eu-west-1": {
            "Handler": {
                "dynamodb:PutItem": {"calls": 1, "readUnits": 0.0, "writeUnits": 2.0},
                "dynamodb:GetItem": {"calls": 2, "readUnits": 1.5, "writeUnits": 0.0},
            }
        }
    }
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url + CALLS_PATH, method="DELETE")) as r:
        assert json.load(r) == {}


def test_the_wrapper_hands_moto_the_body_it_read() -> None:
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"{}"]

    counting = CountingApp(app, lambda *_: None)
    body = b"Action=SendMessage&MessageBody=hi"
    environ = {
        "PATH_INFO": "/",
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_AUTHORIZATION": _authorization(
            function_access_key("eu-west-1", "F"), "20261205/eu-west-1/sqs/aws4_request"
        ),
    }
    assert list(counting(environ, lambda *_: None)) == [b"{}"]
    assert seen == [body]
    assert counting.counts.snapshot() == {"eu-west-1": {"F": {"sqs:SendMessage": {"calls": 1}}}}
