"""One Lambda function of the app, with its own log group and least-privilege role.

Every function of every construct is built here from a :class:`FunctionRow`
(what differs between functions) and a :class:`FunctionDefaults` (what the
functions of a stack share), so they all get the same runtime, architecture,
layer, tracing and logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

__all__ = ["ARCHITECTURE", "RUNTIME", "FunctionDefaults", "FunctionRow", "chat_function"]

RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64


@dataclass(frozen=True, kw_only=True)
class FunctionRow:
    """What one function declares: handler, size, and what it may touch.

    ``memory_size`` (MB) and ``timeout`` as ``lambda_.Function`` takes them.

    ``connections_actions`` / ``messages_actions`` are the exact DynamoDB
    actions on each table (docs/contracts.md, "IAM the handlers need");
    ``puts_events``: events:PutEvents on the region's chat bus.
    ``environment``: the app's shared variables plus these; with
    ``shared_environment=False`` only Powertools' variables plus these.
    ``async_failure_queue``: the function is invoked asynchronously (by
    EventBridge); Lambda retries twice, then puts the event on an on-failure
    queue of its own.
    """

    name: str
    handler: str
    description: str
    memory_size: int
    timeout: Duration
    connections_actions: tuple[str, ...] = ()
    messages_actions: tuple[str, ...] = ()
    puts_events: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)
    shared_environment: bool = True
    async_failure_queue: bool = False
    # ReservedConcurrentExecutions (None: none); see HttpHandler in infra/functions.py.
    reserved_concurrency: int | None = None


@dataclass(frozen=True, kw_only=True)
class FunctionDefaults:
    """What every function of a stack shares: code, layers, log settings."""

    code: lambda_.Code
    layers: tuple[lambda_.ILayerVersion, ...]
    log_retention: logs.RetentionDays
    removal_policy: RemovalPolicy


def chat_function(
    scope: Construct,
    row: FunctionRow,
    defaults: FunctionDefaults,
    *,
    environment: Mapping[str, str],
    on_failure: lambda_.IDestination | None = None,
) -> tuple[lambda_.Function, logs.LogGroup]:
    """``row`` as a function (construct id ``row.name``) and its log group.

    The role is explicit instead of the default one: the default attaches
    AWSLambdaBasicExecutionRole, which may write to *every* log group.
    ``on_failure`` (with ``row.async_failure_queue``): where failed
    asynchronous invocations go after two retries.
    """
    name = row.name
    log_group = logs.LogGroup(
        scope,
        f"{name}LogGroup",
        retention=defaults.log_retention,
        removal_policy=defaults.removal_policy,
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
    asynchronous = row.async_failure_queue
    function = lambda_.Function(
        scope,
        name,
        code=defaults.code,
        handler=row.handler,
        description=row.description,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        memory_size=row.memory_size,
        timeout=row.timeout,
        role=role,
        log_group=log_group,
        layers=list(defaults.layers),
        # Adds xray:PutTraceSegments/PutTelemetryRecords on "*" to the
        # role: X-Ray has no resource-level permissions.
        tracing=lambda_.Tracing.ACTIVE,
        environment=dict(environment),
        # A replicated message must not vanish: two retries, then the queue.
        retry_attempts=2 if asynchronous else None,
        max_event_age=Duration.hours(6) if asynchronous else None,
        on_failure=on_failure,
        reserved_concurrent_executions=row.reserved_concurrency,
    )
    # CDK renders its construct dependency on the role as DependsOn next to
    # the Role GetAtt; cfn-lint flags the redundant half (W3005). Silenced
    # here, on this resource only: the policy half of DependsOn matters.
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, lambda_.CfnFunction)
    cfn_function.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
    return function, log_group
