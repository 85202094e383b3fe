"""Attachment replication between the regions' buckets (handler
``runtime.handlers.attachment_replication.handler``).

A CloudFormation custom resource of every regional stack (infra/attachments.py). S3
refuses a replication rule whose destination bucket does not exist yet, and the stacks
deploy one region after another (the first region first: docs/deploying.md), so no
bucket can declare its rules itself. Instead, whenever a region's stack is created or its
region list changes, this function sets the replication of *every* region's bucket that
exists at that moment: each replicates ``rooms/`` to every other existing bucket (one rule
per destination, ``to-<region>``, with replication metrics). The last stack of a fresh
``cdk deploy --all`` therefore completes the mesh, and a region added later (deployed first
or last) joins it in both directions. When a region's stack is deleted, its bucket's rules
are removed and the others stop replicating to it.

The result depends only on which buckets exist, so running it again is harmless; two
stacks deploying at the same moment (``cdk deploy --concurrency``) could each write what
they saw, which is why docs/deploying.md keeps the default of one stack at a time.

The function answers CloudFormation itself (a PUT to the presigned ``ResponseURL``): the
provider framework of aws-cdk-lib would add two functions and a role per stack for that.
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import json
import urllib.request
from collections.abc import Mapping
from typing import Any

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.platform.observability import logger

__all__ = ["handler", "reconcile", "replication_rules"]

REPLICATED_PREFIX = "rooms/"
# Replication metrics per rule: OperationsFailedReplication (alarmed), ReplicationLatency and
# OperationsPendingReplication (dashboards), and the s3:Replication:OperationFailedReplication
# event. Metrics need no Replication Time Control (S3 User Guide, "Receiving replication failure
# events"), and without it S3 refuses an EventThreshold ("Metrics cannot contain an event
# threshold when ReplicationTime is not specified or Disabled"): Status alone, as the
# Metrics API reference allows (EventThreshold: Required: No).
METRICS = {"Status": "Enabled"}
RESPONSE_TIMEOUT_S = 10


def replication_rules(
    source: str, present: Mapping[str, str], order: list[str], partition: str
) -> list[dict[str, Any]]:
    """The rules of ``source``'s bucket: one per other present bucket, in ``order``."""
    return [
        {
            "ID": f"to-{region}",
            "Priority": priority,
            "Status": "Enabled",
            "Filter": {"Prefix": REPLICATED_PREFIX},
            # Each region expires its own copies (lifecycle); a delete is not replicated.
            "DeleteMarkerReplication": {"Status": "Disabled"},
            "Destination": {
                "Bucket": f"arn:{partition}:s3:::{present[region]}",
                "Metrics": METRICS,
            },
        }
        for priority, region in enumerate(order)
        if region != source and region in present
    ]


def _exists(region: str, bucket: str) -> bool:
    try:
        aws_clients.s3(region).head_bucket(Bucket=bucket)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            return False
        raise  # 403: the name belongs to someone else; say so rather than skip it
    return True


def reconcile(properties: Mapping[str, Any], *, leaving: bool) -> dict[str, int]:
    """Set every existing bucket's rules; ``leaving``: this stack's region is going away.

    Returns the number of rules per bucket set (for the log and the resource's data).
    """
    buckets: dict[str, str] = dict(properties["Buckets"])
    roles: dict[str, str] = dict(properties["Roles"])
    own, partition = properties["Region"], properties["Partition"]
    order = list(buckets)
    present = {
        region: bucket
        for region, bucket in buckets.items()
        if not (leaving and region == own) and _exists(region, bucket)
    }
    written: dict[str, int] = {}
    for region, bucket in present.items():
        rules = replication_rules(region, present, order, partition)
        s3 = aws_clients.s3(region)
        if rules:
            s3.put_bucket_replication(
                Bucket=bucket,
                ReplicationConfiguration={"Role": roles[region], "Rules": rules},
            )
        else:
            s3.delete_bucket_replication(Bucket=bucket)
        written[region] = len(rules)
    if leaving and own in buckets and _exists(own, buckets[own]):
        aws_clients.s3(own).delete_bucket_replication(Bucket=buckets[own])
        written[own] = 0
    return written


def _respond(event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, Any]) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": f"attachment-replication-{event['ResourceProperties']['Region']}",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": dict(data),
        }
    ).encode("utf-8")
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"content-type": "", "content-length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_S) as response:
        response.read()


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> None:
    request_type = event.get("RequestType")
    logger.append_keys(requestType=request_type)
    try:
        written = reconcile(event["ResourceProperties"], leaving=request_type == "Delete")
    except Exception as error:
        logger.exception("replication setup failed")
        if request_type != "Delete":
            _respond(event, "FAILED", f"{type(error).__name__}: {error}", {})
            return
        # A stack being deleted must not get stuck on its bucket's rules: the other regions'
        # failed replications to it are alarmed (docs/operations.md) and the next deploy of
        # any region writes the rules again.
        written = {}
    logger.info("replication set", extra={"rules": written})
    _respond(event, "SUCCESS", "ok", {"Buckets": len(written)})


init_phase.end()
