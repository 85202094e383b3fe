"""Runs the templates' custom resources, as CloudFormation creates them.

Once every region's tables, queues and buckets exist (a deploy of ``--all`` ends with every
stack in place too), each region's custom resources (:mod:`sandbox.storage_model`) get a
``Create`` request, in the order of the regions. The request's ``ResponseURL`` is, as in AWS, a
presigned S3 ``PUT``: here into a bucket of the sandbox's own in moto, which the sandbox reads
back for the function's ``SUCCESS`` or ``FAILED``. A failure stops the start with the
function's reason, as it would roll the stack back.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from sandbox.aws_local import sandbox_client
from sandbox.errors import SandboxError
from sandbox.resolver import ACCOUNT_ID

if TYPE_CHECKING:
    from sandbox.runtime import RegionRuntime
    from sandbox.storage_model import CustomResourceSpec

RESPONSES_BUCKET = "sandbox-cloudformation-responses"  # lower case, as S3 wants it


def _create_event(
    runtime: RegionRuntime, resource: CustomResourceSpec, response_url: str
) -> dict[str, Any]:
    stack = runtime.model.stack.name
    return {
        "RequestType": "Create",
        "ServiceToken": resource.service_token,
        "ResponseURL": response_url,
        "StackId": f"arn:aws:cloudformation:{runtime.region}:{ACCOUNT_ID}:stack/{stack}/local",
        "RequestId": str(uuid.uuid4()),
        "ResourceType": resource.resource_type,
        "LogicalResourceId": resource.logical_id,
        "ResourceProperties": {"ServiceToken": resource.service_token, **resource.properties},
    }


async def create_all(regions: list[RegionRuntime], endpoint: str) -> int:
    """Create every region's custom resources; returns how many ran."""
    import asyncio

    if not any(runtime.model.custom_resources for runtime in regions):
        return 0
    s3 = sandbox_client("s3", "us-east-1", endpoint)
    await asyncio.to_thread(s3.create_bucket, Bucket=RESPONSES_BUCKET)
    ran = 0
    for runtime in regions:
        for resource in runtime.model.custom_resources:
            key = f"{runtime.region}/{resource.logical_id}/{uuid.uuid4()}"
            url = s3.generate_presigned_url(
                "put_object", Params={"Bucket": RESPONSES_BUCKET, "Key": key}, ExpiresIn=3600
            )
            where = f"stack {runtime.model.stack.name} ({runtime.region}) {resource.logical_id}"
            result = await runtime.workers[resource.function].invoke(
                _create_event(runtime, resource, url)
            )
            if not result.ok:
                raise SandboxError(
                    f"{where}: the custom resource's function failed: "
                    f"{result.error_type}: {result.error_message}"
                )
            try:
                answer = await asyncio.to_thread(s3.get_object, Bucket=RESPONSES_BUCKET, Key=key)
                response = json.loads(answer["Body"].read())
            except Exception as exc:
                raise SandboxError(f"{where}: the function sent CloudFormation no answer") from exc
            if response.get("Status") != "SUCCESS":
                raise SandboxError(f"{where}: create failed: {response.get('Reason')}")
            ran += 1
    return ran
