"""The region's API Gateway WebSocket API: routes, stage, throttling, access logs."""

from __future__ import annotations

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from multiregion_chat.infra.access_logs import json_access_logs
from multiregion_chat.runtime.protocol.actions import BUILTIN_ACTIONS

__all__ = ["CLIENT_ROUTE_KEYS", "CONNECTION_ROUTE_KEYS", "ChatWebSocketApi"]

CONNECTION_ROUTE_KEYS: tuple[str, ...] = ("$connect", "$disconnect")


# Every client action of docs/protocol.md (one list with the runtime's frame validation:
# runtime.protocol is standard library only), plus $default for frames whose
# `action` is missing or unknown (the handler answers `unknown_action`).
CLIENT_ROUTE_KEYS: tuple[str, ...] = ("$default", *BUILTIN_ACTIONS)

# One JSON object per line. Ids, route, status and error fields only: never a
# message body, a query string (the connect URL may carry a token) or a header.
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "connectionId": "$context.connectionId",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "errorMessage": "$context.error.message",
    "errorType": "$context.error.responseType",
}


class ChatWebSocketApi(Construct):
    """WebSocket API with the chat routes and one auto-deployed, throttled, logged stage.

    ``$connect`` runs ``connect_authorizer`` (the token authorizer) first;
    WebSocket APIs authorize only ``$connect``, every later frame travels on
    the connection it accepted. The client routes have route responses (``return_response=True``): a
    handler's return value is the direct reply, so replies cost no
    ``@connections`` call and cannot overtake the request.

    Access logging needs the account-level API Gateway CloudWatch Logs role
    (``AWS::ApiGateway::Account``). That setting is a singleton per account
    *and* region: exactly one stack may own it (``manage_account_role``; the
    config's ``apiGatewayAccountRole``, on for the ``prod`` stage only by
    default). Two owners overwrite each other's setting on every deploy.
    Both the setting and its role are retained when the owning stack is
    deleted: every API Gateway API in the account and region (not only ours)
    logs through that role, and a stage with logging enabled fails to deploy
    while the account has no role, so deleting either would break logging
    and deploys of unrelated APIs. Remove them by hand once nothing logs.

    Attributes:
        api: the ``WebSocketApi``.
        stage: the ``WebSocketStage`` (named after the deployment stage).
        access_log_group: the stage's access log group.
        url: ``wss://`` URL clients connect to.
        callback_url: ``https://`` base URL of the ``@connections`` management API.
        manage_connections_arn: ``execute-api`` ARN allowing POST to
            ``@connections/*`` on this API and stage only.
        close_connections_arn: the same for DELETE (closing a connection).
        account_role: the API Gateway CloudWatch role, when managed here.
        account: the ``AWS::ApiGateway::Account`` setting, when managed here.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        connection_handler: lambda_.IFunction,
        client_message_handler: lambda_.IFunction,
        connect_authorizer: apigwv2.IWebSocketRouteAuthorizer,
        stage_name: str,
        throttle_rate_limit: int,
        throttle_burst_limit: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        manage_account_role: bool,
    ) -> None:
        super().__init__(scope, construct_id)

        connection_integration = integrations.WebSocketLambdaIntegration(
            "ConnectionIntegration", connection_handler
        )
        client_integration = integrations.WebSocketLambdaIntegration(
            "ClientIntegration", client_message_handler
        )
        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            api_name=api_name,
            description="Chat WebSocket API (docs/protocol.md)",
            route_selection_expression="$request.body.action",
            # The token is checked before $connect: a refused handshake never
            # reaches ConnectionHandler (docs/protocol.md, "Connecting").
            connect_route_options=apigwv2.WebSocketRouteOptions(
                integration=connection_integration, authorizer=connect_authorizer
            ),
            disconnect_route_options=apigwv2.WebSocketRouteOptions(
                integration=connection_integration
            ),
            default_route_options=apigwv2.WebSocketRouteOptions(
                integration=client_integration, return_response=True
            ),
        )
        for route_key in CLIENT_ROUTE_KEYS:
            if route_key != "$default":
                self.api.add_route(route_key, integration=client_integration, return_response=True)

        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=stage_name,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit
            ),
            access_log_settings=json_access_logs(self.access_log_group, _ACCESS_LOG_FIELDS),
        )
        # Execution logs for errors only (integration failures, throttling):
        # the L2 stage has no prop for the logging level.
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigwv2.CfnStage)
        cfn_stage.add_property_override("DefaultRouteSettings.LoggingLevel", "ERROR")
        cfn_stage.add_property_override("DefaultRouteSettings.DataTraceEnabled", False)

        self.account_role: iam.Role | None = None
        self.account: apigateway.CfnAccount | None = None
        if manage_account_role:
            self.account_role = iam.Role(
                self,
                "CloudWatchRole",
                assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
                description="API Gateway account setting: push access/execution logs",
                managed_policies=[
                    iam.ManagedPolicy.from_aws_managed_policy_name(
                        "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
                    )
                ],
            )
            # Every API in the account-region logs through this role, not just
            # ours: like CDK's RestApi cloudWatchRole, it outlives the stack.
            self.account_role.apply_removal_policy(RemovalPolicy.RETAIN)
            self.account = apigateway.CfnAccount(
                self, "Account", cloud_watch_role_arn=self.account_role.role_arn
            )
            # The setting too: deleting this stack must not leave the account
            # without a role (or pointing at a deleted one).
            self.account.apply_removal_policy(RemovalPolicy.RETAIN)
            # The stage's log settings are rejected until the account has a role.
            self.stage.node.add_dependency(self.account)

        stack = Stack.of(self)
        self.url: str = self.stage.url
        self.callback_url: str = (
            f"https://{self.api.api_id}.execute-api.{stack.region}.{stack.url_suffix}/{stage_name}"
        )
        self.manage_connections_arn: str = stack.format_arn(
            service="execute-api",
            resource=self.api.api_id,
            resource_name=f"{stage_name}/POST/@connections/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        self.close_connections_arn: str = stack.format_arn(
            service="execute-api",
            resource=self.api.api_id,
            resource_name=f"{stage_name}/DELETE/@connections/*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
