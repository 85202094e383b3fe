"""Every checkov finding the design accepts, each with its reason, on its resource.

checkov reads suppressions from a resource's CloudFormation ``Metadata``
(``checkov: {skip: [{id, comment}]}``); :class:`CheckovSuppressions` (an
aspect on each region stack) writes them from the tables below, so this
module is the one list of what checkov is told to skip and why. The
``checkov`` test (tests/infra/test_checkov.py) runs checkov over every
synthesized template and fails on any finding not listed here, so a resource
someone adds (a new function, a queue without encryption) is either fixed or
explained here.

Suppressions by resource type are design-wide choices. Lambda functions are
listed one by one (by handler): a function nobody looked at gets no skip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsii
from aws_cdk import CfnResource, IAspect
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import IConstruct

__all__ = ["FUNCTION_SKIPS", "TYPE_SKIPS", "CheckovSuppressions"]

_NO_VPC = (
    "No VPC by design: the functions reach only regional AWS APIs (DynamoDB, EventBridge, "
    "SQS, API Gateway, Secrets Manager) over TLS with IAM auth; a VPC would add NAT gateways "
    "or endpoints per region and cold-start latency and protect no private resource"
)
_ENV_NOT_SECRET = (
    "The environment holds table/bus/queue names and numeric settings only, never a secret "
    "(the signing secret is read from Secrets Manager at run time); Lambda encrypts it at "
    "rest with its AWS-managed key"
)
_SYNCHRONOUS = (
    "Invoked synchronously (API Gateway) or by an SQS event source: a Lambda DLQ applies "
    "only to asynchronous invocations; failures are the caller's reply or the queue's redrive"
)
_NO_RESERVATION = (
    "Short requests, bounded by the stage throttle and per-client budgets; a reserved "
    "concurrency would both reserve and cap it, throttling the WebSocket path under load. "
    "The one function a client can hold for long, HttpHandler (long polls), has reserved "
    "concurrency so it cannot starve this one"
)

# Per resource type: (check id, reason, applies to this resource?).
TYPE_SKIPS: Mapping[str, tuple[tuple[str, str, Callable[[CfnResource], bool]], ...]] = {
    "AWS::Lambda::Function": (
        ("CKV_AWS_117", _NO_VPC, lambda _: True),
        ("CKV_AWS_173", _ENV_NOT_SECRET, lambda _: True),
    ),
    "AWS::Logs::LogGroup": (
        (
            "CKV_AWS_158",
            "CloudWatch Logs encrypts every log group at rest by default; the logs never "
            "contain tokens or message bodies (tests assert it), so a KMS key per region "
            "would add cost and a key policy without protecting anything more",
            lambda _: True,
        ),
    ),
    "AWS::DynamoDB::Table": (
        (
            "CKV_AWS_119",
            "Encrypted at rest with DynamoDB's AWS-owned key; a customer-managed key would "
            "put a KMS request quota and per-request cost on every read and write of the "
            "hot path, for no access control IAM does not already give",
            lambda _: True,
        ),
    ),
    "AWS::SecretsManager::Secret": (
        (
            "CKV_AWS_149",
            "Encrypted with the aws/secretsmanager key in every replica region; only the "
            "authorizer's role may read it (IAM, tested). A customer-managed key would need "
            "a key per replica region and grants for the same single reader",
            lambda _: True,
        ),
    ),
    # Only the access-log bucket of the attachments (infra/attachments.py) has neither.
    "AWS::S3::Bucket": (
        (
            "CKV_AWS_18",
            "This is the access-log bucket: S3 writes the attachment bucket's server access "
            "logs here; logging this bucket's own writes would log the log deliveries",
            lambda bucket: (
                isinstance(bucket, s3.CfnBucket) and bucket.logging_configuration is None
            ),
        ),
        (
            "CKV_AWS_21",
            "The access-log bucket: S3 only adds log objects and the lifecycle rule expires "
            "them after logRetentionDays; versions would keep expired logs as noncurrent copies",
            lambda bucket: (
                isinstance(bucket, s3.CfnBucket) and bucket.versioning_configuration is None
            ),
        ),
    ),
    "AWS::SQS::Queue": (
        (
            "CKV_AWS_27",
            "Encrypted at rest with SQS-managed SSE (SqsManagedSseEnabled); checkov "
            "recognises only KmsMasterKeyId",
            lambda queue: isinstance(queue, sqs.CfnQueue) and queue.sqs_managed_sse_enabled is True,
        ),
    ),
}

# Per Lambda handler: check id -> reason.
FUNCTION_SKIPS: Mapping[str, Mapping[str, str]] = {
    "multiregion_chat.runtime.handlers.connection_handler.handler": {
        "CKV_AWS_115": _NO_RESERVATION,
        "CKV_AWS_116": _SYNCHRONOUS,
    },
    "multiregion_chat.runtime.handlers.client_message_handler.handler": {
        "CKV_AWS_115": _NO_RESERVATION,
        "CKV_AWS_116": _SYNCHRONOUS,
    },
    "multiregion_chat.runtime.handlers.authorizer.handler": {
        "CKV_AWS_115": _NO_RESERVATION,
        "CKV_AWS_116": _SYNCHRONOUS,
    },
    # CKV_AWS_115 is fixed, not skipped: reserved concurrency (httpReservedConcurrency).
    "multiregion_chat.runtime.handlers.http_handler.handler": {"CKV_AWS_116": _SYNCHRONOUS},
    # CKV_AWS_115 is fixed, not skipped: reserved concurrency of its own (infra/functions.py).
    "multiregion_chat.runtime.handlers.health_handler.handler": {"CKV_AWS_116": _SYNCHRONOUS},
    "multiregion_chat.runtime.handlers.server_api_handler.handler": {
        "CKV_AWS_115": (
            "Called by the team's own backends through IAM-authorized routes (never by "
            "clients), bounded by the HTTP stage throttle; a reservation would take from the "
            "pool the WebSocket path uses"
        ),
        "CKV_AWS_116": (
            "Invoked synchronously by the HTTP API, and by the chat.disconnect rule, whose "
            "target has EventBridge retries and its own dead-letter queue"
        ),
    },
    "multiregion_chat.runtime.handlers.fanout_worker.handler": {
        "CKV_AWS_115": (
            "Its concurrency is capped by the queue's event source MaximumConcurrency "
            "(fanoutMaxWorkers) without reserving any of the account's pool"
        ),
        "CKV_AWS_116": _SYNCHRONOUS,
    },
    "multiregion_chat.runtime.handlers.attachment_replication.handler": {
        "CKV_AWS_115": (
            "Run by CloudFormation only, once per deploy of a region's stack; a reservation "
            "would take from the pool the WebSocket path uses"
        ),
        "CKV_AWS_116": (
            "A CloudFormation custom resource: CloudFormation waits for its answer and fails "
            "the deployment on an error; a DLQ would keep a request nobody answers any more"
        ),
    },
    "multiregion_chat.runtime.handlers.event_bus_message_handler.handler": {
        "CKV_AWS_115": (
            "Invoked by EventBridge only (never by a client directly); a cap would throttle "
            "delivery of every message in the region, and throttled events are retried for "
            "24 h anyway"
        ),
        "CKV_AWS_116": (
            "Asynchronous (EventBridge), with an on-failure destination queue (a superset "
            "of a DLQ: it records the error too) and the rule target's own dead-letter queue"
        ),
    },
}


def _skips(resource: CfnResource) -> list[dict[str, str]]:
    skips = [
        {"id": check, "comment": reason}
        for check, reason, applies in TYPE_SKIPS.get(resource.cfn_resource_type, ())
        if applies(resource)
    ]
    if isinstance(resource, lambda_.CfnFunction) and isinstance(resource.handler, str):
        reasons = FUNCTION_SKIPS.get(resource.handler, {})
        if resource.reserved_concurrent_executions is not None:
            reasons = {k: v for k, v in reasons.items() if k != "CKV_AWS_115"}
        skips += [{"id": check, "comment": reason} for check, reason in reasons.items()]
    return skips


@jsii.implements(IAspect)
class CheckovSuppressions:
    """Writes each resource's accepted checkov findings into its Metadata."""

    def visit(self, node: IConstruct) -> None:
        if not isinstance(node, CfnResource):
            return
        skips = _skips(node)
        if skips:
            existing: Any = node.get_metadata("checkov") or {}
            node.add_metadata("checkov", {"skip": [*existing.get("skip", []), *skips]})
