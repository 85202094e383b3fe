"""Hand-written cloud assemblies for the sandbox's unit tests (no synth, no servers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

HANDLER_CODE = """
import json, os

def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"statusCode": 200, "body": json.dumps({
        "region": os.environ.get("AWS_REGION"),
        "table": os.environ.get("TABLE"),
        "remaining": context.get_remaining_time_in_millis() > 0,
        "event": event,
    })}
"""


# The @connections URL exactly as the stacks build it (ChatWebSocketApi.callback_url).
CALLBACK_URL_JOIN: dict[str, Any] = {
    "Fn::Join": [
        "",
        [
            "https://",
            {"Ref": "Api"},
            ".execute-api.",
            {"Ref": "AWS::Region"},
            ".",
            {"Ref": "AWS::URLSuffix"},
            "/",
            {"Ref": "Stage"},
        ],
    ]
}


def lambda_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def integration_uri(function: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":apigateway:",
                {"Ref": "AWS::Region"},
                ":lambda:path/2015-03-31/functions/",
                lambda_arn(function),
                "/invocations",
            ],
        ]
    }


def function(handler: str = "app.handler", runtime: str = "python3.12", **env: Any) -> dict:
    return {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Handler": handler,
            "Runtime": runtime,
            "Timeout": 5,
            "Code": {"S3Bucket": "bucket", "S3Key": "key.zip"},
            "Environment": {"Variables": env},
        },
        "Metadata": {"aws:asset:path": "asset.code"},
    }


def chat_template(
    region: str, all_regions: list[str], *, bus_name: str = "chat-bus"
) -> dict[str, Any]:
    """A stack shaped like the app's: WebSocket API, 2 tables, bus, delivery + forwarding."""
    others = [r for r in all_regions if r != region]
    resources: dict[str, Any] = {
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                    {"AttributeName": "g", "AttributeType": "S"},
                ],
                "BillingMode": "PAY_PER_REQUEST",
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "byG",
                        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
            },
        },
        "Handler": function(
            TABLE={"Ref": "Table"},
            CALLBACK_URL=CALLBACK_URL_JOIN,
            BUS={"Fn::Sub": "${Bus}|${Bus.Arn}|${AWS::AccountId}|${!Literal}"},
        ),
        "NodeFunction": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "Handler": "index.handler",
                "Runtime": "nodejs20.x",
                "Code": {"ZipFile": "exports.handler = async () => {}"},
            },
        },
        "Api": {
            "Type": "AWS::ApiGatewayV2::Api",
            "Properties": {
                "Name": "chat",
                "ProtocolType": "WEBSOCKET",
                "RouteSelectionExpression": "$request.body.action",
            },
        },
        "Stage": {
            "Type": "AWS::ApiGatewayV2::Stage",
            "Properties": {"ApiId": {"Ref": "Api"}, "StageName": "prod"},
        },
        "Integration": {
            "Type": "AWS::ApiGatewayV2::Integration",
            "Properties": {
                "ApiId": {"Ref": "Api"},
                "IntegrationType": "AWS_PROXY",
                "IntegrationUri": integration_uri("Handler"),
            },
        },
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": bus_name}},
        "DeliveryRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "EventBusName": {"Ref": "Bus"},
                "EventPattern": {"source": ["chat.chat"]},
                "State": "ENABLED",
                "Targets": [{"Id": "Target0", "Arn": lambda_arn("Handler")}],
            },
        },
        "Permission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": lambda_arn("Handler"),
                "Principal": "events.amazonaws.com",
                "Action": "lambda:InvokeFunction",
            },
        },
        "ApiPermission": {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "FunctionName": lambda_arn("Handler"),
                "Principal": "apigateway.amazonaws.com",
                "Action": "lambda:InvokeFunction",
            },
        },
    }
    for key in ("$connect", "$disconnect", "$default", "send"):
        name = "Route" + "".join(c for c in key if c.isalnum())
        resources[name] = {
            "Type": "AWS::ApiGatewayV2::Route",
            "Properties": {
                "ApiId": {"Ref": "Api"},
                "RouteKey": key,
                "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "Integration"}]]},
            },
        }
        if key in ("$default", "send"):
            resources[name + "Response"] = {
                "Type": "AWS::ApiGatewayV2::RouteResponse",
                "Properties": {
                    "ApiId": {"Ref": "Api"},
                    "RouteId": {"Ref": name},
                    "RouteResponseKey": "$default",
                },
            }
    if others:
        resources["ForwardingRule"] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "EventBusName": {"Ref": "Bus"},
                "EventPattern": {"source": ["chat.chat"], "detail": {"originRegion": [region]}},
                "Targets": [
                    {
                        "Id": f"Target{i}",
                        "Arn": {
                            "Fn::Join": [
                                "",
                                [
                                    f"arn:aws:events:{other}:",
                                    {"Ref": "AWS::AccountId"},
                                    f":event-bus/{bus_name}",
                                ],
                            ]
                        },
                    }
                    for i, other in enumerate(others)
                ],
            },
        }
    return {
        "Parameters": {
            "LayerParam": {
                "Type": "AWS::SSM::Parameter::Value<String>",
                "Default": "/aws/service/powertools/python/arm64/python3.12/latest",
            }
        },
        "Resources": resources,
    }


AssemblyFactory = Callable[..., Path]


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_port_block(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1 (a sandbox's --port-base)."""
    import random
    import socket

    for _ in range(attempts):
        base = random.randint(20000, 60000 - count)
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no block of {count} free ports found")


# Consumers and a producer of SQS messages, for the event source mapping tests. Each consumer
# appends what it saw to <OUT_DIR>/<function>.jsonl and the number of its invocations running
# at that moment to <OUT_DIR>/<function>.active (counted in the handler's own process).
QUEUE_HANDLER_CODE = """
import json, os, threading, time

import boto3

LOCK = threading.Lock()
ACTIVE = 0
OUT = os.environ["OUT_DIR"]
NAME = os.environ["AWS_LAMBDA_FUNCTION_NAME"].rsplit("-", 1)[-1]


def _append(suffix, line):
    with LOCK, open(os.path.join(OUT, NAME + suffix), "a") as sink:
        sink.write(line + "\\n")


def consume(event, context):
    global ACTIVE
    with LOCK:
        ACTIVE += 1
        now_active = ACTIVE
    _append(".active", str(now_active))
    try:
        failures = []
        for record in event.get("Records", [event]):
            body = json.loads(record["body"]) if "body" in record else record
            received = int(record.get("attributes", {}).get("ApproximateReceiveCount", 1))
            _append(".jsonl", json.dumps({
                "id": body["id"],
                "received": received,
                "remainingMs": context.get_remaining_time_in_millis(),
                "record": record,
            }))
            time.sleep(body.get("sleep", 0))
            kind = body.get("kind")
            if kind == "always-fail" or (kind == "fail-once" and received == 1):
                failures.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failures}
    finally:
        with LOCK:
            ACTIVE -= 1


def produce(event, context):
    sqs = boto3.client("sqs")
    detail = event["detail"]
    url = os.environ[detail["queue"]]
    _append(".urls", url)
    messages = detail["messages"]
    for start in range(0, len(messages), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {
                "Id": str(index),
                "MessageBody": json.dumps(message),
                "DelaySeconds": message.get("delay", 0),
                "MessageAttributes": {"kind": {"DataType": "String",
                                               "StringValue": message.get("kind", "ok")}},
            }
            for index, message in enumerate(messages[start:start + 10])
        ])
    return {"sent": len(messages)}
"""


def queue_template(out_dir: str) -> dict[str, Any]:
    """Queues with a DLQ, three consumers (batch failures, MaximumConcurrency, reserved
    concurrency), a producer behind a rule, and a connections-shaped table."""

    def consumer(**properties: Any) -> dict[str, Any]:
        resource = function("app.consume", OUT_DIR=out_dir)
        resource["Properties"].update({"Timeout": 2, **properties})
        return resource

    def mapping(queue: str, target: str, **properties: Any) -> dict[str, Any]:
        return {
            "Type": "AWS::Lambda::EventSourceMapping",
            "Properties": {
                "EventSourceArn": {"Fn::GetAtt": [queue, "Arn"]},
                "FunctionName": {"Ref": target},
                **properties,
            },
        }

    queue = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 4}}
    producer = function(
        "app.produce",
        OUT_DIR=out_dir,
        WORK_QUEUE_URL={"Ref": "WorkQueue"},
        SLOW_QUEUE_URL={"Ref": "SlowQueue"},
        RESERVED_QUEUE_URL={"Ref": "ReservedQueue"},
        TABLE={"Ref": "Table"},
    )
    return {
        "Resources": {
            "Table": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "AttributeDefinitions": [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                },
            },
            "DeadLetters": {"Type": "AWS::SQS::Queue", "Properties": {}},
            "WorkQueue": {
                "Type": "AWS::SQS::Queue",
                "Properties": {
                    # Six times the consumer's Timeout: a batch slowed down by a busy machine
                    # (a shared 2-core box at load 20 took over 4 s) is still deleted
                    # before its messages could come back.
                    "VisibilityTimeout": 12,
                    "RedrivePolicy": {
                        "deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetters", "Arn"]},
                        "maxReceiveCount": 2,
                    },
                },
            },
            "SlowQueue": queue,
            "ReservedQueue": queue,
            "Work": consumer(),
            "Slow": consumer(),
            "Reserved": consumer(ReservedConcurrentExecutions=2),
            "WorkMapping": mapping(
                "WorkQueue",
                "Work",
                BatchSize=10,
                FunctionResponseTypes=["ReportBatchItemFailures"],
                ScalingConfig={"MaximumConcurrency": 2},
            ),
            "SlowMapping": mapping(
                "SlowQueue", "Slow", BatchSize=1, ScalingConfig={"MaximumConcurrency": 3}
            ),
            "ReservedMapping": mapping("ReservedQueue", "Reserved", BatchSize=1),
            "Producer": {
                **producer,
                "Properties": {**producer["Properties"], "FunctionName": "producer"},
            },
            "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "test-bus"}},
            "ProduceRule": {
                "Type": "AWS::Events::Rule",
                "Properties": {
                    "EventBusName": {"Ref": "Bus"},
                    "EventPattern": {"source": ["test"]},
                    "Targets": [{"Id": "Producer", "Arn": lambda_arn("Producer")}],
                },
            },
        }
    }
