"""cdk-nag v3 wiring and every acknowledged finding, each with its reason.

cdk-nag 3 is a CDK policy-validation plugin: ``Validations.of(app).add_plugins``
runs the AWS Solutions pack after synthesis, and any finding not acknowledged
with ``Validations.of(construct).acknowledge(Acknowledgment(...))`` makes
``app.synth()`` (and so ``cdk synth``) fail with a validation report.

Acknowledgments are made on the narrowest construct that carries the finding
(a route, a role's policy, a queue) and name the exact finding id, including
the ``[Resource::...]`` part for IAM5, so a new wildcard elsewhere still fails.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Token, Validations
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from multiregion_chat.infra.attachments import ATTACHMENT_PREFIX
from multiregion_chat.infra.region_stack import ChatRegionStack
from multiregion_chat.infra.websocket_api import CLIENT_ROUTE_KEYS

__all__ = [
    "acknowledge_client_route",
    "acknowledge_dead_letter_queue",
    "acknowledge_findings",
    "acknowledge_function",
    "acknowledge_server_api_grant",
    "enable_nag",
]

_XRAY = (
    "X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions, "
    "so AWS requires Resource '*'; added by tracing=ACTIVE and the role's only wildcard"
)
_ROUTE_AFTER_CONNECT = (
    "API Gateway WebSocket APIs authorize only $connect (where the token authorizer runs): "
    "this route runs on an already accepted connection with the identity the authorizer "
    "recorded at $connect"
)
_SECRET_ROTATION = (
    "The secret holds the HS256 keys of every live token in every region: a rotation is three "
    "steps with waits between them (stage a next key, promote it after the authorizers' 5-minute "
    "cache, retire the old one after the longest token lifetime) so that no valid token fails; "
    "Secrets Manager's single-step rotation would fail tokens. Rotated by hand with "
    "python -m multiregion_chat.clients.rotation, as docs/operations.md describes"
)


def enable_nag(scope: IConstruct) -> None:
    """Run the AWS Solutions pack on every stack of ``scope`` (an App or a Stage).

    An unacknowledged finding fails synth.
    """
    Validations.of(scope).add_plugins(AwsSolutionsChecks(scope))


def _ack(scope: IConstruct, finding: str, reason: str) -> None:
    Validations.of(scope).acknowledge(Acknowledgment(id=f"AwsSolutions-{finding}", reason=reason))


def _default_policy(role: iam.IRole | None) -> IConstruct:
    if role is None:
        raise ValueError("function without a role")
    policy = role.node.try_find_child("DefaultPolicy")
    if policy is None:
        raise ValueError(f"{role.node.path} has no DefaultPolicy")
    return policy


def _manage_connections_finding(stack: ChatRegionStack, method: str = "POST") -> str:
    """IAM5's finding id for the ``@connections`` ARN, as cdk-nag renders it."""
    partition = stack.resolve(stack.partition)
    partition_text = partition if isinstance(partition, str) else "<AWS::Partition>"
    cfn_api = stack.api.api.node.default_child
    assert isinstance(cfn_api, apigwv2.CfnApi)
    api_logical_id = stack.resolve(stack.get_logical_id(cfn_api))
    region = stack.region if not Token.is_unresolved(stack.region) else "<AWS::Region>"
    return (
        f"IAM5[Resource::arn:{partition_text}:execute-api:{region}:<AWS::AccountId>:"
        f"<{api_logical_id}>/{stack.config.stage}/{method}/@connections/*]"
    )


def acknowledge_findings(stack: ChatRegionStack) -> None:
    """Acknowledge the findings the design accepts in ``stack``, each on its construct."""
    # IAM5 [Resource::*]: the X-Ray statement of each function role. cdk-nag 3
    # acknowledges a finding id per construct, so this would also cover a second
    # "*" statement in the same policy: tests/infra (test_no_wildcards_except_xray)
    # asserts that X-Ray is the only one.
    for function in stack.builtin_functions.values():
        acknowledge_function(function)

    # IAM5 on the @connections ARN: the trailing * is the connection id.
    for poster in (stack.functions.event_bus_message_handler, stack.fanout.worker):
        _ack(
            _default_policy(poster.role),
            _manage_connections_finding(stack),
            "Connection ids are assigned by API Gateway at runtime; the ARN is already limited "
            "to this API, this stage and POST, the trailing * is the connection id",
        )
    _ack(
        _default_policy(stack.functions.event_bus_message_handler.role),
        _manage_connections_finding(stack, "DELETE"),
        "EventBusMessageHandler closes room members whose token expired (the token_expired "
        "frame, then DeleteConnection); connection ids are assigned at runtime, the ARN is "
        "limited to this API, this stage and DELETE, the trailing * is the connection id",
    )

    acknowledge_connection_closer(stack, stack.functions.client_message_handler)
    _ack(
        _default_policy(stack.server_api.function.role),
        _manage_connections_finding(stack, "DELETE"),
        "The server API closes a user's connections, whose ids API Gateway assigns at "
        "runtime; the ARN is already limited to this API, this stage and DELETE",
    )

    # APIG4: $connect and the HTTP routes have the token authorizer; the
    # WebSocket routes after $connect cannot have one.
    api = stack.api.api
    for route_key in ("$disconnect", *CLIENT_ROUTE_KEYS):
        acknowledge_client_route(api.node.find_child(f"{route_key}-Route"))

    # APIG4: Route 53's health checkers cannot send a token (global endpoint only).
    if stack.global_endpoint is not None:
        _ack(
            stack.global_endpoint.health_route,
            "APIG4",
            "GET /health/<key> is called by Route 53 health checkers, which cannot send a "
            "header; its path carries an unguessable key (the stack id's UUID), it answers a "
            "constant 200 and reads no data (HealthHandler, "
            "multiregion_chat/runtime/handlers/health_handler.py)",
        )

    # SMG4: the signing secret is rotated by hand (where it is created).
    if stack.auth.created and stack.auth.secret is not None:
        _ack(stack.auth.secret, "SMG4", _SECRET_ROTATION)

    # SQS3: these queues *are* dead-letter queues, just not SQS redrive targets.
    acknowledge_dead_letter_queue(
        stack.replication.dead_letter_queue,
        "the DeadLetterConfig of every EventBridge target in the region (delivery and forwarding)",
    )
    acknowledge_dead_letter_queue(
        stack.server_api.disconnect_consumer.dead_letter_queue,
        "the DeadLetterConfig of the server API's chat.disconnect rule",
    )
    acknowledge_dead_letter_queue(
        stack.functions.async_failure_queue,
        "EventBusMessageHandler's Lambda on-failure destination",
    )

    acknowledge_attachment_prefixes(stack)

    # IAM4: the account-level API Gateway CloudWatch role (only when managed here).
    if stack.api.account_role is not None:
        _ack(
            stack.api.account_role,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "AmazonAPIGatewayPushToCloudWatchLogs is AWS's documented policy for the "
            "account-level API Gateway logging role, which serves every API in the "
            "account and region (log groups API Gateway creates itself), so it cannot be "
            "scoped to this stack",
        )


def acknowledge_attachment_prefixes(stack: ChatRegionStack) -> None:
    """IAM5 on ``<bucket>/rooms/*`` of every region's attachment bucket: the object keys are
    chosen per upload (room, region, uploader, new id); the ARN is one bucket and one prefix."""
    attachments = stack.attachments
    cfn_bucket = attachments.bucket.node.default_child
    assert isinstance(cfn_bucket, s3.CfnBucket)
    own = f"<{stack.resolve(stack.get_logical_id(cfn_bucket))}.Arn>/{ATTACHMENT_PREFIX}*"
    others = [
        f"arn:<AWS::Partition>:s3:::"
        f"{stack.config.attachment_bucket_name(region, '<AWS::AccountId>')}/{ATTACHMENT_PREFIX}*"
        for region in stack.config.other_regions(stack.region_name)
    ]
    reasons = {
        stack.functions.client_message_handler.role: (
            "upload slots (presigned POST: s3:PutObject), the send check and downloads "
            "(s3:GetObject) of attachment objects, whose keys are made per upload"
        ),
        attachments.replication_role: (
            "S3 replication reads this bucket's object versions and writes replicas into the "
            "other regions' buckets, key by key"
        ),
    }
    for role, reason in reasons.items():
        for resource in (own, *others):
            _ack(
                _default_policy(role),
                f"IAM5[Resource::{resource}]",
                f"Object ARNs under one bucket's rooms/ prefix: {reason}",
            )


# ---- what every added function, route and dead-letter queue needs -----------
def acknowledge_connection_closer(stack: ChatRegionStack, function: lambda_.IFunction) -> None:
    """IAM5 on ``@connections/*`` (POST and DELETE) of a function that serves client frames
    (ClientMessageHandler, a team's client route): it closes connections whose token expired."""
    for method in ("POST", "DELETE"):
        _ack(
            _default_policy(function.role),
            _manage_connections_finding(stack, method),
            "Client frames on a connection whose token expired get the token_expired frame, "
            "then DeleteConnection; connection ids are assigned at runtime, the ARN is "
            "limited to this API, this stage and the method, the trailing * is the connection id",
        )


def acknowledge_function(function: lambda_.IFunction) -> None:
    """The X-Ray wildcard of a function built by ``infra.lambda_function.chat_function``."""
    _ack(_default_policy(function.role), "IAM5[Resource::*]", _XRAY)


def acknowledge_client_route(route: IConstruct) -> None:
    """APIG4 on a WebSocket route after ``$connect`` (no authorizer is possible there)."""
    _ack(route, "APIG4", _ROUTE_AFTER_CONNECT)


def acknowledge_dead_letter_queue(queue: sqs.IQueue, role: str) -> None:
    """SQS3 on a queue that *is* a dead-letter queue (``role``: whose, in a few words)."""
    _ack(queue, "SQS3", f"This queue is {role}, i.e. a dead-letter queue; it needs none of its own")


def acknowledge_server_api_grant(stack: ChatRegionStack, grantee: IConstruct, path: str) -> None:
    """IAM5 on a role's ``execute-api:Invoke`` grant on a server API route (``path``).

    CDK's ``grant_invoke`` ends the ARN at the route's first path parameter:
    ``<api>/*/POST/server/rooms/*`` (any stage; any room is the point). Its
    partition is always the ``AWS::Partition`` pseudo parameter.
    """
    cfn_api = stack.http_api.api.node.default_child
    assert isinstance(cfn_api, apigwv2.CfnApi)
    api_logical_id = stack.resolve(stack.get_logical_id(cfn_api))
    region = stack.region if not Token.is_unresolved(stack.region) else "<AWS::Region>"
    _ack(
        grantee,
        f"IAM5[Resource::arn:<AWS::Partition>:execute-api:{region}:<AWS::AccountId>:"
        f"<{api_logical_id}>/*/POST{path}]",
        "A backend's right to call one server API route of this region: the wildcards "
        "are the stage and the room or user, which the backend chooses per call",
    )
