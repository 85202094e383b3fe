"""The server API in the templates: IAM-only routes, its function, the chat.disconnect rule."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Template

from multiregion_chat.infra.deployment import ChatDeployment
from multiregion_chat.infra.server_api import DISCONNECT_DETAIL_TYPE, DISCONNECT_PATH, PUBLISH_PATH

from .helpers import (
    ACCOUNT,
    JsonDict,
    SynthResult,
    api,
    function_by_handler,
    getatt_id,
    make_app,
    of_api,
    resolve,
    resources,
)

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")


@pytest.fixture(scope="module", params=REGIONS)
def region(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(scope="module")
def template(app3: SynthResult, region: str) -> JsonDict:
    return app3.template_json(region)


def test_routes_are_iam_only_and_reach_server_api(template: JsonDict) -> None:
    api_id, _ = api(template, "HTTP")
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]
        for route in of_api(template, "AWS::ApiGatewayV2::Route", api_id).values()
    }
    function_id, _ = function_by_handler(
        template, "multiregion_chat.runtime.handlers.server_api_handler.handler"
    )
    integrations = of_api(template, "AWS::ApiGatewayV2::Integration", api_id)
    for key in (f"POST {PUBLISH_PATH}", f"POST {DISCONNECT_PATH}"):
        route = routes[key]
        assert route["AuthorizationType"] == "AWS_IAM"
        assert "AuthorizerId" not in route
        integration = integrations[route["Target"]["Fn::Join"][1][1]["Ref"]]["Properties"]
        assert integration["PayloadFormatVersion"] == "2.0"
        assert getatt_id(integration["IntegrationUri"]) == function_id


def test_the_runtime_publishes_the_detail_type_the_rule_matches() -> None:
    from multiregion_chat.runtime.platform.bus import DISCONNECT_DETAIL_TYPE as RUNTIME_DETAIL_TYPE

    assert RUNTIME_DETAIL_TYPE == DISCONNECT_DETAIL_TYPE


def test_client_routes_are_the_runtimes_actions() -> None:
    from multiregion_chat.infra.websocket_api import CLIENT_ROUTE_KEYS
    from multiregion_chat.runtime.protocol.actions import BUILTIN_ACTIONS

    assert ("$default", *BUILTIN_ACTIONS) == CLIENT_ROUTE_KEYS


def test_disconnect_events_reach_server_api_with_retries(template: JsonDict) -> None:
    function_id, _ = function_by_handler(
        template, "multiregion_chat.runtime.handlers.server_api_handler.handler"
    )
    (rule,) = [
        rule["Properties"]
        for rule in resources(template, "AWS::Events::Rule").values()
        if rule["Properties"]["EventPattern"].get("detail-type") == [DISCONNECT_DETAIL_TYPE]
    ]
    assert rule["EventPattern"] == {"source": ["chat.chat"], "detail-type": ["chat.disconnect"]}
    (target,) = rule["Targets"]
    assert getatt_id(target["Arn"]) == function_id
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_connections_by_user_index(template: JsonDict) -> None:
    (connections,) = [
        table["Properties"]
        for table in resources(template, "AWS::DynamoDB::Table").values()
        if table["Properties"]["KeySchema"][0]["AttributeName"] == "pk"
    ]
    assert connections["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "ConnectionsByUser",
            "KeySchema": [{"AttributeName": "connectedUserId", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ]
    assert {"AttributeName": "connectedUserId", "AttributeType": "S"} in connections[
        "AttributeDefinitions"
    ]


def test_grants_are_policies_on_the_role_in_each_region() -> None:
    app = make_app({"regions": "us-east-1,eu-west-1"})
    from multiregion_chat.infra.config import ChatConfig

    chat = ChatDeployment(app, config=ChatConfig.from_context(app.node), nag=False)
    role_arn = f"arn:aws:iam::{ACCOUNT}:role/backend"
    chat.grant_publish(role_arn)
    chat.grant_disconnect(role_arn, regions=["eu-west-1"])
    for region, stack in chat.stacks.items():
        template = Template.from_stack(stack).to_json()
        api_id, _ = api(template, "HTTP")
        granted = sorted(
            resolve(statement["Resource"], region=region, refs={api_id: "http1"})
            for policy in resources(template, "AWS::IAM::Policy").values()
            if policy["Properties"]["Roles"] == ["backend"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
            if statement["Action"] == "execute-api:Invoke"
        )
        # CDK's grant_invoke cuts the path at its first parameter: publishing
        # and disconnecting stay apart (/server/rooms/* vs /server/users/*).
        arn = f"arn:aws:execute-api:{region}:{ACCOUNT}:http1/*/POST/server"
        expected = [f"{arn}/rooms/*"]
        if region == "eu-west-1":
            expected.append(f"{arn}/users/*")
        assert granted == sorted(expected)


@pytest.mark.parametrize("grant", ["grant_publish", "grant_disconnect"])
def test_a_role_of_another_account_is_refused(grant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stacks are environment-agnostic: the CLI's account is the deploying one.
    monkeypatch.setenv("CDK_DEFAULT_ACCOUNT", ACCOUNT)
    app = make_app({"regions": "us-east-1"})
    from multiregion_chat.infra.config import ChatConfig

    chat = ChatDeployment(app, config=ChatConfig.from_context(app.node), nag=False)
    other = "arn:aws:iam::210987654321:role/backend"
    with pytest.raises(ValueError, match=r"role .* is in account 210987654321.* 123456789012"):
        getattr(chat, grant)(other)
    getattr(chat, grant)(f"arn:aws:iam::{ACCOUNT}:role/backend")  # its own account is fine


def test_the_server_source_is_the_runtime_s() -> None:
    """The rules and the IAM condition name the source ServerApi puts its messages under."""
    from multiregion_chat.infra.config import SERVER_SOURCE_SUFFIX, ChatConfig
    from multiregion_chat.runtime.platform.runtime_settings import (
        SERVER_SOURCE_SUFFIX as RUNTIME_SUFFIX,
    )
    from multiregion_chat.runtime.platform.runtime_settings import Settings

    assert RUNTIME_SUFFIX == SERVER_SOURCE_SUFFIX
    config = ChatConfig.from_context(make_app({}).node)
    runtime = Settings.from_env()._replace(event_source=config.event_source)
    assert runtime.server_source == config.server_event_source == "chat.chat.server"
