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


def chat_template(region: str, all_regions: list[str]) -> dict[str, Any]:
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
        "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "chat-bus"}},
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
                                    ":event-bus/chat-bus",
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
