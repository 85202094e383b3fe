"""One Lambda function of the app, with its own log group and least-privilege role.

Every function of every construct is built here, so they all get the same
runtime, architecture, tracing and logging, and differ only in what their
declaration says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

__all__ = ["ARCHITECTURE", "RUNTIME", "chat_function"]

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64


def chat_function(
    scope: Construct,
    name: str,
    *,
    code: lambda_.Code,
    handler: str,
    description: str,
    memory_size: int,
    timeout: Duration,
    environment: Mapping[str, str],
    layers: Sequence[lambda_.ILayerVersion],
    log_retention: logs.RetentionDays,
    removal_policy: RemovalPolicy,
    retry_attempts: int | None = None,
    max_event_age: Duration | None = None,
    on_failure: lambda_.IDestination | None = None,
) -> tuple[lambda_.Function, logs.LogGroup]:
    """``name`` (construct id prefix) as a function and its log group.

    The role is explicit instead of the default one: the default attaches
    AWSLambdaBasicExecutionRole, which may write to *every* log group.
    """
    log_group = logs.LogGroup(
        scope, f"{name}LogGroup", retention=log_retention, removal_policy=removal_policy
    )
    role = iam.Role(
        scope,
        f"{name}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"{name}: own log group, X-Ray, and the resources it uses",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
            # The log group's Arn attribute ends in ":*", i.e. its streams.
            resources=[log_group.log_group_arn],
        )
    )
    function = lambda_.Function(
        scope,
        name,
        code=code,
        handler=handler,
        description=description,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        memory_size=memory_size,
        timeout=timeout,
        role=role,
        log_group=log_group,
        layers=list(layers),
        # Adds xray:PutTraceSegments/PutTelemetryRecords on "*" to the
        # role: X-Ray has no resource-level permissions.
        tracing=lambda_.Tracing.ACTIVE,
        environment=dict(environment),
        retry_attempts=retry_attempts,
        max_event_age=max_event_age,
        on_failure=on_failure,
    )
    # CDK renders its construct dependency on the role as DependsOn next to
    # the Role GetAtt; cfn-lint flags the redundant half (W3005). Silenced
    # here, on this resource only: the policy half of DependsOn matters.
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, lambda_.CfnFunction)
    cfn_function.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
    return function, log_group
