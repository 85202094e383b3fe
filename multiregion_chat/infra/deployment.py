"""The public API: one ``ChatDeployment`` is the chat app in every configured region.

A team's own CDK app (and ``app.py``) builds it and extends it::

    app = App()
    chat = ChatDeployment(app, config=ChatConfig.from_context(app.node))
    chat.add_client_route("translate", name="Translate", spec=FunctionSpec(...))
    chat.add_bus_consumer_function("Archive", spec=FunctionSpec(...))
    app.synth()

docs/extending.md shows every extension point with tested code.

Why a plain object and not a ``Construct`` or a ``Stage``: the regional stacks
must stay direct children of the scope they are given. Under a ``Construct``
their artifact ids and CLI selectors would become path-derived
(``Chat/chat-prod-us-east-1``) and under a ``Stage`` they would move into a
nested cloud assembly that ``cdk deploy --all``, the sandbox and the README's
stack names do not see. Taking the scope as a parameter keeps both doors open:
pass the ``App`` (what ``app.py`` does) or a ``Stage`` of your own pipeline
(CDK Pipelines deploys a ``Stage``), and the stacks land there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from aws_cdk import Aspects, Environment, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from multiregion_chat.infra.checkov import CheckovSuppressions
from multiregion_chat.infra.config import ChatConfig, RegionOverrides
from multiregion_chat.infra.extension_code import extension_code
from multiregion_chat.infra.extensions import (
    BusTargetContext,
    ChatBusConsumer,
    ChatClientRoute,
    FunctionSpec,
    TargetFactory,
    spec_function,
)
from multiregion_chat.infra.functions import FRAME_INTAKE_CONNECTIONS_ACTIONS
from multiregion_chat.infra.nag_acknowledgments import (
    acknowledge_client_route,
    acknowledge_connection_closer,
    acknowledge_dead_letter_queue,
    acknowledge_findings,
    acknowledge_function,
    acknowledge_server_api_grant,
    enable_nag,
)
from multiregion_chat.infra.region_stack import ChatRegionStack
from multiregion_chat.infra.runtime_contract import RUNTIME_VARIABLES
from multiregion_chat.infra.server_api import ChatServerApi, check_grantee_account
from multiregion_chat.infra.websocket_api import CLIENT_ROUTE_KEYS

# Re-exported: what a team's app needs comes from this one module.
__all__ = [
    "BusTargetContext",
    "ChatConfig",
    "ChatDeployment",
    "FunctionSpec",
    "Grant",
    "RegionOverrides",
]

Grant = Callable[[ChatRegionStack, lambda_.Function], None]
"""Permissions for a function in one region, given the region's stack and the function.

For example ``lambda stack, fn: stack.storage.messages_table.grant(fn, "dynamodb:Query")``.
"""

# A route key API Gateway accepts and our frames can carry as ``action``.
_ROUTE_KEY = re.compile(r"^[a-z][a-zA-Z0-9_.-]{0,63}$")
# Construct ids, alarm names and override keys are derived from it.
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]{0,47}$")

T = TypeVar("T")


class ChatDeployment:
    """The chat app in every configured region, and the ways to extend it.

    Attributes:
        config: the ``ChatConfig`` every region shares.
        overrides: region -> ``RegionOverrides`` (regions without one use the config).
        stacks: region -> ``ChatRegionStack``, in the configured order.
        client_routes, bus_consumers: what was added, by name, then region.
    """

    def __init__(
        self,
        scope: Construct,
        *,
        config: ChatConfig,
        overrides: Mapping[str, RegionOverrides] | None = None,
        nag: bool = True,
    ) -> None:
        """Add one ``ChatRegionStack`` per region of ``config`` to ``scope`` (an App or a Stage).

        ``nag`` runs cdk-nag's AWS Solutions pack on ``scope`` (an unacknowledged
        finding fails synth); turn it off only if your app adds the pack itself.
        """
        self.config = config
        self.overrides: dict[str, RegionOverrides] = dict(overrides or {})
        unknown = sorted(set(self.overrides) - set(config.regions))
        if unknown:
            raise ValueError(f"overrides for regions that are not configured: {unknown}")
        self.stacks: dict[str, ChatRegionStack] = {}
        for region in config.regions:
            stack = ChatRegionStack(
                scope,
                config.stack_name(region),
                config=config,
                region=region,
                overrides=self.overrides.get(region),
                env=Environment(region=region),
            )
            acknowledge_findings(stack)
            Aspects.of(stack).add(CheckovSuppressions())
            self.stacks[region] = stack
        if config.signing_secret_managed and not config.oidc:
            # The first region's stack creates the signing secret and its replicas;
            # the others read it by name, so `cdk deploy --all` deploys it first.
            for stack in list(self.stacks.values())[1:]:
                stack.add_stack_dependency(
                    self.primary_stack, reason="the token signing secret (replicas)"
                )
        if nag:
            enable_nag(scope)
        self.client_routes: dict[str, dict[str, ChatClientRoute]] = {}
        self.bus_consumers: dict[str, dict[str, ChatBusConsumer]] = {}
        self._route_keys: set[str] = set()
        self._grant_scopes: dict[str, Construct] = {}

    @property
    def primary_stack(self) -> ChatRegionStack:
        """The first region's stack (it creates the replicated signing secret)."""
        return self.stacks[self.config.primary_region]

    def _each(self, build: Callable[[ChatRegionStack], T]) -> dict[str, T]:
        return {region: build(stack) for region, stack in self.stacks.items()}

    # ---- client routes ----------------------------------------------------
    def add_client_route(
        self,
        route_key: str,
        *,
        name: str,
        spec: FunctionSpec,
        permissions: Grant | None = None,
    ) -> dict[str, ChatClientRoute]:
        """Serve the client action ``route_key`` with the team's own function in every region.

        Wired like the built-in actions: a route with a route response (the
        handler's return value is the reply frame), the runtime's environment
        and Powertools layer, its own log group and role, ``<name>Errors`` /
        ``<name>Throttles`` alarms, and ``permissions`` (called once per
        region with the stack and the function) for whatever else it needs.
        ``name`` names the function (and its alarms and ``RegionOverrides.memory_size`` key).
        """
        if not _ROUTE_KEY.fullmatch(route_key):
            raise ValueError(f"route key {route_key!r} does not match {_ROUTE_KEY.pattern}")
        taken = {*CLIENT_ROUTE_KEYS, *self._route_keys}
        if route_key in taken:
            raise ValueError(f"route key {route_key!r} is taken; taken: {sorted(taken)}")
        self._check_name(name)

        def build(stack: ChatRegionStack) -> ChatClientRoute:
            added = ChatClientRoute(
                stack,
                name,
                route_key=route_key,
                api=stack.api.api,
                spec=spec,
                code=extension_code(spec.code_dir),
                defaults=stack.functions.defaults,
                environment=stack.functions.environment,
            )
            self._wire_function(stack, name, added.function, permissions)
            # Charged, expiry-checked and closed like the built-in actions
            # (runtime.intake.frame_intake).
            stack.storage.connections_table.grant(added.function, *FRAME_INTAKE_CONNECTIONS_ACTIONS)
            added.function.add_environment("CALLBACK_URL", stack.api.callback_url)
            stack.functions.allow_manage_connections(
                stack.api.manage_connections_arn, added.function, stack.api.close_connections_arn
            )
            acknowledge_connection_closer(stack, added.function)
            acknowledge_client_route(added.route)
            return added

        routes = self._each(build)
        self._route_keys.add(route_key)
        self.client_routes[name] = routes
        return routes

    # ---- bus consumers ----------------------------------------------------
    def add_bus_consumer(
        self,
        name: str,
        target: TargetFactory,
        *,
        detail_types: Iterable[str] | None = None,
    ) -> dict[str, ChatBusConsumer]:
        """Send the chat bus's events to ``target(context)`` in every region.

        ``target`` builds the region's rule target (any ``aws_events_targets``
        class, a Firehose stream, a queue, a function) in ``context.scope``;
        it should pass ``context.dead_letter_queue``, ``retry_attempts`` and
        ``max_event_age`` on, and gets them anyway if it does not. The
        consumer's dead-letter queue is alarmed (``<name>DeadLetterQueueNotEmpty``).
        ``detail_types``: e.g. ``["chat.message"]``; None: every chat event
        (messages and presence).
        """
        self._check_name(name)
        pattern = events.EventPattern(
            source=self.config.chat_event_sources,
            detail_type=list(detail_types) if detail_types is not None else None,
        )

        def build(stack: ChatRegionStack) -> ChatBusConsumer:
            consumer = ChatBusConsumer(
                stack,
                name,
                event_bus=stack.replication.event_bus,
                event_pattern=pattern,
                target=target,
                removal_policy=stack.removal_policy,
            )
            acknowledge_dead_letter_queue(
                consumer.dead_letter_queue, f"the DeadLetterConfig of the {name} bus consumer"
            )
            queue_name = f"{name}DeadLetterQueue"
            stack.monitoring.add_queue_alarm(queue_name, consumer.dead_letter_queue)
            stack.apply_alarm_override(f"{queue_name}NotEmpty")
            return consumer

        consumers = self._each(build)
        self.bus_consumers[name] = consumers
        return consumers

    def add_bus_consumer_function(
        self,
        name: str,
        *,
        spec: FunctionSpec,
        detail_types: Iterable[str] | None = None,
        permissions: Grant | None = None,
    ) -> dict[str, lambda_.Function]:
        """A function of the team's own (``spec``) as a bus consumer in every region.

        The function is built like the built-in ones (runtime environment,
        layers, log group, alarms, ``RegionOverrides.memory_size[name]``) and is
        the target of :meth:`add_bus_consumer`, with its retries and dead-letter queue.
        """
        functions: dict[str, lambda_.Function] = {}

        def target(context: BusTargetContext) -> events.IRuleTarget:
            stack = _region_stack(context.scope)
            function, _ = spec_function(
                context.scope,
                "Function",
                spec,
                code=extension_code(spec.code_dir),
                defaults=stack.functions.defaults,
                environment=stack.functions.environment,
            )
            self._wire_function(stack, name, function, permissions)
            functions[stack.region_name] = function
            return targets.LambdaFunction(
                function,
                dead_letter_queue=context.dead_letter_queue,
                retry_attempts=context.retry_attempts,
                max_event_age=context.max_event_age,
            )

        self.add_bus_consumer(name, target, detail_types=detail_types)
        return functions

    # ---- the built-in handlers --------------------------------------------
    def builtin_function(self, region: str, name: str) -> lambda_.Function:
        """One built-in function (``ClientMessageHandler``, ``Authorizer``, ...) of ``region``."""
        functions = self.stacks[region].builtin_functions
        if name not in functions:
            raise ValueError(f"no built-in function {name!r}; functions: {sorted(functions)}")
        return functions[name]

    def add_environment(self, function_name: str, key: str, value: str) -> None:
        """Set ``key`` in built-in function ``function_name``'s environment in every region.

        The runtime's own variables (docs/contracts.md;
        :data:`infra.runtime_contract.RUNTIME_VARIABLES`) are refused: change
        them through ``ChatConfig``.
        """
        if key in RUNTIME_VARIABLES:
            raise ValueError(f"{key} belongs to the runtime contract; set it via ChatConfig")
        for region in self.stacks:
            self.builtin_function(region, function_name).add_environment(key, value)

    def grant(self, function_name: str, permissions: Grant) -> None:
        """Call ``permissions(stack, function)`` for built-in ``function_name`` in every region."""
        for region, stack in self.stacks.items():
            permissions(stack, self.builtin_function(region, function_name))

    def add_to_role_policy(
        self, function_name: str, statement: Callable[[ChatRegionStack], iam.PolicyStatement]
    ) -> None:
        """Add ``statement(stack)`` to built-in ``function_name``'s role in every region."""
        self.grant(function_name, lambda stack, fn: fn.add_to_role_policy(statement(stack)))

    # ---- the server API ---------------------------------------------------
    def grant_publish(self, role_arn: str, *, regions: Iterable[str] | None = None) -> None:
        """Let the role ``role_arn`` publish through the server API of ``regions`` (default all).

        HTTP APIs have no resource policy, so the permission is a policy on the
        role: one per region, created in that region's stack (the API ids are
        per-region values, and CloudFormation cannot reference across regions).
        Publishing in one region reaches every region (the bus replicates it);
        grant two or more for failover. A role of another account is refused
        (ValueError; :func:`infra.server_api.check_grantee_account`).
        """
        self._grant_server_api(
            role_arn, regions, "Publisher", ChatServerApi.grant_publish, "/server/rooms/*"
        )

    def grant_disconnect(self, role_arn: str, *, regions: Iterable[str] | None = None) -> None:
        """Let the role ``role_arn`` disconnect users through the server API of ``regions``."""
        self._grant_server_api(
            role_arn, regions, "Disconnector", ChatServerApi.grant_disconnect, "/server/users/*"
        )

    def _grant_server_api(
        self,
        role_arn: str,
        regions: Iterable[str] | None,
        kind: str,
        grant: Callable[[ChatServerApi, iam.IGrantable], iam.Grant],
        path: str,
    ) -> None:
        for region in regions if regions is not None else self.config.regions:
            stack = self.stacks[region]
            check_grantee_account(stack, role_arn)
            scope = self._grant_scopes.get(region)
            if scope is None:
                scope = self._grant_scopes[region] = Construct(stack, "ServerApiGrants")
            # Imported by ARN in each region's stack: the policy it gets lives there.
            role = iam.Role.from_role_arn(scope, f"{kind}{len(scope.node.children) + 1}", role_arn)
            grant(stack.server_api, role)
            # The grant is a Policy the imported role gets as a child; acknowledge on it.
            for policy in role.node.children:
                if isinstance(policy, iam.Policy):
                    acknowledge_server_api_grant(stack, policy, path)

    # ---- helpers ------------------------------------------------------------
    def _check_name(self, name: str) -> None:
        if not _NAME.fullmatch(name):
            raise ValueError(f"name {name!r} does not match {_NAME.pattern}")
        if name in self.client_routes or name in self.bus_consumers:
            raise ValueError(f"{name!r} is already added")
        if name in self.primary_stack.builtin_functions:
            raise ValueError(f"{name!r} is a built-in function")

    @staticmethod
    def _wire_function(
        stack: ChatRegionStack, name: str, function: lambda_.Function, permissions: Grant | None
    ) -> None:
        if permissions is not None:
            permissions(stack, function)
        acknowledge_function(function)
        stack.monitoring.add_function_alarms(name, function)
        stack.apply_memory_override(name, function)
        for alarm_id in (f"{name}Errors", f"{name}Throttles"):
            stack.apply_alarm_override(alarm_id)


def _region_stack(scope: Construct) -> ChatRegionStack:
    stack = Stack.of(scope)
    assert isinstance(stack, ChatRegionStack)
    return stack
