"""What a team adds to a region: a client route with its own handler, a consumer of the chat bus.

Both are built like the app's own parts: functions through
:func:`infra.lambda_function.chat_function` (own log group, explicit role,
X-Ray, the runtime's environment and layers), routes with route responses,
bus targets with EventBridge's retry policy and a dead-letter queue.
:class:`infra.deployment.ChatDeployment` creates them in every region and adds
their alarms and cdk-nag acknowledgments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from multiregion_chat.infra.lambda_function import FunctionDefaults, FunctionRow, chat_function
from multiregion_chat.infra.replication import RETRY_ATTEMPTS, RETRY_MAX_EVENT_AGE
from multiregion_chat.infra.storage import dead_letter_queue

__all__ = [
    "BusTargetContext",
    "ChatBusConsumer",
    "ChatClientRoute",
    "FunctionSpec",
]


# What Lambda accepts (MemorySize in MB, Timeout in seconds).
MEMORY_SIZE_RANGE = (128, 10_240)
TIMEOUT_SECONDS_RANGE = (1, 900)
# A Duration is immutable: one instance can be every spec's default.
DEFAULT_TIMEOUT = Duration.seconds(10)


@dataclass(frozen=True, kw_only=True)
class FunctionSpec:
    """A team's function: its code folder and handler, sized like the built-in ones.

    ``code_dir`` is packaged with ``multiregion_chat/`` (the package root's ``__init__`` and
    ``runtime/``) next to it (:func:`infra.extension_code.extension_code`), so the handler
    imports ``multiregion_chat.runtime...`` exactly like the built-in handlers.
    ``memory_size`` (MB) and ``timeout`` are ``lambda_.Function``'s own: a
    spec out of Lambda's ranges fails when it is created, not at deploy time.
    """

    code_dir: str
    handler: str
    description: str = ""
    memory_size: int = 256
    timeout: Duration = DEFAULT_TIMEOUT
    environment: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        low, high = MEMORY_SIZE_RANGE
        if (
            isinstance(self.memory_size, bool)
            or not isinstance(self.memory_size, int)
            or not low <= self.memory_size <= high
        ):
            raise ValueError(
                f"FunctionSpec memory_size {self.memory_size!r}: "
                f"Lambda accepts an integer from {low} to {high} (MB)"
            )
        if not isinstance(self.timeout, Duration):
            raise ValueError(
                f"FunctionSpec timeout {self.timeout!r} is not a Duration: "
                f"give e.g. timeout=Duration.seconds(30)"
            )
        low, high = TIMEOUT_SECONDS_RANGE
        seconds = self.timeout.to_seconds(integral=False)
        # CloudFormation's Timeout is whole seconds; CDK refuses anything else at synth.
        if seconds != int(seconds) or not low <= seconds <= high:
            raise ValueError(
                f"FunctionSpec timeout {self.timeout.to_human_string()}: "
                f"Lambda accepts whole seconds from {low} to {high}"
            )


def spec_function(
    scope: Construct,
    name: str,
    spec: FunctionSpec,
    *,
    code: lambda_.Code,
    defaults: FunctionDefaults,
    environment: Mapping[str, str],
) -> tuple[lambda_.Function, logs.LogGroup]:
    """``spec`` as a function named ``name``, built like the app's own (``chat_function``).

    ``defaults``: the stack's (``ChatFunctions.defaults``: layers, log
    settings) with ``code`` (the team's folder plus ``multiregion_chat/``) instead of the
    app's; ``environment``: the runtime's variables, plus the spec's own.
    """
    return chat_function(
        scope,
        FunctionRow(
            name=name,
            handler=spec.handler,
            description=spec.description or f"{name} (added with ChatDeployment)",
            memory_size=spec.memory_size,
            timeout=spec.timeout,
        ),
        replace(defaults, code=code),
        environment={**environment, **(spec.environment or {})},
    )


class ChatClientRoute(Construct):
    """One WebSocket route (``route_key``) served by its own function, with a route response.

    The function's return value is the direct reply, exactly like
    ClientMessageHandler's (``{"statusCode": 200, "body": <frame>}``);
    :func:`runtime.intake.extension.client_action` builds such a handler.

    Attributes:
        function, log_group: the route's function and its log group.
        route: the ``WebSocketRoute``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        route_key: str,
        api: apigwv2.WebSocketApi,
        spec: FunctionSpec,
        code: lambda_.Code,
        defaults: FunctionDefaults,
        environment: Mapping[str, str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.function, self.log_group = spec_function(
            self, "Function", spec, code=code, defaults=defaults, environment=environment
        )
        self.route = api.add_route(
            route_key,
            integration=integrations.WebSocketLambdaIntegration(
                f"{construct_id}Integration", self.function
            ),
            return_response=True,
        )


@dataclass(frozen=True)
class BusTargetContext:
    """What a bus consumer's target factory gets: where to build, and the delivery defaults.

    Pass ``dead_letter_queue``, ``retry_attempts`` and ``max_event_age`` to
    the CDK target (``targets.LambdaFunction(fn, dead_letter_queue=...)``);
    a target that sets neither still gets them (:class:`ChatBusConsumer`).
    """

    scope: Construct
    dead_letter_queue: sqs.IQueue
    retry_attempts: int
    max_event_age: Duration


@jsii.implements(events.IRuleTarget)
class _WithRetriesAndDeadLetters:
    """A rule target that always has a retry policy and a dead-letter queue.

    Whatever the wrapped target's bind leaves out is filled in: EventBridge's
    maxima as retry policy, and the consumer's queue as DeadLetterConfig (with
    the queue policy that lets this rule, and only it, send there; what CDK's
    own targets add when given ``dead_letter_queue``).
    """

    def __init__(self, target: events.IRuleTarget, context: BusTargetContext) -> None:
        self._target = target
        self._context = context

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        config = self._target.bind(rule, id)
        values: dict[str, Any] = dict(config._values)  # jsii struct: keyword -> value
        if config.dead_letter_config is None:
            queue = self._context.dead_letter_queue
            queue.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"AllowEventRule{id or 'Target'}",
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["sqs:SendMessage"],
                    resources=[queue.queue_arn],
                    conditions={"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}},
                )
            )
            values["dead_letter_config"] = events.CfnRule.DeadLetterConfigProperty(
                arn=queue.queue_arn
            )
        if config.retry_policy is None:
            values["retry_policy"] = events.CfnRule.RetryPolicyProperty(
                maximum_event_age_in_seconds=int(self._context.max_event_age.to_seconds()),
                maximum_retry_attempts=self._context.retry_attempts,
            )
        return events.RuleTargetConfig(**values)


# What a team passes to build a consumer's target in one region.
TargetFactory = Callable[[BusTargetContext], events.IRuleTarget]


class ChatBusConsumer(Construct):
    """A rule on the region's chat bus with one target, its retry policy and dead-letter queue.

    The rule sees every chat event of the region, local and forwarded from
    other regions (each event once per region; a consumer that must see each
    message once *globally* filters on ``detail.originRegion``).

    Attributes:
        rule: the ``events.Rule``.
        dead_letter_queue: where EventBridge puts events the target still
            refused after the retry policy.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        event_bus: events.IEventBus,
        event_pattern: events.EventPattern,
        target: TargetFactory,
        removal_policy: RemovalPolicy,
        description: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = dead_letter_queue(
            self, "DeadLetterQueue", removal_policy=removal_policy
        )
        self.rule = events.Rule(
            self,
            "Rule",
            event_bus=event_bus,
            description=description or f"Chat events to {construct_id}",
            event_pattern=event_pattern,
        )
        context = BusTargetContext(
            scope=self,
            dead_letter_queue=self.dead_letter_queue,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=RETRY_MAX_EVENT_AGE,
        )
        self.rule.add_target(_WithRetriesAndDeadLetters(target(context), context))
