"""The region's HTTP fallback API (docs/protocol.md, "HTTP fallback").

For networks that block WebSockets: ``POST /rooms/{room}/messages`` sends a
message, ``GET /rooms/{room}/messages`` reads (and long-polls) history. Both
routes invoke HttpHandler through a Lambda proxy integration with payload
format 2.0, behind the token authorizer (``Authorization: Bearer <jwt>``;
CORS preflights are answered by API Gateway without it).

The API has exactly one stage, ``$default``, auto-deployed: its URL is the
bare ``https://<apiId>.execute-api.<region>.<urlSuffix>/`` with no stage
segment, so a client appends ``rooms/<room>/messages`` to it. (The HttpApi
construct's own default stage is turned off because it takes no throttling
or access-log settings; this construct creates the ``$default`` stage itself.)
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from multiregion_chat.infra.access_logs import json_access_logs

__all__ = [
    "CORS_ALLOW_HEADERS",
    "HTTP_ROUTE_KEYS",
    "HTTP_STAGE_NAME",
    "MESSAGES_PATH",
    "ChatHttpApi",
]

MESSAGES_PATH = "/rooms/{room}/messages"
HTTP_ROUTE_KEYS: tuple[str, ...] = (f"GET {MESSAGES_PATH}", f"POST {MESSAGES_PATH}")
HTTP_STAGE_NAME = "$default"
CORS_ALLOW_HEADERS: tuple[str, ...] = ("Authorization", "Content-Type")
# Browsers send a preflight before every GET/POST that carries Authorization:
# caching it keeps a long-polling page at one request per poll.
CORS_MAX_AGE = Duration.hours(1)

# One JSON object per line. Ids, route, status and error fields only: never a
# body, a query string (it may carry the user's identity) or a header (the
# Authorization header carries the token).
_ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "httpMethod": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integration.error",
    "errorMessage": "$context.error.message",
    "errorType": "$context.error.responseType",
}


class ChatHttpApi(Construct):
    """HTTP API with the two message routes, CORS and one throttled, logged stage.

    Unlike the WebSocket API, HTTP API access logs need no account-level
    API Gateway CloudWatch role (API Gateway writes them through its
    service-linked role).

    Attributes:
        api: the ``HttpApi``.
        stage: the ``HttpStage`` (``$default``, auto-deployed).
        routes: the ``HttpRoute`` objects, by route key (``"GET /rooms/{room}/messages"``).
        integration: the Lambda proxy integration (payload format 2.0) both routes share.
        access_log_group: the stage's access log group.
        url: the stage's ``https://`` URL (ends with ``/``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api_name: str,
        http_handler: lambda_.IFunction,
        authorizer: apigwv2.IHttpRouteAuthorizer,
        cors_origins: Sequence[str],
        throttle_rate_limit: int,
        throttle_burst_limit: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)

        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=api_name,
            description="Chat HTTP fallback API (docs/protocol.md, HTTP fallback)",
            create_default_stage=False,
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(cors_origins),
                allow_methods=[
                    apigwv2.CorsHttpMethod.GET,
                    apigwv2.CorsHttpMethod.POST,
                    apigwv2.CorsHttpMethod.OPTIONS,
                ],
                allow_headers=list(CORS_ALLOW_HEADERS),
                max_age=CORS_MAX_AGE,
            ),
        )
        self.integration = integrations.HttpLambdaIntegration(
            "HttpHandlerIntegration",
            http_handler,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        self.routes: dict[str, apigwv2.HttpRoute] = {}
        for method in (apigwv2.HttpMethod.GET, apigwv2.HttpMethod.POST):
            (route,) = self.api.add_routes(
                path=MESSAGES_PATH,
                methods=[method],
                integration=self.integration,
                authorizer=authorizer,
            )
            self.routes[f"{method.value} {MESSAGES_PATH}"] = route

        self.access_log_group = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.api,
            stage_name=HTTP_STAGE_NAME,
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit
            ),
            access_log_settings=json_access_logs(self.access_log_group, _ACCESS_LOG_FIELDS),
        )
        self.url: str = self.stage.url
