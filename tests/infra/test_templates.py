"""Assertions on each regional template of the default (3-region) app."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from multiregion_chat.infra.auth import HTTP_IDENTITY_SOURCE, WEBSOCKET_IDENTITY_SOURCE
from multiregion_chat.infra.http_api import HTTP_ROUTE_KEYS
from multiregion_chat.infra.monitoring import ALARMED_CUSTOM_METRICS
from multiregion_chat.infra.server_api import DISCONNECT_PATH, PUBLISH_PATH
from multiregion_chat.infra.websocket_api import CLIENT_ROUTE_KEYS, CONNECTION_ROUTE_KEYS

from .helpers import (
    ACCOUNT,
    JsonDict,
    SynthResult,
    access_log_group_id,
    api,
    as_list,
    delivery_rule,
    forwarding_rules,
    function_by_handler,
    getatt_id,
    of_api,
    only,
    resolve,
    resources,
    role_statements,
)
from .template_checks import (
    XRAY_ACTIONS,
    check_no_wildcards_except_xray,
    check_queues_enforce_tls,
    check_rule_targets,
)

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
SERVER_API_ROUTE_KEYS = (f"POST {PUBLISH_PATH}", f"POST {DISCONNECT_PATH}")
CONTRACT_ENV = {
    "CONNECTIONS_TABLE",
    "MESSAGES_TABLE",
    "EVENT_BUS_NAME",
    "EVENT_SOURCE",
    "MAX_BODY_BYTES",
    "HISTORY_RETENTION_SECONDS",
    "CONNECTION_TTL_SECONDS",
    "FANOUT_CONCURRENCY",
    "FANOUT_SHARD_THRESHOLD",
    "FANOUT_SHARD_SIZE",
    "FANOUT_REQUEST_BUDGET",
    "PRESENCE_LIVE_MAX_MEMBERS",
    "CHAT_REGIONS",
    "BUS_CLOCK_SKEW_SECONDS",
    "CONNECTION_RATE_LIMIT",
    "CONNECTION_BURST_LIMIT",
    "USER_RATE_LIMIT",
    "USER_BURST_LIMIT",
    "MAX_ROOMS_PER_CONNECTION",
    "MAX_LONG_POLLS_PER_USER",
    "MAX_CONNECTIONS_PER_USER",
    "LOCAL_FAST_PATH_MAX_MEMBERS",
    "ATTACHMENT_BUCKET",
    "ATTACHMENT_BUCKET_PATTERN",
    "MAX_ATTACHMENT_BYTES",
    "UPLOAD_SLOTS_PER_USER_PER_MINUTE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_LOG_LEVEL",
}
HANDLERS = {
    "ConnectionHandler": "multiregion_chat.runtime.handlers.connection_handler.handler",
    "ClientMessageHandler": "multiregion_chat.runtime.handlers.client_message_handler.handler",
    "EventBusMessageHandler": "multiregion_chat.runtime.handlers.event_bus_message_handler.handler",
    "HttpHandler": "multiregion_chat.runtime.handlers.http_handler.handler",
    "FanoutWorker": "multiregion_chat.runtime.handlers.fanout_worker.handler",
    "ServerApi": "multiregion_chat.runtime.handlers.server_api_handler.handler",
}
AUTHORIZER_HANDLER = "multiregion_chat.runtime.handlers.authorizer.handler"
SECRET_NAME = "chat/prod/token-signing-secret"
# Per function: (memory MB, timeout s, variables beyond CONTRACT_ENV).
FUNCTION_SHAPES: dict[str, tuple[int, int, set[str]]] = {
    "ConnectionHandler": (256, 10, set()),
    # Closes expired connections; verifies the fresh token of ``refresh``.
    # (the authorizer's token rules: infra.functions.authorizer_environment).
    "ClientMessageHandler": (
        512,
        10,
        {"CALLBACK_URL", "SIGNING_SECRET_NAME", "MAX_TOKEN_LIFETIME_SECONDS"},
    ),
    # The two functions that post to @connections get one full vCPU (1,769 MB).
    "EventBusMessageHandler": (1769, 30, {"CALLBACK_URL", "FANOUT_QUEUE_URL"}),
    "FanoutWorker": (1769, 60, {"CALLBACK_URL", "FANOUT_QUEUE_URL"}),
    # HTTP API's integration limit is 30 s; a long-poll GET waits up to 20 s.
    "HttpHandler": (256, 29, {"HTTP_POLL_INTERVAL_MS", "HTTP_POLL_MAX_INTERVAL_MS"}),
    # Deletes connections through @connections (the server API's disconnect).
    "ServerApi": (256, 29, {"CALLBACK_URL"}),
}
# docs/contracts.md, "IAM the handlers need", spelled out independently of
# infra/functions.py: DynamoDB actions per table, and PutEvents on the bus.
CONTRACT_IAM: dict[str, dict[str, Any]] = {
    "ConnectionHandler": {
        "connections": ("PutItem", "GetItem", "DeleteItem", "BatchWriteItem", "UpdateItem"),
        "bus": True,
    },
    "ClientMessageHandler": {
        "connections": ("BatchGetItem", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"),
        # Query: history, join's missed; PutItem: the same-region fast path's history write
        "messages": ("Query", "PutItem"),
        "bus": True,
    },
    "EventBusMessageHandler": {
        "connections": ("Query", "GetItem", "UpdateItem", "DeleteItem", "BatchWriteItem"),
        "messages": ("PutItem",),
        "bus": True,
    },
    "HttpHandler": {
        "connections": ("GetItem", "UpdateItem", "PutItem", "DeleteItem"),
        "messages": ("Query",),
        "bus": True,
    },
    "FanoutWorker": {
        "connections": ("GetItem", "UpdateItem", "BatchWriteItem", "DeleteItem"),
        "bus": True,
    },
    # Plus Query on the ConnectionsByUser index only (test_function_role_exact_permissions).
    "ServerApi": {"bus": True},
}


@pytest.fixture(scope="module", params=REGIONS)
def region(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def template(app3: SynthResult, region: str) -> JsonDict:
    return app3.template_json(region)


def table_ids(template: JsonDict) -> dict[str, str]:
    """{"connections": logical id, "messages": logical id} by key schema."""
    ids = {}
    for logical_id, table in resources(template, "AWS::DynamoDB::Table").items():
        hash_key = table["Properties"]["KeySchema"][0]["AttributeName"]
        ids[{"pk": "connections", "room": "messages"}[hash_key]] = logical_id
    return ids


# ---- tables ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hash_key", "range_key"),
    [("pk", "sk"), ("room", "id")],
    ids=["connections", "messages"],
)
def test_tables(app3: SynthResult, region: str, hash_key: str, range_key: str) -> None:
    app3.template(region).has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [
                    {"AttributeName": hash_key, "KeyType": "HASH"},
                    {"AttributeName": range_key, "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": Match.array_with(
                    [
                        {"AttributeName": hash_key, "AttributeType": "S"},
                        {"AttributeName": range_key, "AttributeType": "S"},
                    ]
                ),
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expiresAt", "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
                "DeletionProtectionEnabled": True,
            },
            # stage "prod" => retain
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_two_tables_without_names(template: JsonDict) -> None:
    tables = resources(template, "AWS::DynamoDB::Table")
    assert len(tables) == 2
    assert set(table_ids(template)) == {"connections", "messages"}


# ---- WebSocket API -----------------------------------------------------------
def test_api_and_routes(template: JsonDict) -> None:
    api_id, websocket = api(template, "WEBSOCKET")
    assert websocket["Properties"]["RouteSelectionExpression"] == "$request.body.action"

    routes = {
        route["Properties"]["RouteKey"]: (logical_id, route["Properties"])
        for logical_id, route in of_api(template, "AWS::ApiGatewayV2::Route", api_id).items()
    }
    assert sorted(routes) == sorted((*CONNECTION_ROUTE_KEYS, *CLIENT_ROUTE_KEYS))
    assert len(routes) == 12  # $connect, $disconnect, $default and nine actions

    integrations = of_api(template, "AWS::ApiGatewayV2::Integration", api_id)
    connection_fn, _ = function_by_handler(template, HANDLERS["ConnectionHandler"])
    client_fn, _ = function_by_handler(template, HANDLERS["ClientMessageHandler"])

    def integrated_function(route: JsonDict) -> str:
        integration_id = route["Target"]["Fn::Join"][1][1]["Ref"]
        uri = integrations[integration_id]["Properties"]["IntegrationUri"]
        return getatt_id(uri["Fn::Join"][1][1])

    response_routes = {
        response["Properties"]["RouteId"]["Ref"]
        for response in resources(template, "AWS::ApiGatewayV2::RouteResponse").values()
        if response["Properties"]["RouteResponseKey"] == "$default"
    }
    authorizer_id = connect_authorizer(template)[0]
    assert routes["$connect"][1]["AuthorizationType"] == "CUSTOM"
    assert routes["$connect"][1]["AuthorizerId"] == {"Ref": authorizer_id}
    # WebSocket APIs authorize only $connect (acknowledged in infra/nag_acknowledgments.py, APIG4).
    for key in ("$disconnect", *CLIENT_ROUTE_KEYS):
        assert routes[key][1]["AuthorizationType"] == "NONE"
        assert "AuthorizerId" not in routes[key][1]
    for key in CONNECTION_ROUTE_KEYS:
        logical_id, route = routes[key]
        assert integrated_function(route) == connection_fn
        assert "RouteResponseSelectionExpression" not in route
        assert logical_id not in response_routes
    for key in CLIENT_ROUTE_KEYS:
        logical_id, route = routes[key]
        assert integrated_function(route) == client_fn
        # return_response=True: the handler's return value is the direct reply.
        assert route["RouteResponseSelectionExpression"] == "$default"
        assert logical_id in response_routes
    assert all(route["ApiId"] == {"Ref": api_id} for _, route in routes.values())


def test_stage(app3: SynthResult, template: JsonDict, region: str) -> None:
    config = app3.config
    api_id, _ = api(template, "WEBSOCKET")
    (stage,) = of_api(template, "AWS::ApiGatewayV2::Stage", api_id).values()
    props = stage["Properties"]
    assert props["StageName"] == config.stage
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": config.throttle_rate_limit,
        "ThrottlingBurstLimit": config.throttle_burst_limit,
        "LoggingLevel": "ERROR",
        "DataTraceEnabled": False,
    }
    log_group = template["Resources"][access_log_group_id(stage, region)]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == config.log_retention_days
    log_format = props["AccessLogSettings"]["Format"]
    assert "$context.requestId" in log_format and "$context.connectionId" in log_format
    # The account-level logging role exists before the stage is created.
    account_id, account = only(template, "AWS::ApiGateway::Account")
    assert account_id in stage["DependsOn"]
    role = template["Resources"][getatt_id(account["Properties"]["CloudWatchRoleArn"])]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "apigateway.amazonaws.com"
    }
    # Retained on purpose, both: every API in the account and region logs
    # through them (infra/websocket_api.py).
    assert role["DeletionPolicy"] == role["UpdateReplacePolicy"] == "Retain"
    assert account["DeletionPolicy"] == account["UpdateReplacePolicy"] == "Retain"


# ---- HTTP fallback API -------------------------------------------------------
def test_http_api_routes(template: JsonDict, region: str) -> None:
    api_id, http = api(template, "HTTP")
    props = http["Properties"]
    assert "RouteSelectionExpression" not in props
    assert props["CorsConfiguration"] == {
        "AllowOrigins": ["*"],  # cdk.json's httpCorsOrigins
        "AllowMethods": ["GET", "POST", "OPTIONS"],
        "AllowHeaders": ["Authorization", "Content-Type"],
        "MaxAge": 3600,
    }
    all_routes = {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in of_api(template, "AWS::ApiGatewayV2::Route", api_id).values()
    }
    assert HTTP_ROUTE_KEYS == ("GET /rooms/{room}/messages", "POST /rooms/{room}/messages")
    # The server API's IAM routes are checked in test_server_api_templates.py.
    assert sorted(all_routes) == sorted((*HTTP_ROUTE_KEYS, *SERVER_API_ROUTE_KEYS))
    routes = {key: all_routes[key] for key in HTTP_ROUTE_KEYS}
    # Both routes run the token authorizer.
    authorizer_id, _ = http_authorizer(template)
    for route in routes.values():
        assert route["AuthorizationType"] == "CUSTOM"
        assert route["AuthorizerId"] == {"Ref": authorizer_id}
    assert of_api(template, "AWS::ApiGatewayV2::RouteResponse", api_id) == {}

    handler_id, _ = function_by_handler(template, HANDLERS["HttpHandler"])
    integrations = of_api(template, "AWS::ApiGatewayV2::Integration", api_id)
    for route in routes.values():
        integration = integrations[route["Target"]["Fn::Join"][1][1]["Ref"]]["Properties"]
        assert integration["IntegrationType"] == "AWS_PROXY"
        assert integration["PayloadFormatVersion"] == "2.0"
        assert getatt_id(integration["IntegrationUri"]) == handler_id
        # No explicit timeout: HTTP API's default (and maximum) of 30 s applies.
        assert "TimeoutInMillis" not in integration

    # API Gateway may invoke HttpHandler only for this API's message routes.
    permissions = [
        permission["Properties"]
        for permission in resources(template, "AWS::Lambda::Permission").values()
        if permission["Properties"]["FunctionName"] == {"Fn::GetAtt": [handler_id, "Arn"]}
    ]
    assert permissions
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert resolve(permission["SourceArn"], region=region, refs={api_id: "http123"}) == (
            f"arn:aws:execute-api:{region}:{ACCOUNT}:http123/*/*/rooms/{{room}}/messages"
        )


def test_http_api_construct_attributes(app3: SynthResult, region: str) -> None:
    http_api = app3.stacks[region].http_api
    assert sorted(http_api.routes) == sorted(HTTP_ROUTE_KEYS)
    assert http_api.stage.stage_name == "$default"
    assert http_api.url == http_api.stage.url


def test_http_stage(app3: SynthResult, template: JsonDict, region: str) -> None:
    config = app3.config
    api_id, _ = api(template, "HTTP")
    (stage,) = of_api(template, "AWS::ApiGatewayV2::Stage", api_id).values()
    props = stage["Properties"]
    # One auto-deployed $default stage: the URL has no stage segment.
    assert props["StageName"] == "$default"
    assert props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": config.throttle_rate_limit,
        "ThrottlingBurstLimit": config.throttle_burst_limit,
    }
    log_group = template["Resources"][access_log_group_id(stage, region)]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["RetentionInDays"] == config.log_retention_days
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "routeKey", "status", "integrationError"} <= set(fields)
    # Never the query string, headers (Authorization) or bodies.
    assert not any(
        word in variable
        for variable in fields.values()
        for word in ("querystring", "header", "authorizer", "body")
    ), fields
    # HTTP API access logs go through API Gateway's service-linked role: the
    # stage does not wait for the account-level CloudWatch role.
    assert "DependsOn" not in stage


# ---- functions ---------------------------------------------------------------
def _check_dependencies_layer(template: JsonDict, props: JsonDict) -> None:
    """One layer, built by the app (Powertools, aiohttp, ...), the stack's only one;
    no public layer ARN and no SSM parameter a region might lack."""
    (layer,) = props["Layers"]
    (layer_id,) = resources(template, "AWS::Lambda::LayerVersion")
    assert layer == {"Ref": layer_id}
    layer_props = template["Resources"][layer_id]["Properties"]
    assert layer_props["CompatibleArchitectures"] == ["arm64"]
    assert layer_props["CompatibleRuntimes"] == ["python3.14"]
    # CDK's own BootstrapVersion is the only parameter (an SSM one of the bootstrap stack).
    assert set(template.get("Parameters", {})) <= {"BootstrapVersion"}


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_function(app3: SynthResult, template: JsonDict, name: str) -> None:
    config = app3.config
    _, function = function_by_handler(template, HANDLERS[name])
    props = function["Properties"]
    assert props["Runtime"] == "python3.14"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    # Only HttpHandler's long polls could take the region's concurrency: it alone is capped.
    reserved = config.http_reserved_concurrency if name == "HttpHandler" else None
    assert props.get("ReservedConcurrentExecutions") == reserved
    assert "FunctionName" not in props

    _check_dependencies_layer(template, props)

    memory, timeout, extra_env = FUNCTION_SHAPES[name]
    assert props["MemorySize"] == memory
    assert props["Timeout"] == timeout

    env = props["Environment"]["Variables"]
    assert set(env) == CONTRACT_ENV | extra_env
    tables = table_ids(template)
    assert env["CONNECTIONS_TABLE"] == {"Ref": tables["connections"]}
    assert env["MESSAGES_TABLE"] == {"Ref": tables["messages"]}
    assert env["EVENT_BUS_NAME"] == config.bus_name == "chat-prod-chat-bus"
    assert env["EVENT_SOURCE"] == "chat.chat"
    assert env["MAX_BODY_BYTES"] == "16384"
    assert env["HISTORY_RETENTION_SECONDS"] == "86400"
    assert env["CONNECTION_TTL_SECONDS"] == "10800"
    assert int(env["CONNECTION_TTL_SECONDS"]) > 7200
    assert env["FANOUT_CONCURRENCY"] == "128"
    assert env["FANOUT_SHARD_THRESHOLD"] == "2000"
    assert env["FANOUT_SHARD_SIZE"] == "1000"
    assert env["FANOUT_REQUEST_BUDGET"] == "5000"
    assert env["POWERTOOLS_SERVICE_NAME"] == "chat"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "chat/prod"
    assert env["CONNECTION_RATE_LIMIT"] == "10"
    assert env["CONNECTION_BURST_LIMIT"] == "30"
    assert env["USER_RATE_LIMIT"] == "20"
    assert env["USER_BURST_LIMIT"] == "60"
    assert env["MAX_ROOMS_PER_CONNECTION"] == "50"
    assert env["MAX_LONG_POLLS_PER_USER"] == "4"
    assert env["MAX_CONNECTIONS_PER_USER"] == "20"
    assert env["LOCAL_FAST_PATH_MAX_MEMBERS"] == "100"
    if name == "HttpHandler":
        assert env["HTTP_POLL_INTERVAL_MS"] == "250"
        assert env["HTTP_POLL_MAX_INTERVAL_MS"] == "2000"

    log_group = template["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == config.log_retention_days


@pytest.mark.parametrize("name", ["EventBusMessageHandler", "ClientMessageHandler"])
def test_callback_url(template: JsonDict, region: str, name: str) -> None:
    _, function = function_by_handler(template, HANDLERS[name])
    api_id, _ = api(template, "WEBSOCKET")
    url = resolve(
        function["Properties"]["Environment"]["Variables"]["CALLBACK_URL"],
        region=region,
        refs={api_id: "abc123"},
    )
    assert url == f"https://abc123.execute-api.{region}.amazonaws.com/prod"


def test_bus_handler_async_failures_are_kept(template: JsonDict) -> None:
    function_id, _ = function_by_handler(template, HANDLERS["EventBusMessageHandler"])
    _, config = only(template, "AWS::Lambda::EventInvokeConfig")
    props = config["Properties"]
    assert props["FunctionName"] == {"Ref": function_id}
    assert props["MaximumRetryAttempts"] == 2
    queue_id = getatt_id(props["DestinationConfig"]["OnFailure"]["Destination"])
    assert template["Resources"][queue_id]["Type"] == "AWS::SQS::Queue"


# ---- IAM: exactly as narrow as intended --------------------------------------
def _normalized(statements: list[JsonDict]) -> list[tuple[tuple[str, ...], str]]:
    """(sorted actions, resource as JSON-ish string) for each Allow statement.

    The one condition allowed is ``events:source`` on PutEvents, shown in the
    resource key as ``?source=a,b``: which sources a function may put.
    """
    out = []
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = tuple(sorted(as_list(statement["Action"])))
        suffix = ""
        if "Condition" in statement:
            assert actions == ("events:PutEvents",), statement
            condition = statement["Condition"]
            assert list(condition) == ["StringEquals"]
            assert list(condition["StringEquals"]) == ["events:source"]
            suffix = "?source=" + ",".join(as_list(condition["StringEquals"]["events:source"]))
        for resource in as_list(statement["Resource"]):
            out.append((actions, _resource_key(resource) + suffix))
    return sorted(out)


def _resource_key(resource: Any) -> str:
    if resource == "*":
        return "*"
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return f"GetAtt:{getatt_id(resource)}"
    return f"Other:{resource}"


def _function_role(template: JsonDict, name: str) -> tuple[str, JsonDict]:
    _, function = function_by_handler(template, HANDLERS[name])
    role_id = getatt_id(function["Properties"]["Role"])
    return role_id, function


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_function_role_exact_permissions(template: JsonDict, region: str, name: str) -> None:
    role_id, function = _function_role(template, name)
    role = template["Resources"][role_id]
    assert "ManagedPolicyArns" not in role["Properties"]  # no AWSLambdaBasicExecutionRole
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ]
    tables = table_ids(template)
    connections = f"GetAtt:{tables['connections']}"
    messages = f"GetAtt:{tables['messages']}"
    own_log_group = f"GetAtt:{function['Properties']['LoggingConfig']['LogGroup']['Ref']}"
    logs = (("logs:CreateLogStream", "logs:PutLogEvents"), own_log_group)
    xray = (tuple(XRAY_ACTIONS), "*")

    def ddb(*actions: str) -> tuple[str, ...]:
        return tuple(sorted(f"dynamodb:{action}" for action in actions))

    bus_id, _ = only(template, "AWS::Events::EventBus")
    grants = CONTRACT_IAM[name]
    expected = [logs, xray]
    for table, resource in (("connections", connections), ("messages", messages)):
        if grants.get(table):
            expected.append((ddb(*grants[table]), resource))
    if grants.get("bus"):
        # Only the server API may put the server's source (system: senders).
        sources = "chat.chat,chat.chat.server" if name == "ServerApi" else "chat.chat"
        expected.append((("events:PutEvents",), f"GetAtt:{bus_id}?source={sources}"))

    statements = role_statements(template, role_id)
    fanout_queue = _fanout_queue_id(template)
    if name == "EventBusMessageHandler":  # shard jobs: send only
        expected.append((("sqs:SendMessage",), f"GetAtt:{fanout_queue}"))
    if name == "FanoutWorker":
        manage = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
        assert len(manage) == 1
        expected += [
            # The SQS event source's grant (consume this queue) merged with the
            # worker's own SendMessage (hand-offs) on the same queue.
            (
                (
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                    "sqs:ReceiveMessage",
                    "sqs:SendMessage",
                ),
                f"GetAtt:{fanout_queue}",
            ),
            (("execute-api:ManageConnections",), f"Other:{manage[0]['Resource']}"),
        ]
    if name == "ClientMessageHandler":  # token_expired: push the frame, then close
        (manage,) = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
        api_id, _ = api(template, "WEBSOCKET")
        assert sorted(resolve(manage["Resource"], region=region, refs={api_id: "abc123"})) == [
            f"arn:aws:execute-api:{region}:{ACCOUNT}:abc123/prod/{method}/@connections/*"
            for method in ("DELETE", "POST")
        ]
        expected += [
            (("execute-api:ManageConnections",), f"Other:{arn}") for arn in manage["Resource"]
        ]
        (secret,) = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
        expected.append((("secretsmanager:GetSecretValue",), _resource_key(secret["Resource"])))
        # Attachments: exactly these (tests/infra/test_attachments.py checks the ARNs).
        expected += [
            (tuple(sorted(as_list(s["Action"]))), _resource_key(resource))
            for s in statements
            if all(action.startswith("s3:") for action in as_list(s["Action"]))
            for resource in as_list(s["Resource"])
        ]
    if name == "ServerApi":
        api_id, _ = api(template, "WEBSOCKET")
        manage = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
        assert len(manage) == 1
        assert resolve(manage[0]["Resource"], region=region, refs={api_id: "abc123"}) == (
            f"arn:aws:execute-api:{region}:{ACCOUNT}:abc123/prod/DELETE/@connections/*"
        )
        index = [s for s in statements if s["Action"] == "dynamodb:Query"]
        assert len(index) == 1
        assert resolve(index[0]["Resource"], region=region) == (
            f"<{tables['connections']}.Arn>/index/ConnectionsByUser"
        )
        expected += [
            (("execute-api:ManageConnections",), f"Other:{manage[0]['Resource']}"),
            (("dynamodb:Query",), f"Other:{index[0]['Resource']}"),
        ]
    if name == "EventBusMessageHandler":
        _, invoke_config = only(template, "AWS::Lambda::EventInvokeConfig")
        failure_queue = getatt_id(
            invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
        )
        # post frames; close members whose token expired (token_expired, then DELETE)
        (manage,) = [s for s in statements if s["Action"] == "execute-api:ManageConnections"]
        api_id, _ = api(template, "WEBSOCKET")
        assert sorted(resolve(manage["Resource"], region=region, refs={api_id: "abc123"})) == [
            f"arn:aws:execute-api:{region}:{ACCOUNT}:abc123/prod/{method}/@connections/*"
            for method in ("DELETE", "POST")
        ]
        expected += [
            # Lambda's SqsDestination grant: send, plus two read-only calls on this queue.
            (
                ("sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"),
                f"GetAtt:{failure_queue}",
            ),
        ]
        expected += [
            (("execute-api:ManageConnections",), f"Other:{arn}") for arn in manage["Resource"]
        ]
    assert _normalized(statements) == sorted(expected)


def _fanout_queue_id(template: JsonDict) -> str:
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    return getatt_id(mapping["Properties"]["EventSourceArn"])


def test_fanout_queue_and_worker(app3: SynthResult, template: JsonDict) -> None:
    """Big rooms: a TLS-only, encrypted queue with a dead-letter queue, drained by
    FanoutWorker one shard per invocation with partial batch responses."""
    worker_id, _ = function_by_handler(template, HANDLERS["FanoutWorker"])
    (mapping,) = resources(template, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": worker_id}
    assert props["BatchSize"] == 1
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["ScalingConfig"] == {"MaximumConcurrency": app3.config.fanout_max_workers}
    queue = template["Resources"][_fanout_queue_id(template)]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * 60  # >= 6 x the worker's timeout
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    dlq = template["Resources"][getatt_id(queue["RedrivePolicy"]["deadLetterTargetArn"])]
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for name in ("EventBusMessageHandler", "FanoutWorker"):
        _, function = function_by_handler(template, HANDLERS[name])
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["FANOUT_QUEUE_URL"] == {"Ref": _fanout_queue_id(template)}


def test_no_wildcards_except_xray(template: JsonDict) -> None:
    check_no_wildcards_except_xray(template)


def test_no_physical_names(template: JsonDict) -> None:
    """Generated names only (two stages/apps share an account), except the bus by design."""
    name_props = {"RoleName", "TableName", "QueueName", "TopicName", "FunctionName", "Name"}
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        # A literal string is a physical name; a Ref/GetAtt merely points at one.
        literal = {key for key in name_props & set(props) if isinstance(props[key], str)}
        if resource["Type"] == "AWS::IAM::Role" and str(props.get("RoleName", "")).startswith(
            "chat-prod-files-repl-"
        ):
            # The attachment replication roles: named so another region's replication
            # setup can pass them (infra/attachments.py).
            literal -= {"RoleName"}
        if resource["Type"] in (
            "AWS::Events::EventBus",
            "AWS::ApiGatewayV2::Api",
            "AWS::ApiGatewayV2::Authorizer",
            "AWS::SecretsManager::Secret",
        ):
            # The bus and signing-secret names are the design (one address in every
            # region); API and authorizer names need not be unique.
            literal -= {"Name"}
        assert not literal, (logical_id, literal)
    assert not {"TableName"} & _all_keys(template["Resources"])


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(_all_keys(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_all_keys(item) for item in value))
    return set()


def test_only_the_account_logging_role_uses_a_managed_policy(template: JsonDict) -> None:
    with_managed = [
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        for role in resources(template, "AWS::IAM::Role").values()
        if "ManagedPolicyArns" in role["Properties"]
    ]
    assert with_managed == [{"Service": "apigateway.amazonaws.com"}]


# ---- replication -------------------------------------------------------------
def test_bus_name_identical_across_regions(app3: SynthResult) -> None:
    names = {
        only(app3.template_json(region), "AWS::Events::EventBus")[1]["Properties"]["Name"]
        for region in REGIONS
    }
    assert names == {"chat-prod-chat-bus"}


def test_delivery_rule(template: JsonDict) -> None:
    bus_id, _ = only(template, "AWS::Events::EventBus")
    _, rule = delivery_rule(template)
    props = rule["Properties"]
    assert props["EventBusName"] == {"Ref": bus_id}
    assert props["EventPattern"] == {"source": ["chat.chat", "chat.chat.server"]}
    (target,) = props["Targets"]
    function_id, _ = function_by_handler(template, HANDLERS["EventBusMessageHandler"])
    assert getatt_id(target["Arn"]) == function_id


def test_forwarding_rules(template: JsonDict, region: str) -> None:
    bus_id, _ = only(template, "AWS::Events::EventBus")
    rules = forwarding_rules(template)
    assert len(rules) == 1  # two other regions fit in one rule
    forwarded_to = []
    role_ids = set()
    for rule in rules.values():
        props = rule["Properties"]
        assert props["EventBusName"] == {"Ref": bus_id}
        # Only events accepted in this region are forwarded: no loops.
        assert props["EventPattern"] == {
            "source": ["chat.chat", "chat.chat.server"],
            "detail": {"originRegion": [region]},
        }
        assert len(props["Targets"]) <= 5
        for target in props["Targets"]:
            forwarded_to.append(resolve(target["Arn"], region=region))
            role_ids.add(getatt_id(target["RoleArn"]))
    expected = [
        f"arn:aws:events:{other}:{ACCOUNT}:event-bus/chat-prod-chat-bus"
        for other in REGIONS
        if other != region
    ]
    assert sorted(forwarded_to) == sorted(expected)
    # One shared role, allowed to put events on exactly those buses.
    assert len(role_ids) == 1
    (role_id,) = role_ids
    (statement,) = role_statements(template, role_id)
    assert statement["Action"] == "events:PutEvents"
    assert sorted(resolve(as_list(statement["Resource"]), region=region)) == sorted(expected)
    trust = template["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]
    (assume,) = trust["Statement"]
    assert assume["Principal"] == {"Service": "events.amazonaws.com"}
    # Confused deputy: only this account's rules on this region's chat bus
    # may assume it (the rules' own ARNs would be a dependency cycle).
    conditions = {
        (operator, key): resolve(value, region=region)
        for operator, pairs in assume["Condition"].items()
        for key, value in pairs.items()
    }
    assert conditions == {
        ("StringEquals", "aws:SourceAccount"): ACCOUNT,
        (
            "ArnLike",
            "aws:SourceArn",
        ): f"arn:aws:events:{region}:{ACCOUNT}:rule/chat-prod-chat-bus/*",
    }


def test_every_target_has_retry_policy_and_dlq(template: JsonDict) -> None:
    check_rule_targets(template)


def test_queues_enforce_tls(template: JsonDict) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    # replication DLQ, bus handler failures, fan-out queue and DLQ, server API disconnects DLQ
    assert len(queues) == 5
    check_queues_enforce_tls(template)


# ---- monitoring and outputs --------------------------------------------------
def test_alarm_topic_key_lets_cloudwatch_encrypt(template: JsonDict) -> None:
    """CloudWatch publishes as itself: it needs the topic's key, which an AWS-managed key denies."""
    _, topic = only(template, "AWS::SNS::Topic")
    key_id, key = only(template, "AWS::KMS::Key")
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"  # prod
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    cloudwatch = [
        s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch == [
        {
            "Sid": "AllowCloudWatchAlarmsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
    # No other service principal may use the key.
    assert {json.dumps(s["Principal"], sort_keys=True) for s in statements} == {
        json.dumps({"Service": "cloudwatch.amazonaws.com"}),
        json.dumps(
            {"AWS": {"Fn::Join": ["", ["arn:aws:iam::", {"Ref": "AWS::AccountId"}, ":root"]]}}
        ),
    }


def test_alarm_topic_policy_lets_cloudwatch_publish(template: JsonDict, region: str) -> None:
    topic_id, _ = only(template, "AWS::SNS::Topic")
    _, policy = only(template, "AWS::SNS::TopicPolicy")
    assert policy["Properties"]["Topics"] == [{"Ref": topic_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert resolve(allow, region=region) == [
        {
            "Sid": "AllowCloudWatchAlarmsToPublish",
            "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": "sns:Publish",
            "Resource": f"<{topic_id}>",
            "Condition": {
                "StringEquals": {"aws:SourceAccount": ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{region}:{ACCOUNT}:alarm:*"},
            },
        }
    ]
    # enforce_ssl stays: every publish without TLS is denied, CloudWatch's included.
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == "*" and deny["Action"] == "sns:Publish"


def test_nothing_uses_an_aws_managed_key(template: JsonDict) -> None:
    """AWS services (CloudWatch, EventBridge, Lambda) cannot be granted an aws/* key: SSE
    resources they write to use a customer managed key or the service's own (SSE-SQS)."""
    text = json.dumps(template)
    assert "alias/aws/" not in text
    for queue in resources(template, "AWS::SQS::Queue").values():
        assert "KmsMasterKeyId" not in queue["Properties"]


def test_alarms(template: JsonDict) -> None:
    topic_id, _ = only(template, "AWS::SNS::Topic")
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    # 8 functions x (Errors, Throttles) + 4 DLQs + 2 WebSocket + 1 HTTP API
    # + one per ALARMED_CUSTOM_METRICS + attachment replication to the 2 other regions
    assert len(alarms) == 16 + 4 + 2 + 1 + len(ALARMED_CUSTOM_METRICS) + 2
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    metrics = sorted(
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()
    )
    assert metrics == sorted(
        [("AWS/Lambda", "Errors")] * 8
        + [("AWS/Lambda", "Throttles")] * 8
        + [("AWS/S3", "OperationsFailedReplication")] * 2
        + [("AWS/SQS", "ApproximateNumberOfMessagesVisible")] * 4
        + [("AWS/ApiGateway", "ExecutionError"), ("AWS/ApiGateway", "IntegrationError")]
        + [("AWS/ApiGateway", "5xx")]
        + [("chat/prod", "FailedDeliveries"), ("chat/prod", "PublishFailures")]
        + [("chat/prod", "PresencePublishFailures"), ("chat/prod", "PresenceCountFailures")]
        + [("chat/prod", "ShardFailures")]
        + [("chat/prod", "OversizedReplies"), ("chat/prod", "RateLimitErrors")]
    )
    functions = {
        function_by_handler(template, handler)[0]
        for handler in (
            *HANDLERS.values(),
            AUTHORIZER_HANDLER,
            "multiregion_chat.runtime.handlers.attachment_replication.handler",
        )
    }
    alarmed_functions = set()
    websocket_id, _ = api(template, "WEBSOCKET")
    http_id, _ = api(template, "HTTP")
    for alarm in alarms.values():
        props = alarm["Properties"]
        if props["Namespace"] == "chat/prod":
            assert props["Dimensions"] == [{"Name": "service", "Value": "chat"}]
        elif props["Namespace"] == "AWS/Lambda":
            (dimension,) = props["Dimensions"]
            alarmed_functions.add(dimension["Value"]["Ref"])
        elif props["MetricName"] == "5xx":
            assert props["Dimensions"] == [
                {"Name": "ApiId", "Value": {"Ref": http_id}},
                {"Name": "Stage", "Value": "$default"},
            ]
            assert props["Threshold"] == 1
        elif props["Namespace"] == "AWS/ApiGateway":
            assert props["Dimensions"] == [
                {"Name": "ApiId", "Value": {"Ref": websocket_id}},
                {"Name": "Stage", "Value": "prod"},
            ]
    assert alarmed_functions == functions


def test_alarmed_runtime_metrics_are_emitted_and_documented(repo_root: Path) -> None:
    """An alarm on a metric no handler emits never fires; an undocumented one surprises
    whoever is paged (docs/contracts.md, "Metrics": one row per alarmed metric)."""
    source = "\n".join(
        path.read_text() for path in (repo_root / "multiregion_chat" / "runtime").rglob("*.py")
    )
    emitted = set(re.findall(r'count\(\s*"([A-Za-z]+)"', source))
    emitted |= set(re.findall(r'FAILURE_METRIC = "([A-Za-z]+)"', source))
    assert set(ALARMED_CUSTOM_METRICS) - emitted == set()
    contracts = (repo_root / "docs" / "contracts.md").read_text()
    rows = {
        found.group(1): found.group(2)
        for found in re.finditer(r"^\| `([A-Za-z]+)` \|.*\| ([^|]+) \|$", contracts, re.MULTILINE)
    }
    for name in ALARMED_CUSTOM_METRICS:
        assert name in rows, f"{name}: no row in docs/contracts.md, Metrics"
        assert rows[name].strip() == "Sum > 0 over 5 min", name


def test_outputs(app3: SynthResult, region: str) -> None:
    template = app3.template(region)
    for name in (
        "WebSocketUrl",
        "HttpUrl",
        "CallbackUrl",
        "BusName",
        "ConnectionsTableName",
        "MessagesTableName",
        "AlarmTopicArn",
    ):
        template.has_output(name, {})
    template.has_output("SigningSecretName", {"Value": SECRET_NAME})


def test_http_url_output(template: JsonDict, region: str) -> None:
    api_id, _ = api(template, "HTTP")
    url = resolve(template["Outputs"]["HttpUrl"]["Value"], region=region, refs={api_id: "h1"})
    # The $default stage: no stage segment, clients append rooms/<room>/messages.
    assert url == f"https://h1.execute-api.{region}.amazonaws.com/"


# ---- token auth ----------------------------------------------------------------
def connect_authorizer(template: JsonDict) -> tuple[str, JsonDict]:
    websocket_id, _ = api(template, "WEBSOCKET")
    (found,) = of_api(template, "AWS::ApiGatewayV2::Authorizer", websocket_id).items()
    return found


def http_authorizer(template: JsonDict) -> tuple[str, JsonDict]:
    http_id, _ = api(template, "HTTP")
    (found,) = of_api(template, "AWS::ApiGatewayV2::Authorizer", http_id).items()
    return found


def _authorizer_uri_function(authorizer: JsonDict) -> str:
    return getatt_id(authorizer["Properties"]["AuthorizerUri"]["Fn::Join"][1][1])


def test_authorizers(template: JsonDict) -> None:
    function_id, _ = function_by_handler(template, AUTHORIZER_HANDLER)
    _, websocket = connect_authorizer(template)
    assert websocket["Properties"]["AuthorizerType"] == "REQUEST"
    assert websocket["Properties"]["IdentitySource"] == [WEBSOCKET_IDENTITY_SOURCE]
    assert WEBSOCKET_IDENTITY_SOURCE == "route.request.querystring.token"
    assert "AuthorizerResultTtlInSeconds" not in websocket["Properties"]  # none for WebSocket
    assert _authorizer_uri_function(websocket) == function_id
    _, http = http_authorizer(template)
    assert http["Properties"]["AuthorizerType"] == "REQUEST"
    assert http["Properties"]["IdentitySource"] == [HTTP_IDENTITY_SOURCE]
    assert HTTP_IDENTITY_SOURCE == "$request.header.Authorization"
    assert http["Properties"]["EnableSimpleResponses"] is True
    assert http["Properties"]["AuthorizerPayloadFormatVersion"] == "2.0"
    assert http["Properties"]["AuthorizerResultTtlInSeconds"] == 60
    assert _authorizer_uri_function(http) == function_id
    # API Gateway may invoke the authorizer, from exactly these two authorizers.
    sources = []
    for permission in resources(template, "AWS::Lambda::Permission").values():
        props = permission["Properties"]
        if props["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}:
            assert props["Principal"] == "apigateway.amazonaws.com"
            sources.append(json.dumps(props["SourceArn"]))
    assert len(sources) == 2
    assert all("/authorizers/" in source for source in sources)


def test_authorizer_function(app3: SynthResult, template: JsonDict) -> None:
    _, function = function_by_handler(template, AUTHORIZER_HANDLER)
    props = function["Properties"]
    assert props["Runtime"] == "python3.14"
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Environment"]["Variables"] == {
        "SIGNING_SECRET_NAME": SECRET_NAME,
        "MAX_TOKEN_LIFETIME_SECONDS": "86400",
        "POWERTOOLS_SERVICE_NAME": "chat",
        "POWERTOOLS_METRICS_NAMESPACE": "chat/prod",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
    _check_dependencies_layer(template, props)
    log_group = template["Resources"][props["LoggingConfig"]["LogGroup"]["Ref"]]
    assert log_group["Properties"]["RetentionInDays"] == app3.config.log_retention_days


def test_authorizer_role_exact_permissions(template: JsonDict, region: str) -> None:
    _, function = function_by_handler(template, AUTHORIZER_HANDLER)
    role_id = getatt_id(function["Properties"]["Role"])
    assert "ManagedPolicyArns" not in template["Resources"][role_id]["Properties"]
    own_log_group = f"GetAtt:{function['Properties']['LoggingConfig']['LogGroup']['Ref']}"
    statements = role_statements(template, role_id)
    secret_statements = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert len(secret_statements) == 1
    resource = secret_statements[0]["Resource"]
    if region == "us-east-1":
        secret_id, _ = only(template, "AWS::SecretsManager::Secret")
        assert resource == {"Ref": secret_id}  # the exact ARN of the secret created here
    else:
        assert resolve(resource, region=region) == (
            f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{SECRET_NAME}-??????"
        )
    assert _normalized(statements) == sorted(
        [
            (("logs:CreateLogStream", "logs:PutLogEvents"), own_log_group),
            (tuple(XRAY_ACTIONS), "*"),
            (("secretsmanager:GetSecretValue",), _resource_key(resource)),
        ]
    )


def test_signing_secret_created_once_with_replicas(app3: SynthResult) -> None:
    first = app3.template_json("us-east-1")
    _, secret = only(first, "AWS::SecretsManager::Secret")
    props = secret["Properties"]
    assert props["Name"] == SECRET_NAME
    assert props["ReplicaRegions"] == [{"Region": "eu-west-1"}, {"Region": "ap-northeast-1"}]
    assert props["GenerateSecretString"] == {"ExcludePunctuation": True, "PasswordLength": 64}
    assert "SecretString" not in props
    assert secret["DeletionPolicy"] == "Retain"  # prod
    for region in ("eu-west-1", "ap-northeast-1"):
        assert resources(app3.template_json(region), "AWS::SecretsManager::Secret") == {}


def test_other_regions_deploy_after_the_first(app3: SynthResult) -> None:
    manifest = json.loads((app3.outdir / "manifest.json").read_text())
    artifacts = manifest["artifacts"]
    first_deps = artifacts["chat-prod-us-east-1"].get("dependencies", [])
    assert [dep for dep in first_deps if not dep.endswith(".assets")] == []
    for region in ("eu-west-1", "ap-northeast-1"):
        assert "chat-prod-us-east-1" in artifacts[f"chat-prod-{region}"]["dependencies"]
