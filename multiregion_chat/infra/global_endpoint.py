"""The optional global endpoint: ``wss://chat.<domain>`` and ``https://api.<domain>``.

With ``domainName`` and ``hostedZoneId`` configured, every region gets:

* an ACM certificate for ``chat.<domain>`` and ``api.<domain>``, validated
  through DNS in the hosted zone (CloudFormation writes the validation
  record; ACM asks for the same record in every region);
* API Gateway custom domains (regional endpoints, TLS 1.2) for both names,
  mapped to the WebSocket API's stage and the HTTP API's ``$default`` stage;
* a Route 53 health check of the region: HTTPS ``GET /health/<key>`` on the
  HTTP API's own regional endpoint (a route without the authorizer, served by
  HealthHandler without touching a table, so it says "API Gateway and Lambda
  answer in this region"). HealthHandler has executions of its own: not
  HttpHandler, whose capped executions long polls can fill;
* latency-based alias records for both names, with that health check, so
  resolvers get the nearest region whose health check passes.

Each regional stack owns its own records (``SetIdentifier`` = region), so
adding or removing a region adds or removes only its records.

Why the path carries a key (``health_path``): the route is unauthenticated
and Route 53's checkers cannot send a header, so a guessable ``/health`` let
anyone flood it into the stage's route throttle; three 429s in a row and
Route 53 takes a working region out of DNS (about 90 s). The key is the
UUID of the region's CloudFormation stack id: made by CloudFormation when the
stack is created, stable across updates, different per region and stage,
and never in an output; only the account sees it (the stack id, the health
check's configuration, the access logs). A request for any other path finds
no route: API Gateway answers 404 without touching the health route's
throttle or HealthHandler. (A throttle of its own for the route cannot be
set: a stage's RouteSettings are keyed by route key, and this route key is
only known at deploy time.)

Why an endpoint health check on a route of our own: Route 53 counts only
2xx/3xx as healthy, the message routes answer 401 without a token, and HTTP
APIs have no mock integrations; a CloudWatch-alarm health check would say
"healthy" for a region that is down but has no traffic (no data).
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct

__all__ = [
    "HEALTH_CHECK_FAILURE_THRESHOLD",
    "HEALTH_PATH_PREFIX",
    "ChatGlobalEndpoint",
    "health_path",
]

HEALTH_PATH_PREFIX = "/health/"
# Three failed checks 30 s apart (Route 53's standard interval): a region
# leaves the answers after about 90 s, clients follow as cached answers expire.
HEALTH_CHECK_FAILURE_THRESHOLD = 3


def health_path(scope: Construct) -> str:
    """``/health/<key>``: the key is the UUID at the end of the stack's id
    (``arn:...:stack/<name>/<uuid>``), unguessable from outside the account."""
    return HEALTH_PATH_PREFIX + Fn.select(2, Fn.split("/", Stack.of(scope).stack_id))


class ChatGlobalEndpoint(Construct):
    """Certificate, custom domains, health check and latency records of one region.

    Attributes:
        certificate: the region's ACM certificate (both names).
        websocket_domain, http_domain: the API Gateway custom domains.
        health_check: the region's Route 53 health check.
        websocket_record, http_record: the latency alias records.
        health_path: ``/health/<key>`` (a token: the key is known at deploy time).
        health_route: the unauthenticated ``GET <health_path>`` route of the HTTP API.
        health_integration: its Lambda proxy integration (``health_handler``).
        websocket_url, http_url: ``wss://chat.<domain>``, ``https://api.<domain>/``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_name: str,
        hosted_zone_id: str,
        websocket_domain_name: str,
        http_domain_name: str,
        websocket_api: apigwv2.IWebSocketApi,
        websocket_stage: apigwv2.IWebSocketStage,
        http_api: apigwv2.HttpApi,
        http_stage: apigwv2.IHttpStage,
        health_handler: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        region = stack.region
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=hosted_zone_id, zone_name=domain_name
        )
        self.certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=websocket_domain_name,
            subject_alternative_names=[http_domain_name],
            validation=acm.CertificateValidation.from_dns(zone),
        )

        self.health_integration = integrations.HttpLambdaIntegration(
            "HealthIntegration",
            health_handler,
            payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
        )
        self.health_path = health_path(self)
        # A route of its own id: add_routes derives construct ids from the path, a token here.
        self.health_route = apigwv2.HttpRoute(
            self,
            "HealthRoute",
            http_api=http_api,
            route_key=apigwv2.HttpRouteKey.with_(self.health_path, apigwv2.HttpMethod.GET),
            integration=self.health_integration,
            authorizer=apigwv2.HttpNoneAuthorizer(),
        )
        self.health_check = route53.HealthCheck(
            self,
            "HealthCheck",
            type=route53.HealthCheckType.HTTPS,
            fqdn=f"{http_api.api_id}.execute-api.{region}.{stack.url_suffix}",
            port=443,
            resource_path=self.health_path,
            request_interval=Duration.seconds(30),
            failure_threshold=HEALTH_CHECK_FAILURE_THRESHOLD,
        )

        self.websocket_domain = self._domain("WebSocketDomain", websocket_domain_name)
        apigwv2.ApiMapping(
            self,
            "WebSocketMapping",
            api=websocket_api,
            domain_name=self.websocket_domain,
            stage=websocket_stage,
        )
        self.http_domain = self._domain("HttpDomain", http_domain_name)
        apigwv2.ApiMapping(
            self, "HttpMapping", api=http_api, domain_name=self.http_domain, stage=http_stage
        )

        self.websocket_record = self._latency_record(
            "WebSocketRecord", zone, websocket_domain_name, self.websocket_domain, region
        )
        self.http_record = self._latency_record(
            "HttpRecord", zone, http_domain_name, self.http_domain, region
        )
        self.websocket_url = f"wss://{websocket_domain_name}"
        self.http_url = f"https://{http_domain_name}/"

    def _domain(self, construct_id: str, name: str) -> apigwv2.DomainName:
        return apigwv2.DomainName(
            self,
            construct_id,
            domain_name=name,
            certificate=self.certificate,
            endpoint_type=apigwv2.EndpointType.REGIONAL,
            security_policy=apigwv2.SecurityPolicy.TLS_1_2,
        )

    def _latency_record(
        self,
        construct_id: str,
        zone: route53.IHostedZone,
        name: str,
        domain: apigwv2.DomainName,
        region: str,
    ) -> route53.ARecord:
        return route53.ARecord(
            self,
            construct_id,
            zone=zone,
            record_name=name,
            target=route53.RecordTarget.from_alias(
                route53_targets.ApiGatewayv2DomainProperties(
                    domain.regional_domain_name, domain.regional_hosted_zone_id
                )
            ),
            region=region,
            set_identifier=region,
            health_check=self.health_check,
            comment=f"{name} -> {region} (latency routing, health checked)",
        )
