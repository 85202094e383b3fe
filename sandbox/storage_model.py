"""What a template declares about S3 buckets and custom resources, for the sandbox.

Buckets: ``AWS::S3::Bucket`` (name as the template resolves it, CloudFormation-style generated
otherwise; versioning and CORS, which moto keeps). Custom resources: ``Custom::*`` /
``AWS::CloudFormation::CustomResource`` whose ``ServiceToken`` is a Python function of the same
stack; the sandbox runs them once every region's resources exist
(:mod:`sandbox.custom_resources`). Others (a provider in another runtime, an SNS topic) are
left out with a warning: their effect does not exist locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from sandbox.template_model import ModelBuilder

CUSTOM_TYPES = ("Custom::", "AWS::CloudFormation::CustomResource")


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str
    versioned: bool
    cors_rules: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class CustomResourceSpec:
    logical_id: str
    resource_type: str
    function: str  # the logical id of the function behind ServiceToken
    service_token: str
    properties: dict[str, Any] = field(default_factory=dict)


def buckets(builder: ModelBuilder) -> list[BucketSpec]:
    r = builder.r
    found = []
    for logical_id in r.of_type("AWS::S3::Bucket"):
        versioning = r.prop(logical_id, "VersioningConfiguration") or {}
        cors = (r.prop(logical_id, "CorsConfiguration") or {}).get("CorsRules") or []
        found.append(
            BucketSpec(
                logical_id=logical_id,
                name=r.physical(logical_id).name,
                versioned=versioning.get("Status") == "Enabled",
                cors_rules=[_cors_rule(rule) for rule in cors],
            )
        )
    return found


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's CorsRule properties as PutBucketCors names them."""
    renamed = {"MaxAge": "MaxAgeSeconds", "Id": "ID"}
    return {renamed.get(name, name): value for name, value in rule.items()}


def custom_resources(builder: ModelBuilder) -> list[CustomResourceSpec]:
    r = builder.r
    found = []
    for logical_id, resource in r.resources.items():
        kind = str(resource.get("Type"))
        if not kind.startswith(CUSTOM_TYPES) or not r.exists(logical_id):
            continue
        properties = _properties(builder, logical_id)
        token = str(properties.pop("ServiceToken", ""))
        try:
            function = builder.function_for_arn(token, r.where(logical_id, "ServiceToken"))
        except SandboxError as error:
            builder.model.warnings.append(f"{error}; the custom resource is not run here")
            continue
        found.append(CustomResourceSpec(logical_id, kind, function, token, properties))
    return found


def _properties(builder: ModelBuilder, logical_id: str) -> dict[str, Any]:
    raw = builder.r.resources[logical_id].get("Properties") or {}
    return {name: builder.r.prop(logical_id, name) for name in raw}
