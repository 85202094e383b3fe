"""The preflight's checks of one region, each a row of the table.

A ``BLOCK`` row is a deploy that would fail (or a region that would not
work); ``warn`` is worth a look before real traffic; ``ok`` says what was
found. A check that cannot ask AWS (no permission) says so as ``warn``: the
preflight never guesses a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from multiregion_chat.infra.concurrency import DEFAULT_ACCOUNT_CONCURRENCY, minimum_unreserved
from tools.preflight.plan import RegionPlan
from tools.smoke.errors import aws_reason

__all__ = [
    "ACCOUNT_THROTTLE_QUOTA",
    "BLOCK",
    "LOW_THROTTLE_REGIONS",
    "OK",
    "WARN",
    "WEBSOCKET_CONNECT_QUOTA",
    "Check",
    "ClientFactory",
    "check_api_gateway_quotas",
    "check_bootstrap",
    "check_lambda_concurrency",
    "check_opt_in",
]

OK, WARN, BLOCK = "ok", "warn", "BLOCK"

# (service, region) -> a boto3 client.
ClientFactory = Callable[[str, str], Any]

# Service Quotas codes of API Gateway's account quotas (docs.aws.amazon.com,
# apigateway/latest/developerguide/limits.html and the WebSocket limits table).
WEBSOCKET_CONNECT_QUOTA = ("L-9ED1E49A", "WebSocket new connections/s", 500)
ACCOUNT_THROTTLE_QUOTA = ("L-8A5B8E43", "API Gateway requests/s (account)", 10_000)
# Regions whose default account throttle is 2,500 requests/s, not 10,000 (same page).
LOW_THROTTLE_REGIONS = frozenset(
    {
        "af-south-1", "eu-south-1", "ap-southeast-3", "me-central-1", "ap-south-2",
        "ap-southeast-4", "eu-south-2", "eu-central-2", "il-central-1", "ca-west-1",
        "ap-southeast-5", "ap-southeast-7", "mx-central-1",
    }
)  # fmt: skip
_ENABLED = {"ENABLED", "ENABLED_BY_DEFAULT", "opt-in-not-required", "opted-in"}
# The Account API and EC2's region list answer for every region from here.
_CONTROL_REGION = "us-east-1"


@dataclass(frozen=True)
class Check:
    """One row: where, what, the verdict and what was found."""

    region: str
    name: str
    status: str
    detail: str


def check_opt_in(clients: ClientFactory, region: str) -> Check:
    """Is ``region`` enabled for the account (opt-in regions are off in a new account)?"""
    name = "region enabled"
    try:
        status = clients("account", _CONTROL_REGION).get_region_opt_status(RegionName=region)[
            "RegionOptStatus"
        ]
    except (ClientError, BotoCoreError) as account_error:
        # account:GetRegionOptStatus may be denied outside the management account.
        try:
            regions = clients("ec2", _CONTROL_REGION).describe_regions(
                AllRegions=True, RegionNames=[region]
            )["Regions"]
        except (ClientError, BotoCoreError) as ec2_error:
            reason = f"{aws_reason(account_error)}; {aws_reason(ec2_error)}"
            return Check(region, name, WARN, f"cannot tell ({reason})")
        status = regions[0]["OptInStatus"] if regions else "unknown"
    if status in _ENABLED:
        return Check(region, name, OK, status)
    return Check(region, name, BLOCK, f"{status}: aws account enable-region --region-name {region}")


def _held_reservations(clients: ClientFactory, plan: RegionPlan) -> int:
    """What this stage's stack already reserves in the region (0 before its first deploy).

    Those executions are already out of ``UnreservedConcurrentExecutions``, so
    a redeploy needs only the difference.
    """
    cloudformation = clients("cloudformation", plan.region)
    lambda_ = clients("lambda", plan.region)
    functions: list[str] = []
    try:
        for page in cloudformation.get_paginator("list_stack_resources").paginate(
            StackName=plan.stack_name
        ):
            functions += [
                summary["PhysicalResourceId"]
                for summary in page["StackResourceSummaries"]
                if summary["ResourceType"] == "AWS::Lambda::Function"
                and summary.get("PhysicalResourceId")
            ]
    except ClientError as error:
        if "does not exist" in aws_reason(error):
            return 0
        raise
    return sum(
        lambda_.get_function_concurrency(FunctionName=function).get(
            "ReservedConcurrentExecutions", 0
        )
        for function in functions
    )


def check_lambda_concurrency(clients: ClientFactory, plan: RegionPlan) -> Check:
    """Can the stack's reservations be made without going under Lambda's unreserved minimum?"""
    name = "Lambda concurrency"
    try:
        limits = clients("lambda", plan.region).get_account_settings()["AccountLimit"]
        held = _held_reservations(clients, plan)
    except (ClientError, BotoCoreError) as error:
        return Check(plan.region, name, WARN, f"cannot tell ({aws_reason(error)})")
    quota = int(limits["ConcurrentExecutions"])
    unreserved = int(limits["UnreservedConcurrentExecutions"])
    floor = minimum_unreserved(quota)
    more = plan.reserved_total - held
    found = (
        f"quota {quota:,}, unreserved {unreserved:,}; the stack reserves "
        f"{plan.reserved_total:,} ({held:,} already held), Lambda keeps {floor:,} unreserved"
    )
    if unreserved - more < floor:
        return Check(
            plan.region,
            name,
            BLOCK,
            f"{found}: {more:,} more would leave {unreserved - more:,}; raise the "
            "'Concurrent executions' quota (Service Quotas, AWS Lambda) or lower "
            "httpReservedConcurrency",
        )
    if quota < DEFAULT_ACCOUNT_CONCURRENCY:
        return Check(plan.region, name, WARN, f"{found}; below the default 1,000: raise it")
    return Check(plan.region, name, OK, found)


def check_bootstrap(clients: ClientFactory, plan: RegionPlan) -> Check:
    """Is the region bootstrapped for CDK, at the version the templates need?"""
    name = "CDK bootstrap"
    command = f"npx cdk bootstrap aws://<account>/{plan.region}"
    try:
        value = clients("ssm", plan.region).get_parameter(Name=plan.bootstrap_parameter)
        version = int(value["Parameter"]["Value"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
            return Check(plan.region, name, BLOCK, f"not bootstrapped: {command}")
        version_or_reason = _toolkit_stack_version(clients, plan.region)
        if isinstance(version_or_reason, str):
            reason = f"{aws_reason(error)}; {version_or_reason}"
            return Check(plan.region, name, WARN, f"cannot tell ({reason})")
        version = version_or_reason
    except BotoCoreError as error:
        return Check(plan.region, name, WARN, f"cannot tell ({aws_reason(error)})")
    if version < plan.bootstrap_version:
        return Check(
            plan.region,
            name,
            BLOCK,
            f"version {version}, the templates need {plan.bootstrap_version}: {command}",
        )
    return Check(plan.region, name, OK, f"version {version}")


def _toolkit_stack_version(clients: ClientFactory, region: str) -> int | str:
    """The CDKToolkit stack's BootstrapVersion output, or why it cannot be read."""
    try:
        (stack,) = clients("cloudformation", region).describe_stacks(StackName="CDKToolkit")[
            "Stacks"
        ]
    except (ClientError, BotoCoreError) as error:
        return aws_reason(error)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    if "BootstrapVersion" not in outputs:
        return "the CDKToolkit stack has no BootstrapVersion output"
    return int(outputs["BootstrapVersion"])


def check_api_gateway_quotas(
    clients: ClientFactory, region: str, fanout_request_budget: int
) -> list[Check]:
    """API Gateway's account quotas: applied values, else the documented defaults."""
    rows = []
    for code, label, default in (WEBSOCKET_CONNECT_QUOTA, ACCOUNT_THROTTLE_QUOTA):
        if code == ACCOUNT_THROTTLE_QUOTA[0] and region in LOW_THROTTLE_REGIONS:
            default = 2_500
        try:
            quota = clients("service-quotas", region).get_service_quota(
                ServiceCode="apigateway", QuotaCode=code
            )
            value, source = int(quota["Quota"]["Value"]), "applied"
        except (ClientError, BotoCoreError) as error:
            value, source = default, f"documented default; Service Quotas: {aws_reason(error)}"
        status, note = OK, ""
        if code == ACCOUNT_THROTTLE_QUOTA[0] and fanout_request_budget >= value:
            status = WARN
            note = (
                f"; fanoutRequestBudget {fanout_request_budget:,} leaves clients nothing: "
                "lower it or raise the quota"
            )
        rows.append(Check(region, label, status, f"{value:,} ({source}){note}"))
    return rows
