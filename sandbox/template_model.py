"""Turns one regional template into what the sandbox runs: functions, APIs, tables, rules.

Only resources the local services use are resolved (a custom resource or an alarm elsewhere in
the template never stops the sandbox); anything a route, authorizer or rule needs and the
sandbox cannot provide stops it with a message that names the resource.
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import storage_model
from sandbox.assembly import StackArtifact
from sandbox.errors import SandboxError
from sandbox.resolver import StackResolver
from sandbox.storage_model import BucketSpec, CustomResourceSpec

_LAMBDA_ARN = re.compile(
    r"^arn:[a-z-]+:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d+):function:(?P<name>[^:]+)"
    r"(?::(?P<qualifier>[^:]+))?$"
)
_INTEGRATION_URI = re.compile(
    r"^arn:[a-z-]+:apigateway:[a-z0-9-]+:lambda:path/[0-9-]+/functions/(?P<arn>.+)/invocations$"
)
_SQS_ARN = re.compile(r"^arn:[a-z-]+:sqs:(?P<region>[a-z0-9-]+):(?P<account>\d+):(?P<name>[^:]+)$")
_BUS_ARN = re.compile(
    r"^arn:[a-z-]+:events:(?P<region>[a-z0-9-]+):(?P<account>\d+):event-bus/(?P<name>.+)$"
)


@dataclass(frozen=True)
class TemplateFunction:
    """An ``AWS::Lambda::Function`` of the template, as the sandbox runs it."""

    logical_id: str
    name: str
    arn: str
    region: str
    handler: str
    runtime: str
    code_dir: Path | None  # None: inline code in ``inline_code``
    inline_code: str | None
    environment: dict[str, str]
    # Timeout and MemorySize as the template has them (Lambda's defaults: 3 s, 128 MB).
    timeout_seconds: int
    memory_size: int  # MB
    # ReservedConcurrentExecutions: at most this many invocations at once (None: no cap)
    reserved_concurrency: int | None = None
    # The secrets the function's role may read: the resolved Resource of every
    # secretsmanager:GetSecretValue statement of the IAM policies on its role
    # (ARNs, or ARN patterns such as arn:...:secret:<name>-??????).
    readable_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueSpec:
    """An ``AWS::SQS::Queue``, created in moto with the attributes SQS would give it."""

    logical_id: str
    name: str
    url: str  # as the template resolves it: https://sqs.<region>.amazonaws.com/<account>/<name>
    arn: str
    attributes: dict[str, str]  # CreateQueue Attributes, without RedrivePolicy
    dead_letter_arn: str | None = None
    max_receive_count: int | None = None
    fifo: bool = False

    @property
    def visibility_timeout(self) -> int:
        return int(self.attributes.get("VisibilityTimeout", "30"))


@dataclass(frozen=True)
class EventSourceMappingSpec:
    """An ``AWS::Lambda::EventSourceMapping`` from an SQS queue of the stack."""

    logical_id: str
    function: str  # logical id
    queue: str  # logical id of the queue
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    report_batch_item_failures: bool = False
    maximum_concurrency: int | None = None  # ScalingConfig.MaximumConcurrency
    enabled: bool = True


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    create_args: dict[str, Any]  # keyword arguments of DynamoDB CreateTable
    ttl_attribute: str | None


@dataclass(frozen=True)
class AuthorizerSpec:
    logical_id: str
    function: str  # logical id of the authorizer function
    kind: str  # REQUEST or JWT
    identity_sources: tuple[str, ...]
    simple_responses: bool = False
    payload_version: str = "1.0"


@dataclass(frozen=True)
class RouteSpec:
    route_key: str
    logical_id: str
    function: str  # logical id of the integration's function
    integration: str  # logical id of the integration
    return_response: bool
    authorizer: AuthorizerSpec | None
    payload_version: str = "1.0"
    iam: bool = False  # AuthorizationType AWS_IAM: callers sign with SigV4


@dataclass
class ApiSpec:
    logical_id: str
    api_id: str
    name: str
    protocol: str  # WEBSOCKET or HTTP
    stage: str
    aws_endpoint: str  # wss://<id>.execute-api.<region>.amazonaws.com (or https://)
    route_selection_expression: str
    routes: dict[str, RouteSpec] = field(default_factory=dict)
    cors: dict[str, Any] | None = None  # an HTTP API's CorsConfiguration


@dataclass(frozen=True)
class TargetSpec:
    target_id: str
    arn: str
    kind: str  # lambda, bus or unsupported
    function: str | None = None  # logical id (lambda)
    bus_region: str | None = None  # (bus)
    bus_name: str | None = None  # (bus)
    input: str | None = None
    input_path: str | None = None
    input_transformer: dict[str, Any] | None = None
    max_retries: int = 185
    max_age_seconds: int = 86400
    dead_letter_arn: str | None = None


@dataclass(frozen=True)
class RuleSpec:
    logical_id: str
    name: str
    bus_name: str
    pattern: dict[str, Any]
    enabled: bool
    targets: tuple[TargetSpec, ...]


@dataclass(frozen=True)
class SecretSpec:
    logical_id: str
    name: str
    arn: str
    secret_string: str | None
    generate: dict[str, Any] | None
    # ReplicaRegions: Secrets Manager keeps a copy of the same value there.
    replica_regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParameterSpec:
    logical_id: str
    name: str
    value: str
    kind: str


@dataclass
class RegionModel:
    region: str
    stack: StackArtifact
    functions: dict[str, TemplateFunction] = field(default_factory=dict)
    tables: list[TableSpec] = field(default_factory=list)
    websocket: ApiSpec | None = None
    http: ApiSpec | None = None
    buses: list[str] = field(default_factory=list)
    rules: list[RuleSpec] = field(default_factory=list)
    secrets: list[SecretSpec] = field(default_factory=list)
    parameters: list[ParameterSpec] = field(default_factory=list)
    # AWS::Lambda::EventInvokeConfig MaximumRetryAttempts per function (Lambda's default: 2)
    async_retries: dict[str, int] = field(default_factory=dict)
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    mappings: list[EventSourceMappingSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The stack's Outputs whose values resolve locally (the others are left out).
    outputs: dict[str, Any] = field(default_factory=dict)
    buckets: list[BucketSpec] = field(default_factory=list)
    custom_resources: list[CustomResourceSpec] = field(default_factory=list)

    @property
    def authorizers(self) -> list[AuthorizerSpec]:
        found: dict[str, AuthorizerSpec] = {}
        for api in (self.websocket, self.http):
            for route in api.routes.values() if api else []:
                if route.authorizer:
                    found[route.authorizer.logical_id] = route.authorizer
        return list(found.values())


def build_models(stacks: list[StackArtifact], regions: list[str] | None) -> list[RegionModel]:
    """One model per region (one regional stack each), in the order of ``regions``."""
    by_region: dict[str, list[StackArtifact]] = {}
    for stack in stacks:
        by_region.setdefault(stack.region, []).append(stack)
    wanted = regions if regions else list(by_region)
    missing = [region for region in wanted if region not in by_region]
    if missing:
        raise SandboxError(
            f"--regions: no stack in {', '.join(missing)}; the assembly has "
            f"{', '.join(by_region) or 'none'}"
        )
    exports = _Exports(stacks)
    models = []
    for region in wanted:
        candidates = by_region[region]
        serving = [s for s in candidates if _has_api(s.template)]
        if len(serving) > 1:
            names = ", ".join(s.name for s in serving)
            raise SandboxError(
                f"region {region}: several stacks define APIs ({names}); the sandbox runs "
                "one regional stack per region"
            )
        stack = serving[0] if serving else candidates[0]
        models.append(ModelBuilder(stack, exports).build())
    return models


def _has_api(template: dict[str, Any]) -> bool:
    return any(
        r.get("Type") == "AWS::ApiGatewayV2::Api"
        for r in (template.get("Resources") or {}).values()
    )


class _Exports:
    """Fn::ImportValue across the assembly's stacks (same region, as in CloudFormation)."""

    def __init__(self, stacks: list[StackArtifact]) -> None:
        self._stacks = stacks

    def __call__(self, name: str, where: str) -> Any:
        for stack in self._stacks:
            for output_id, output in (stack.template.get("Outputs") or {}).items():
                export = (output.get("Export") or {}).get("Name")
                if export is None:
                    continue
                resolver = StackResolver(stack)
                if resolver.resolve(export, f"output {output_id}") == name:
                    return resolver.resolve(output.get("Value"), f"output {output_id}")
        raise SandboxError(f"{where}: Fn::ImportValue {name!r}: no stack exports it")


class ModelBuilder:
    def __init__(self, stack: StackArtifact, exports: _Exports | None = None) -> None:
        self.stack = stack
        self.r = StackResolver(stack, exports)
        self.model = RegionModel(region=stack.region, stack=stack)
        self._function_by_arn: dict[str, str] = {}
        self._function_by_name: dict[str, str] = {}
        for logical_id in self.r.of_type("AWS::Lambda::Function"):
            physical = self.r.physical(logical_id)
            self._function_by_arn[physical.attrs["Arn"]] = logical_id
            self._function_by_name[physical.name] = logical_id

    def build(self) -> RegionModel:
        self._tables()
        apis = self.r.of_type("AWS::ApiGatewayV2::Api")
        for logical_id in apis:
            api = self._api(logical_id)
            slot = "websocket" if api.protocol == "WEBSOCKET" else "http"
            current = getattr(self.model, slot)
            if current is not None:
                raise SandboxError(
                    f"{self.r.where(logical_id)}: a second {api.protocol} API in one region "
                    f"(the first is {current.logical_id}); the sandbox serves one of each"
                )
            setattr(self.model, slot, api)
        self._buses_and_rules()
        self._queues_and_mappings()
        self._event_invoke_configs()
        self._secrets_and_parameters()
        self.model.buckets = storage_model.buckets(self)
        self.model.custom_resources = storage_model.custom_resources(self)
        self._check_permissions()
        self._outputs()
        return self.model

    def _outputs(self) -> None:
        for output_id, output in (self.stack.template.get("Outputs") or {}).items():
            try:
                value = self.r.resolve(output.get("Value"), f"output {output_id}")
            except SandboxError:
                continue
            self.model.outputs[output_id] = value

    # ----------------------------------------------------------------- functions

    def function_for_arn(self, arn: str, where: str) -> str:
        match = _LAMBDA_ARN.match(arn)
        if not match:
            raise SandboxError(f"{where}: {arn!r} is not a Lambda function ARN")
        base = arn.rsplit(":", 1)[0] if match.group("qualifier") else arn
        logical_id = self._function_by_arn.get(base)
        if logical_id is None:
            raise SandboxError(
                f"{where}: targets function {match.group('name')} ({arn}), which is not a "
                f"function of stack {self.stack.name}"
            )
        self._function(logical_id)
        return logical_id

    def _function(self, logical_id: str) -> TemplateFunction:
        if logical_id in self.model.functions:
            return self.model.functions[logical_id]
        r = self.r
        where = r.where(logical_id)
        resource = r.resources[logical_id]
        runtime = str(r.prop(logical_id, "Runtime", ""))
        if not runtime.startswith("python"):
            raise SandboxError(
                f"{where}: runtime {runtime or '(container image)'}: the sandbox runs Python "
                "handlers only"
            )
        handler = r.prop(logical_id, "Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise SandboxError(f"{where}: Handler {handler!r} is not <module>.<function>")
        code = r.prop(logical_id, "Code") or {}
        inline = code.get("ZipFile") if isinstance(code, dict) else None
        code_dir: Path | None = None
        if inline is None:
            asset = (resource.get("Metadata") or {}).get("aws:asset:path")
            if not asset:
                raise SandboxError(
                    f"{where}: no local code (no aws:asset:path metadata and no inline "
                    "Code.ZipFile); synthesize with asset metadata on"
                )
            code_dir = (self.stack.assembly_dir / asset).resolve()
            if not code_dir.is_dir():
                raise SandboxError(f"{where}: asset folder {code_dir} does not exist")
        variables = (r.prop(logical_id, "Environment") or {}).get("Variables") or {}
        environment = {str(k): _env_text(v) for k, v in variables.items()}
        physical = r.physical(logical_id)
        spec = TemplateFunction(
            logical_id=logical_id,
            name=physical.name,
            arn=physical.attrs["Arn"],
            region=self.model.region,
            handler=handler,
            runtime=runtime,
            code_dir=code_dir,
            inline_code=str(inline) if inline is not None else None,
            environment=environment,
            timeout_seconds=int(r.prop(logical_id, "Timeout", 3)),
            memory_size=int(r.prop(logical_id, "MemorySize", 128)),
            reserved_concurrency=_optional_int(r.prop(logical_id, "ReservedConcurrentExecutions")),
            readable_secrets=self._readable_secrets(logical_id),
        )
        self.model.functions[logical_id] = spec
        return spec

    def _readable_secrets(self, function_id: str) -> tuple[str, ...]:
        """What the function's role may GetSecretValue on (see TemplateFunction.readable_secrets).

        Read from the template's own references: the function's ``Role`` (a
        ``Fn::GetAtt`` of a role of the stack) and the ``AWS::IAM::Policy``
        resources whose ``Roles`` name that role. A statement whose resources do
        not resolve is skipped (IAM is not emulated; this only finds secrets).
        """
        r = self.r
        role = (r.resources[function_id].get("Properties") or {}).get("Role")
        role_id = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        if not isinstance(role_id, str):
            return ()
        found: list[str] = []
        for policy_id in r.of_type("AWS::IAM::Policy"):
            raw = r.resources[policy_id].get("Properties") or {}
            if {"Ref": role_id} not in (raw.get("Roles") or []):
                continue
            for index, statement in enumerate(
                (raw.get("PolicyDocument") or {}).get("Statement") or []
            ):
                actions = statement.get("Action")
                actions = [actions] if isinstance(actions, str) else actions or []
                if statement.get("Effect") != "Allow" or not any(
                    fnmatch.fnmatchcase("secretsmanager:GetSecretValue", a) for a in actions
                ):
                    continue
                try:
                    resources = r.resolve(
                        statement.get("Resource"),
                        r.where(policy_id, f"PolicyDocument.Statement[{index}].Resource"),
                    )
                except SandboxError:
                    continue
                resources = [resources] if isinstance(resources, str) else resources or []
                found.extend(str(resource) for resource in resources)
        return tuple(found)

    # ----------------------------------------------------------------- tables

    def _tables(self) -> None:
        r = self.r
        for logical_id in r.of_type("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
            where = r.where(logical_id)
            key_schema = r.prop(logical_id, "KeySchema")
            attributes = r.prop(logical_id, "AttributeDefinitions")
            if not key_schema or not attributes:
                raise SandboxError(f"{where}: table without KeySchema/AttributeDefinitions")
            args: dict[str, Any] = {
                "TableName": r.physical(logical_id).name,
                "KeySchema": key_schema,
                "AttributeDefinitions": attributes,
                "BillingMode": "PAY_PER_REQUEST",  # capacity is not emulated
            }
            gsis = [
                {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                for index in r.prop(logical_id, "GlobalSecondaryIndexes", [])
            ]
            lsis = [
                {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                for index in r.prop(logical_id, "LocalSecondaryIndexes", [])
            ]
            if gsis:
                args["GlobalSecondaryIndexes"] = gsis
            if lsis:
                args["LocalSecondaryIndexes"] = lsis
            stream = r.prop(logical_id, "StreamSpecification")
            if stream and stream.get("StreamViewType"):
                args["StreamSpecification"] = {
                    "StreamEnabled": True,
                    "StreamViewType": stream["StreamViewType"],
                }
            ttl = r.prop(logical_id, "TimeToLiveSpecification") or {}
            ttl_attribute = ttl.get("AttributeName") if ttl.get("Enabled", True) else None
            self.model.tables.append(TableSpec(logical_id, args["TableName"], args, ttl_attribute))

    # ----------------------------------------------------------------- APIs

    def _api(self, logical_id: str) -> ApiSpec:
        r = self.r
        where = r.where(logical_id)
        physical = r.physical(logical_id)
        protocol = str(r.prop(logical_id, "ProtocolType", "HTTP"))
        if r.prop(logical_id, "Body") or r.prop(logical_id, "BodyS3Location"):
            raise SandboxError(f"{where}: APIs defined by an OpenAPI body are not emulated")
        stages = [
            s for s in r.of_type("AWS::ApiGatewayV2::Stage") if r.prop(s, "ApiId") == physical.ref
        ]
        if not stages:
            raise SandboxError(f"{where}: the {protocol} API has no AWS::ApiGatewayV2::Stage")
        if len(stages) > 1:
            self.model.warnings.append(
                f"{where}: several stages; serving {r.prop(stages[0], 'StageName')}"
            )
        api = ApiSpec(
            logical_id=logical_id,
            api_id=physical.ref,
            name=physical.name,
            protocol=protocol,
            stage=str(r.prop(stages[0], "StageName")),
            aws_endpoint=physical.attrs["ApiEndpoint"],
            route_selection_expression=str(
                r.prop(logical_id, "RouteSelectionExpression", "${request.method} ${request.path}")
            ),
        )
        if protocol == "HTTP":
            api.cors = r.prop(logical_id, "CorsConfiguration")
        integrations = {
            r.physical(i).ref: i
            for i in r.of_type("AWS::ApiGatewayV2::Integration")
            if r.prop(i, "ApiId") == api.api_id
        }
        authorizers = {
            r.physical(a).ref: a
            for a in r.of_type("AWS::ApiGatewayV2::Authorizer")
            if r.prop(a, "ApiId") == api.api_id
        }
        route_ids: dict[str, str] = {}
        for route_id in r.of_type("AWS::ApiGatewayV2::Route"):
            if r.prop(route_id, "ApiId") != api.api_id:
                continue
            route_ids[r.physical(route_id).ref] = route_id
        with_responses = {
            r.prop(rr, "RouteId")
            for rr in r.of_type("AWS::ApiGatewayV2::RouteResponse")
            if r.prop(rr, "ApiId") == api.api_id
        }
        for physical_route, route_id in route_ids.items():
            route = self._route(
                api, route_id, integrations, authorizers, physical_route in with_responses
            )
            if route.route_key in api.routes:
                raise SandboxError(f"{r.where(route_id)}: duplicate route {route.route_key!r}")
            api.routes[route.route_key] = route
        if protocol == "WEBSOCKET" and not api.route_selection_expression.startswith(
            "$request.body."
        ):
            raise SandboxError(
                f"{where}: RouteSelectionExpression {api.route_selection_expression!r} is not "
                "emulated (the sandbox supports $request.body.<field>)"
            )
        return api

    def _route(
        self,
        api: ApiSpec,
        route_id: str,
        integrations: dict[str, str],
        authorizers: dict[str, str],
        has_response: bool,
    ) -> RouteSpec:
        r = self.r
        key = str(r.prop(route_id, "RouteKey"))
        where = r.where(route_id, f"(route {key!r} of API {api.logical_id})")
        target = r.prop(route_id, "Target")
        if not isinstance(target, str) or not target.startswith("integrations/"):
            raise SandboxError(f"{where}: Target {target!r} is not integrations/<id>")
        integration_ref = target.split("/", 1)[1]
        integration = integrations.get(integration_ref)
        if integration is None:
            raise SandboxError(
                f"{where}: Target names integration {integration_ref!r}, "
                f"which is not an integration of API {api.logical_id}"
            )
        kind = r.prop(integration, "IntegrationType")
        if kind != "AWS_PROXY":
            raise SandboxError(
                f"{r.where(integration)}: IntegrationType {kind} is not emulated "
                "(the sandbox runs Lambda proxy integrations)"
            )
        uri = str(r.prop(integration, "IntegrationUri", ""))
        match = _INTEGRATION_URI.match(uri)
        function_arn = match.group("arn") if match else uri
        function = self.function_for_arn(function_arn, r.where(integration, f"(route {key!r})"))
        authorizer = None
        authorization = r.prop(route_id, "AuthorizationType", "NONE")
        if authorization in ("CUSTOM", "JWT"):
            authorizer_ref = r.prop(route_id, "AuthorizerId")
            authorizer_id = authorizers.get(str(authorizer_ref))
            if authorizer_id is None:
                raise SandboxError(f"{where}: AuthorizerId {authorizer_ref!r} is unknown")
            authorizer = self._authorizer(authorizer_id)
        elif authorization not in ("NONE", "AWS_IAM", None):
            self.model.warnings.append(f"{where}: AuthorizationType {authorization} not emulated")
        return_response = has_response or (
            r.prop(route_id, "RouteResponseSelectionExpression") is not None
        )
        return RouteSpec(
            route_key=key,
            logical_id=route_id,
            function=function,
            integration=integration,
            return_response=return_response,
            authorizer=authorizer,
            payload_version=str(r.prop(integration, "PayloadFormatVersion", "1.0")),
            iam=authorization == "AWS_IAM",
        )

    def _authorizer(self, logical_id: str) -> AuthorizerSpec:
        r = self.r
        kind = str(r.prop(logical_id, "AuthorizerType"))
        sources = tuple(str(s) for s in r.prop(logical_id, "IdentitySource", []) or [])
        if kind == "JWT":
            self.model.warnings.append(
                f"{r.where(logical_id)}: JWT authorizers are not emulated; requests pass"
            )
            return AuthorizerSpec(logical_id, "", kind, sources)
        if kind != "REQUEST":
            raise SandboxError(f"{r.where(logical_id)}: AuthorizerType {kind} is not emulated")
        uri = str(r.prop(logical_id, "AuthorizerUri", ""))
        match = _INTEGRATION_URI.match(uri)
        function = self.function_for_arn(
            match.group("arn") if match else uri, r.where(logical_id, "AuthorizerUri")
        )
        return AuthorizerSpec(
            logical_id,
            function,
            kind,
            sources,
            simple_responses=bool(r.prop(logical_id, "EnableSimpleResponses", False)),
            payload_version=str(r.prop(logical_id, "AuthorizerPayloadFormatVersion", "1.0")),
        )

    # ----------------------------------------------------------------- EventBridge

    def _buses_and_rules(self) -> None:
        r = self.r
        buses = ["default"]
        for logical_id in r.of_type("AWS::Events::EventBus"):
            buses.append(r.physical(logical_id).name)
        self.model.buses = buses
        for logical_id in r.of_type("AWS::Events::Rule"):
            where = r.where(logical_id)
            pattern = r.prop(logical_id, "EventPattern")
            if pattern is None:
                if r.prop(logical_id, "ScheduleExpression"):
                    self.model.warnings.append(f"{where}: scheduled rules are not emulated")
                continue
            if isinstance(pattern, str):
                try:
                    pattern = json.loads(pattern)
                except ValueError as exc:
                    raise SandboxError(f"{where}: EventPattern is not JSON") from exc
            if not isinstance(pattern, dict):
                raise SandboxError(f"{where}: EventPattern is not an object")
            bus = str(r.prop(logical_id, "EventBusName", "default"))
            bus_match = _BUS_ARN.match(bus)
            bus_name = bus_match.group("name") if bus_match else bus
            if bus_name not in buses:
                raise SandboxError(f"{where}: EventBusName {bus!r} is not a bus of this stack")
            targets = tuple(
                self._target(logical_id, index, target)
                for index, target in enumerate(r.prop(logical_id, "Targets", []) or [])
            )
            self.model.rules.append(
                RuleSpec(
                    logical_id=logical_id,
                    name=r.physical(logical_id).name,
                    bus_name=bus_name,
                    pattern=pattern,
                    enabled=r.prop(logical_id, "State", "ENABLED") == "ENABLED",
                    targets=targets,
                )
            )

    def _target(self, rule_id: str, index: int, target: dict[str, Any]) -> TargetSpec:
        where = self.r.where(rule_id, f"Targets[{index}]")
        arn = str(target.get("Arn", ""))
        retry = target.get("RetryPolicy") or {}
        common: dict[str, Any] = {
            "target_id": str(target.get("Id", index)),
            "arn": arn,
            "input": target.get("Input"),
            "input_path": target.get("InputPath"),
            "input_transformer": target.get("InputTransformer"),
            "max_retries": int(retry.get("MaximumRetryAttempts", 185)),
            "max_age_seconds": int(retry.get("MaximumEventAgeInSeconds", 86400)),
            "dead_letter_arn": (target.get("DeadLetterConfig") or {}).get("Arn"),
        }
        if _LAMBDA_ARN.match(arn):
            return TargetSpec(kind="lambda", function=self.function_for_arn(arn, where), **common)
        bus = _BUS_ARN.match(arn)
        if bus:
            return TargetSpec(
                kind="bus", bus_region=bus.group("region"), bus_name=bus.group("name"), **common
            )
        self.model.warnings.append(
            f"{where}: target {arn} is not emulated (events to it are counted and dropped)"
        )
        return TargetSpec(kind="unsupported", **common)

    # ----------------------------------------------------------------- SQS

    def _queues_and_mappings(self) -> None:
        """Queues (all of them, in moto) and the SQS event source mappings that poll them.

        A queue no mapping reads is created when its properties resolve and skipped with a
        warning otherwise (it must not stop the sandbox, like an alarm elsewhere); a mapping's
        queue, function and settings must resolve.
        """
        r = self.r
        mapped: dict[str, list[str]] = {}  # queue ARN -> mapping logical ids
        raw_mappings = r.of_type("AWS::Lambda::EventSourceMapping")
        for logical_id in raw_mappings:
            source = str(r.prop(logical_id, "EventSourceArn", ""))
            mapped.setdefault(source, []).append(logical_id)
        for logical_id in r.of_type("AWS::SQS::Queue"):
            arn = r.physical(logical_id).attrs["Arn"]
            try:
                self.model.queues[logical_id] = self._queue(logical_id)
            except SandboxError as error:
                if arn in mapped:
                    raise
                self.model.warnings.append(f"{error} (the queue is not created)")
        by_arn = {queue.arn: queue for queue in self.model.queues.values()}
        for queue in self.model.queues.values():
            if queue.dead_letter_arn and queue.dead_letter_arn not in by_arn:
                self.model.warnings.append(
                    f"{r.where(queue.logical_id)}: RedrivePolicy names {queue.dead_letter_arn}, "
                    "not a queue of this stack: messages are never moved to a DLQ"
                )
        for logical_id in raw_mappings:
            mapping = self._mapping(logical_id, by_arn)
            if mapping is not None:
                self.model.mappings.append(mapping)

    def _queue(self, logical_id: str) -> QueueSpec:
        r = self.r
        physical = r.physical(logical_id)
        attributes: dict[str, str] = {}
        for name in (
            "VisibilityTimeout",
            "DelaySeconds",
            "MessageRetentionPeriod",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
        ):
            value = r.prop(logical_id, name)
            if value is not None:
                attributes[name] = str(int(value))
        fifo = bool(r.prop(logical_id, "FifoQueue", False))
        if fifo:
            attributes["FifoQueue"] = "true"
            if r.prop(logical_id, "ContentBasedDeduplication", False):
                attributes["ContentBasedDeduplication"] = "true"
        redrive = r.prop(logical_id, "RedrivePolicy")
        if isinstance(redrive, str):
            try:
                redrive = json.loads(redrive)
            except ValueError as exc:
                raise SandboxError(f"{r.where(logical_id)}: RedrivePolicy is not JSON") from exc
        dead_letter_arn = max_receive = None
        if redrive:
            if not isinstance(redrive, dict) or "deadLetterTargetArn" not in redrive:
                raise SandboxError(
                    f"{r.where(logical_id, 'Properties.RedrivePolicy')}: no deadLetterTargetArn"
                )
            dead_letter_arn = str(redrive["deadLetterTargetArn"])
            max_receive = int(redrive.get("maxReceiveCount", 10))
        return QueueSpec(
            logical_id=logical_id,
            name=physical.name,
            url=physical.attrs["QueueUrl"],
            arn=physical.attrs["Arn"],
            attributes=attributes,
            dead_letter_arn=dead_letter_arn,
            max_receive_count=max_receive,
            fifo=fifo,
        )

    def _mapping(
        self, logical_id: str, queues: dict[str, QueueSpec]
    ) -> EventSourceMappingSpec | None:
        r = self.r
        where = r.where(logical_id)
        source = str(r.prop(logical_id, "EventSourceArn", ""))
        if not _SQS_ARN.match(source):
            self.model.warnings.append(
                f"{where}: event source {source or '(none)'} is not emulated (only SQS queues)"
            )
            return None
        queue = queues.get(source)
        if queue is None:
            raise SandboxError(
                f"{where}: EventSourceArn {source} is not a queue of stack {self.stack.name}"
            )
        function = self._function_for_name_or_arn(
            str(r.prop(logical_id, "FunctionName", "")), r.where(logical_id, "FunctionName")
        )
        if r.prop(logical_id, "FilterCriteria"):
            self.model.warnings.append(f"{where}: FilterCriteria is not emulated (no filtering)")
        if queue.fifo:
            self.model.warnings.append(
                f"{where}: {queue.name} is a FIFO queue; the sandbox polls it like a standard "
                "queue (message-group order is not kept across concurrent batches)"
            )
        spec = self.model.functions[function]
        if queue.visibility_timeout < spec.timeout_seconds:
            self.model.warnings.append(
                f"{where}: queue {queue.name} VisibilityTimeout {queue.visibility_timeout}s is "
                f"less than function {function} Timeout {spec.timeout_seconds}s; "
                "AWS refuses this mapping"
            )
        scaling = r.prop(logical_id, "ScalingConfig") or {}
        response_types = r.prop(logical_id, "FunctionResponseTypes") or []
        return EventSourceMappingSpec(
            logical_id=logical_id,
            function=function,
            queue=queue.logical_id,
            batch_size=int(r.prop(logical_id, "BatchSize", 10)),
            batching_window_seconds=float(r.prop(logical_id, "MaximumBatchingWindowInSeconds", 0)),
            report_batch_item_failures="ReportBatchItemFailures" in response_types,
            maximum_concurrency=_optional_int(scaling.get("MaximumConcurrency")),
            enabled=bool(r.prop(logical_id, "Enabled", True)),
        )

    def _function_for_name_or_arn(self, value: str, where: str) -> str:
        """EventSourceMapping's FunctionName: a name, an ARN or a partial ARN, maybe qualified."""
        if value.startswith("arn:"):
            return self.function_for_arn(value, where)
        parts = value.split(":")
        name = parts[parts.index("function") + 1] if "function" in parts[:-1] else parts[0]
        logical_id = self._function_by_name.get(name)
        if logical_id is None:
            raise SandboxError(f"{where}: {value!r} is not a function of stack {self.stack.name}")
        self._function(logical_id)
        return logical_id

    def _event_invoke_configs(self) -> None:
        r = self.r
        for logical_id in r.of_type("AWS::Lambda::EventInvokeConfig"):
            target = str(r.prop(logical_id, "FunctionName", ""))
            retries = r.prop(logical_id, "MaximumRetryAttempts")
            for function_id, spec in self.model.functions.items():
                if retries is not None and target in (spec.name, spec.arn):
                    self.model.async_retries[function_id] = int(retries)

    # ----------------------------------------------------------------- secrets, parameters

    def _secrets_and_parameters(self) -> None:
        r = self.r
        for logical_id in r.of_type("AWS::SecretsManager::Secret"):
            physical = r.physical(logical_id)
            self.model.secrets.append(
                SecretSpec(
                    logical_id=logical_id,
                    name=physical.name,
                    arn=physical.ref,
                    secret_string=r.prop(logical_id, "SecretString"),
                    generate=r.prop(logical_id, "GenerateSecretString"),
                    replica_regions=tuple(
                        str(replica.get("Region"))
                        for replica in r.prop(logical_id, "ReplicaRegions", []) or []
                        if isinstance(replica, dict) and replica.get("Region")
                    ),
                )
            )
        for logical_id in r.of_type("AWS::SSM::Parameter"):
            self.model.parameters.append(
                ParameterSpec(
                    logical_id=logical_id,
                    name=r.physical(logical_id).name,
                    value=_env_text(r.prop(logical_id, "Value", "")),
                    kind=str(r.prop(logical_id, "Type", "String")),
                )
            )

    def _check_permissions(self) -> None:
        """Warn when AWS would refuse to invoke a function the way the template wires it."""
        r = self.r
        granted: set[tuple[str, str]] = set()
        for logical_id in r.of_type("AWS::Lambda::Permission"):
            granted_to = str(r.prop(logical_id, "FunctionName", ""))
            principal = str(r.prop(logical_id, "Principal", ""))
            for function_id, spec in self.model.functions.items():
                if granted_to in (spec.arn, spec.name) or granted_to.startswith(spec.arn + ":"):
                    granted.add((function_id, principal))
        needs: set[tuple[str, str]] = set()
        for api in (self.model.websocket, self.model.http):
            for route in api.routes.values() if api else []:
                needs.add((route.function, "apigateway.amazonaws.com"))
                if route.authorizer and route.authorizer.function:
                    needs.add((route.authorizer.function, "apigateway.amazonaws.com"))
        for rule in self.model.rules:
            for target in rule.targets:
                if target.function:
                    needs.add((target.function, "events.amazonaws.com"))
        for function_id, principal in sorted(needs - granted):
            self.model.warnings.append(
                f"{r.where(function_id)}: no AWS::Lambda::Permission lets {principal} invoke "
                "it; AWS would refuse these invocations (the sandbox runs them anyway)"
            )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))
