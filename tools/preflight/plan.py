"""What the app will ask of each region: from the config (cdk.json) or a synthesized cdk.out.

From the config, the reservations are the ones the stacks declare
(infra/concurrency.py, the same function ChatConfig checks with). From a
cdk.out (``--cdk-out``), they are read from the templates themselves, so a
team's own functions with reserved concurrency count too, and the bootstrap
version each stack needs comes from the cloud assembly's manifest.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from multiregion_chat.infra.concurrency import reserved_concurrency
from multiregion_chat.infra.config import ChatConfig, ConfigError

__all__ = [
    "DEFAULT_BOOTSTRAP_PARAMETER",
    "DEFAULT_BOOTSTRAP_VERSION",
    "PlanError",
    "RegionPlan",
    "add_config_arguments",
    "config_from_arguments",
    "plan_from_cdk_out",
    "plan_from_config",
]

# What `cdk synth` of this CDK version asks for with the default synthesizer
# (the manifest's requiresBootstrapStackVersion); a cdk.out gives the exact one.
DEFAULT_BOOTSTRAP_VERSION = 6
DEFAULT_BOOTSTRAP_PARAMETER = "/cdk-bootstrap/hnb659fds/version"


class PlanError(Exception):
    """The plan cannot be read (no such cdk.out, a stack missing from it): exit 2."""


@dataclass(frozen=True)
class RegionPlan:
    """One region's stack and what it needs there."""

    region: str
    stack_name: str
    # Function (logical id or name) -> ReservedConcurrentExecutions it declares.
    reserved: dict[str, int]
    bootstrap_version: int = DEFAULT_BOOTSTRAP_VERSION
    bootstrap_parameter: str = DEFAULT_BOOTSTRAP_PARAMETER

    @property
    def reserved_total(self) -> int:
        return sum(self.reserved.values())


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """``--context``, ``-c KEY=VALUE``, ``--stage``, ``--regions``: the config, as cdk reads it."""
    parser.add_argument(
        "--context", type=Path, default=Path("cdk.json"),
        help="cdk.json whose context configures the app (default ./cdk.json)",
    )  # fmt: skip
    parser.add_argument(
        "-c", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a context override, as `cdk deploy -c` takes it (repeatable)",
    )  # fmt: skip
    parser.add_argument("--stage", default=None, help="overrides the context's stage")
    parser.add_argument("--regions", default=None, help="comma-separated regions")


def config_from_arguments(args: argparse.Namespace) -> ChatConfig:
    """The ``ChatConfig`` of ``add_config_arguments``' arguments; PlanError if it is invalid."""
    context: dict[str, object] = {}
    if args.context.exists():
        try:
            context = dict(json.loads(args.context.read_text(encoding="utf-8"))["context"])
        except (ValueError, KeyError, TypeError) as error:
            raise PlanError(f"{args.context} has no readable context: {error}") from None
    for override in args.overrides:
        key, separator, value = override.partition("=")
        if not separator:
            raise PlanError(f"-c {override}: expected KEY=VALUE")
        context[key] = value
    context.update({k: v for k, v in (("stage", args.stage), ("regions", args.regions)) if v})
    try:
        return ChatConfig.from_mapping(context)
    except ConfigError as error:
        raise PlanError(str(error)) from None


def plan_from_config(config: ChatConfig) -> list[RegionPlan]:
    """Every configured region, with the reservations the stacks declare for ``config``."""
    global_endpoint = bool(config.domain_name and config.hosted_zone_id)
    reserved = reserved_concurrency(
        config.http_reserved_concurrency, global_endpoint=global_endpoint
    )
    return [
        RegionPlan(region=region, stack_name=config.stack_name(region), reserved=dict(reserved))
        for region in config.regions
    ]


def plan_from_cdk_out(cdk_out: Path, config: ChatConfig) -> list[RegionPlan]:
    """Every configured region's stack as synthesized in ``cdk_out``."""
    manifest_file = cdk_out / "manifest.json"
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise PlanError(f"cannot read {manifest_file}: {error}") from None
    stacks = {
        artifact.get("properties", {}).get("stackName", artifact_id): artifact
        for artifact_id, artifact in manifest.get("artifacts", {}).items()
        if artifact.get("type") == "aws:cloudformation:stack"
    }
    plans = []
    for region in config.regions:
        name = config.stack_name(region)
        artifact = stacks.get(name)
        if artifact is None:
            raise PlanError(f"{cdk_out} has no stack {name}: synthesize with the same context")
        properties = artifact.get("properties", {})
        template = json.loads((cdk_out / properties["templateFile"]).read_text(encoding="utf-8"))
        reserved = {
            logical_id: int(resource["Properties"]["ReservedConcurrentExecutions"])
            for logical_id, resource in template.get("Resources", {}).items()
            if resource.get("Type") == "AWS::Lambda::Function"
            and "ReservedConcurrentExecutions" in resource.get("Properties", {})
        }
        plans.append(
            RegionPlan(
                region=region,
                stack_name=name,
                reserved=reserved,
                bootstrap_version=int(
                    properties.get("requiresBootstrapStackVersion", DEFAULT_BOOTSTRAP_VERSION)
                ),
                bootstrap_parameter=properties.get(
                    "bootstrapStackVersionSsmParameter", DEFAULT_BOOTSTRAP_PARAMETER
                ),
            )
        )
    return plans
