"""Resolves CloudFormation intrinsic functions in a synthesized template, locally.

Every resource gets a deterministic local physical id: its explicit name property when the
template sets one, otherwise ``<stackName>-<LogicalId>`` (shortened with a hash when a service
limit requires it). ARNs use account ``000000000000`` and partition ``aws``; API ids are short
hashes. Supported: Ref, Fn::GetAtt, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, Fn::If, Fn::Equals,
Fn::And, Fn::Or, Fn::Not, Condition, Fn::FindInMap, Fn::GetAZs, Fn::Base64, Fn::ImportValue,
Fn::ToJsonString, Fn::Length and the pseudo parameters. Anything else stops with a message that
names the stack, the resource and the property.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.assembly import StackArtifact
from sandbox.errors import SandboxError

ACCOUNT_ID = "000000000000"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"


class _NoValue:
    """``{"Ref": "AWS::NoValue"}``: the enclosing key or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def short_hash(text: str, length: int) -> str:
    """A deterministic lowercase alphanumeric id of ``length`` characters."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    number = int.from_bytes(hashlib.sha256(text.encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(alphabet))
        chars.append(alphabet[digit])
    return "".join(chars)


def bounded_name(name: str, limit: int) -> str:
    """``name`` if it fits ``limit``, else a prefix plus a hash of the whole (deterministic)."""
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}-{short_hash(name, 8)}"


@dataclass
class Physical:
    """A resource's local identity: what Ref returns and its Fn::GetAtt attributes."""

    ref: str
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)


# type -> (name property, length limit of generated names)
_NAME_PROPERTY: dict[str, tuple[str | None, int]] = {
    "AWS::Lambda::Function": ("FunctionName", 64),
    "AWS::DynamoDB::Table": ("TableName", 255),
    "AWS::DynamoDB::GlobalTable": ("TableName", 255),
    "AWS::Events::EventBus": ("Name", 256),
    "AWS::Events::Rule": ("Name", 64),
    "AWS::IAM::Role": ("RoleName", 64),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128),
    "AWS::IAM::Policy": ("PolicyName", 128),
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::Logs::LogGroup": ("LogGroupName", 512),
    "AWS::SecretsManager::Secret": ("Name", 256),
    "AWS::SSM::Parameter": ("Name", 1024),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255),
    "AWS::CloudWatch::Dashboard": ("DashboardName", 255),
    "AWS::ApiGatewayV2::Api": ("Name", 128),
    "AWS::S3::Bucket": ("BucketName", 63),
}


class StackResolver:
    """Resolves values of one stack's template to plain JSON values."""

    def __init__(
        self,
        stack: StackArtifact,
        import_value: Callable[[str, str], Any] | None = None,
    ) -> None:
        self.stack = stack
        self.region = stack.region
        self.template = stack.template
        self.resources: dict[str, dict[str, Any]] = self.template.get("Resources") or {}
        self._import_value = import_value
        self._physical: dict[str, Physical] = {}
        self._in_progress: set[str] = set()
        self._conditions: dict[str, bool] = {}
        self._parameters = self._resolve_parameters()

    # ----------------------------------------------------------------- public helpers

    def where(self, logical_id: str, path: str = "") -> str:
        suffix = f" {path}" if path else ""
        return f"stack {self.stack.name} ({self.region}) resource {logical_id}{suffix}"

    def exists(self, logical_id: str) -> bool:
        """The resource is in the template and its Condition (if any) holds."""
        resource = self.resources.get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(condition, self.where(logical_id))

    def of_type(self, *types: str) -> list[str]:
        """Logical ids of existing resources of the given types, in template order."""
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in types and self.exists(logical_id)
        ]

    def prop(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A resolved property of a resource (``default`` when absent)."""
        raw = (self.resources[logical_id].get("Properties") or {}).get(name, NO_VALUE)
        if raw is NO_VALUE:
            return default
        value = self.resolve(raw, self.where(logical_id, f"Properties.{name}"))
        return default if value is NO_VALUE else value

    def physical(self, logical_id: str, where: str = "") -> Physical:
        if logical_id in self._physical:
            return self._physical[logical_id]
        if not self.exists(logical_id):
            context = f" (referenced from {where})" if where else ""
            raise SandboxError(
                f"stack {self.stack.name} ({self.region}): no resource {logical_id}{context}"
            )
        if logical_id in self._in_progress:
            raise SandboxError(f"{self.where(logical_id)}: circular reference")
        self._in_progress.add(logical_id)
        try:
            physical = self._make_physical(logical_id)
        finally:
            self._in_progress.discard(logical_id)
        self._physical[logical_id] = physical
        return physical

    def local_name(self, logical_id: str, limit: int = 64) -> str:
        return bounded_name(f"{self.stack.stack_name}-{logical_id}", limit)

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        region = self.region if region is None else region
        return f"arn:{PARTITION}:{service}:{region}:{ACCOUNT_ID}:{resource}"

    # ----------------------------------------------------------------- resolution

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument, where)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument, where)
            if key.startswith("Fn::"):
                return self._function(key, argument, where)
        result = {}
        for key, item in value.items():
            resolved = self.resolve(item, f"{where}.{key}")
            if resolved is not NO_VALUE:
                result[key] = resolved
        return result

    def condition(self, name: str, where: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise SandboxError(f"{where}: unknown condition {name}")
        self._conditions[name] = False  # guards against cycles
        value = self.resolve(conditions[name], f"stack {self.stack.name} condition {name}")
        if not isinstance(value, bool):
            raise SandboxError(f"stack {self.stack.name}: condition {name} is not a boolean")
        self._conditions[name] = value
        return value

    def _ref(self, name: Any, where: str) -> Any:
        if not isinstance(name, str):
            raise SandboxError(f"{where}: Ref takes a name, got {name!r}")
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self._parameters:
            return self._parameters[name]
        if name in self.resources:
            return self.physical(name, where).ref
        raise SandboxError(f"{where}: Ref to unknown resource or parameter {name!r}")

    def _pseudo(self, name: str) -> Any:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::StackName": self.stack.stack_name,
            "AWS::StackId": self.arn(
                "cloudformation",
                f"stack/{self.stack.stack_name}/{short_hash(self.stack.stack_name, 12)}",
            ),
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }.get(name)

    def _get_att(self, argument: Any, where: str) -> Any:
        if isinstance(argument, str) and "." in argument:
            logical_id, attribute = argument.split(".", 1)
        elif isinstance(argument, list) and len(argument) == 2:
            logical_id = argument[0]
            attribute = self.resolve(argument[1], where)
        else:
            raise SandboxError(f"{where}: malformed Fn::GetAtt {argument!r}")
        if not isinstance(logical_id, str) or logical_id not in self.resources:
            raise SandboxError(f"{where}: Fn::GetAtt of unknown resource {logical_id!r}")
        physical = self.physical(logical_id, where)
        if attribute not in physical.attrs:
            kind = self.resources[logical_id].get("Type")
            raise SandboxError(
                f"{where}: cannot resolve Fn::GetAtt {logical_id}.{attribute} "
                f"(a {kind}; the sandbox knows {sorted(physical.attrs) or 'no attributes'})"
            )
        return physical.attrs[attribute]

    def _function(self, key: str, argument: Any, where: str) -> Any:
        # These three read their argument unresolved (a condition name, a Sub template).
        if key == "Fn::GetAtt":
            return self._get_att(argument, where)
        if key == "Fn::If":
            if not (isinstance(argument, list) and len(argument) == 3):
                raise SandboxError(f"{where}: malformed Fn::If")
            branch = argument[1] if self.condition(argument[0], where) else argument[2]
            return self.resolve(branch, where)
        if key == "Fn::Sub":
            return self._sub(argument, where)
        evaluate = _INTRINSICS.get(key)
        if evaluate is None:
            raise SandboxError(f"{where}: the sandbox cannot resolve {key}")
        return evaluate(self, self.resolve(argument, f"{where}.{key}"), where)

    def _sub(self, argument: Any, where: str) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        elif isinstance(argument, list) and len(argument) == 2:
            text = argument[0]
            variables = self.resolve(argument[1], f"{where}.Fn::Sub")
        else:
            raise SandboxError(f"{where}: malformed Fn::Sub")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _text(variables[name], where)
            if "." in name and name.split(".", 1)[0] in self.resources:
                return _text(self._get_att(name, where), where)
            return _text(self._ref(name, where), where)

        return _SUB_VARIABLE.sub(replace, str(text))

    # ----------------------------------------------------------------- parameters

    def _resolve_parameters(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in (self.template.get("Parameters") or {}).items():
            kind = str(spec.get("Type", "String"))
            default = spec.get("Default")
            if kind.startswith("AWS::SSM::Parameter::Value"):
                # Public SSM parameters (such as CDK's bootstrap version) exist
                # only in AWS; nothing local needs their value.
                values[name] = f"local-ssm-parameter:{default}"
            elif default is not None:
                values[name] = (
                    default.split(",")
                    if kind.startswith("List<") or kind == ("CommaDelimitedList")
                    else default
                )
            else:
                values[name] = f"local-parameter:{name}"
        return values

    # ----------------------------------------------------------------- physical ids

    def _make_physical(self, logical_id: str) -> Physical:
        resource = self.resources[logical_id]
        kind = str(resource.get("Type"))
        name_property, limit = _NAME_PROPERTY.get(kind, (None, 64))
        name = None
        if name_property is not None:
            name = self.prop(logical_id, name_property)
        if name is None:
            name = self.local_name(logical_id, limit)
        make = _PHYSICAL.get(kind)
        if make is not None:
            return make(self, logical_id, str(name), limit)
        return self._other_physical(logical_id, kind, str(name))

    def _other_physical(self, logical_id: str, kind: str, name: str) -> Physical:
        if kind.startswith("AWS::ApiGatewayV2::"):
            short = short_hash(f"{self.stack.stack_name}/{logical_id}", 7)
            attr = kind.rsplit("::", 1)[-1] + "Id"
            return Physical(short, short, {attr: short})
        if kind.startswith(("Custom::", "AWS::CloudFormation::CustomResource")):
            # A custom resource's attributes come from code that runs in AWS only.
            return Physical(name, name, {})
        service = kind.split("::")[1].lower() if kind.count("::") == 2 else "unknown"
        resource_type = kind.rsplit("::", 1)[-1].lower()
        return Physical(name, name, {"Arn": self.arn(service, f"{resource_type}/{name}")})


# ---- intrinsic functions whose arguments are resolved first -----------------
def _join(_: StackResolver, args: Any, where: str) -> str:
    if not (isinstance(args, list) and len(args) == 2 and isinstance(args[1], list)):
        raise SandboxError(f"{where}: malformed Fn::Join")
    return str(args[0]).join(_text(item, where) for item in args[1])


def _select(_: StackResolver, args: Any, where: str) -> Any:
    index, items = args
    if not isinstance(items, list) or not 0 <= int(index) < len(items):
        raise SandboxError(f"{where}: Fn::Select index {index} out of range")
    return items[int(index)]


def _find_in_map(resolver: StackResolver, args: Any, where: str) -> Any:
    mappings = resolver.template.get("Mappings") or {}
    try:
        return mappings[args[0]][args[1]][args[2]]
    except (KeyError, IndexError, TypeError) as exc:
        raise SandboxError(f"{where}: Fn::FindInMap {args} has no value") from exc


def _import_value(resolver: StackResolver, args: Any, where: str) -> Any:
    if resolver._import_value is None:
        raise SandboxError(f"{where}: Fn::ImportValue {args!r} has no exporting stack")
    return resolver._import_value(str(args), where)


_INTRINSICS: dict[str, Callable[[StackResolver, Any, str], Any]] = {
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": lambda _, args, where: str(args[1]).split(str(args[0])),
    "Fn::Equals": lambda _, args, where: args[0] == args[1],
    "Fn::And": lambda _, args, where: all(args),
    "Fn::Or": lambda _, args, where: any(args),
    "Fn::Not": lambda _, args, where: not args[0],
    "Fn::FindInMap": _find_in_map,
    "Fn::GetAZs": lambda resolver, args, where: [f"{resolver.region}{zone}" for zone in "abc"],
    "Fn::Base64": lambda _, args, where: base64.b64encode(str(args).encode()).decode(),
    "Fn::ToJsonString": lambda _, args, where: json.dumps(args, separators=(",", ":")),
    "Fn::Length": lambda _, args, where: len(args),
    "Fn::ImportValue": _import_value,
}


# ---- physical ids and attributes, by resource type --------------------------
def _function_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    return Physical(name, name, {"Arn": r.arn("lambda", f"function:{name}")})


def _table_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    table_arn = r.arn("dynamodb", f"table/{name}")
    return Physical(
        name,
        name,
        {"Arn": table_arn, "StreamArn": f"{table_arn}/stream/1970-01-01T00:00:00.000"},
    )


def _bus_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    return Physical(name, name, {"Arn": r.arn("events", f"event-bus/{name}"), "Name": name})


def _rule_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    bus = r.prop(logical_id, "EventBusName") or "default"
    bus_name = str(bus).rsplit("/", 1)[-1]
    if bus_name == "default":
        return Physical(name, name, {"Arn": r.arn("events", f"rule/{name}")})
    rule_arn = r.arn("events", f"rule/{bus_name}/{name}")
    return Physical(f"{bus_name}|{name}", name, {"Arn": rule_arn})


def _api_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    api_id = short_hash(f"{r.stack.stack_name}/{logical_id}", 10)
    protocol = r.prop(logical_id, "ProtocolType", "HTTP")
    scheme = "wss" if protocol == "WEBSOCKET" else "https"
    endpoint = f"{scheme}://{api_id}.execute-api.{r.region}.{URL_SUFFIX}"
    return Physical(api_id, name, {"ApiId": api_id, "ApiEndpoint": endpoint})


def _stage_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    stage = str(r.prop(logical_id, "StageName"))
    return Physical(stage, stage, {})


def _role_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    role_id = "AROA" + short_hash(logical_id, 17).upper()
    return Physical(
        name,
        name,
        {"Arn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{name}", "RoleId": role_id},
    )


def _managed_policy_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    policy_arn = f"arn:{PARTITION}:iam::{ACCOUNT_ID}:policy/{name}"
    return Physical(policy_arn, name, {"PolicyArn": policy_arn})


def _queue_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    fifo = r.prop(logical_id, "FifoQueue", False) is True
    if fifo and r.prop(logical_id, "QueueName") is None:
        name = r.local_name(logical_id, limit - 5) + ".fifo"  # SQS requires it
    url = f"https://sqs.{r.region}.{URL_SUFFIX}/{ACCOUNT_ID}/{name}"
    return Physical(url, name, {"Arn": r.arn("sqs", name), "QueueName": name, "QueueUrl": url})


def _topic_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    topic_arn = r.arn("sns", name)
    return Physical(topic_arn, name, {"TopicArn": topic_arn, "TopicName": name})


def _log_group_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    return Physical(name, name, {"Arn": r.arn("logs", f"log-group:{name}:*")})


def _secret_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    secret_arn = r.arn("secretsmanager", f"secret:{name}-{short_hash(name, 6)}")
    return Physical(secret_arn, name, {"Id": secret_arn})


def _parameter_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    return Physical(
        name,
        name,
        {
            "Type": r.prop(logical_id, "Type", "String"),
            "Value": r.prop(logical_id, "Value", ""),
        },
    )


def _key_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    key_id = short_hash(logical_id, 32)
    return Physical(key_id, key_id, {"Arn": r.arn("kms", f"key/{key_id}"), "KeyId": key_id})


def _bucket_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    # A generated name is lower case, as S3 wants it (CloudFormation's are too).
    name = name if r.prop(logical_id, "BucketName") else name.lower()
    domain = f"{name}.s3.{r.region}.{URL_SUFFIX}"
    attrs = {
        "Arn": f"arn:{PARTITION}:s3:::{name}",
        "DomainName": f"{name}.s3.{URL_SUFFIX}",
        "RegionalDomainName": domain,
    }
    return Physical(name, name, attrs)


def _alarm_physical(r: StackResolver, logical_id: str, name: str, limit: int) -> Physical:
    return Physical(name, name, {"Arn": r.arn("cloudwatch", f"alarm:{name}")})


_PHYSICAL: dict[str, Callable[[StackResolver, str, str, int], Physical]] = {
    "AWS::Lambda::Function": _function_physical,
    "AWS::DynamoDB::Table": _table_physical,
    "AWS::DynamoDB::GlobalTable": _table_physical,
    "AWS::Events::EventBus": _bus_physical,
    "AWS::Events::Rule": _rule_physical,
    "AWS::ApiGatewayV2::Api": _api_physical,
    "AWS::ApiGatewayV2::Stage": _stage_physical,
    "AWS::IAM::Role": _role_physical,
    "AWS::IAM::ManagedPolicy": _managed_policy_physical,
    "AWS::SQS::Queue": _queue_physical,
    "AWS::SNS::Topic": _topic_physical,
    "AWS::Logs::LogGroup": _log_group_physical,
    "AWS::SecretsManager::Secret": _secret_physical,
    "AWS::SSM::Parameter": _parameter_physical,
    "AWS::KMS::Key": _key_physical,
    "AWS::CloudWatch::Alarm": _alarm_physical,
    "AWS::S3::Bucket": _bucket_physical,
}


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise SandboxError(f"{where}: expected a string, got {value!r}")
