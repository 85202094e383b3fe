"""The deployment a tool works on: cdk.json's context with the command line's overrides.

The same ``ChatConfig`` the app synthesizes from (``-c`` there; ``--app-name``,
``--stage``, ``--regions`` here), so names derived from it (stack names, the bus
name) are the deployed ones.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from multiregion_chat.infra.config import ChatConfig

__all__ = ["add_deployment_arguments", "deployment_config", "deployment_config_of"]


def add_deployment_arguments(
    parser: argparse.ArgumentParser, regions_help: str = "overrides the context's regions"
) -> None:
    """Add ``--context``, ``--app-name``, ``--stage`` and ``--regions``."""
    parser.add_argument(
        "--context", type=Path, default=Path("cdk.json"),
        help="cdk.json whose context names the app, stage and regions (default ./cdk.json)",
    )  # fmt: skip
    parser.add_argument("--app-name", default=None, help="overrides the context's appName")
    parser.add_argument("--stage", default=None, help="overrides the context's stage")
    parser.add_argument("--regions", default=None, help=regions_help)


def deployment_config_of(args: argparse.Namespace) -> ChatConfig:
    """:func:`deployment_config` of the arguments :func:`add_deployment_arguments` added."""
    return deployment_config(
        args.context, app_name=args.app_name, stage=args.stage, regions=args.regions
    )


def deployment_config(
    context_file: Path,
    *,
    app_name: str | None = None,
    stage: str | None = None,
    regions: str | None = None,
) -> ChatConfig:
    """ValueError (``ConfigError`` is one) naming the file or the bad key."""
    context: dict[str, object] = {}
    if context_file.exists():
        try:
            document = json.loads(context_file.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{context_file} is not JSON: {error}") from None
        context = dict(document.get("context") or {})
    overrides = {"appName": app_name, "stage": stage, "regions": regions}
    context.update({key: value for key, value in overrides.items() if value is not None})
    return ChatConfig.from_mapping(context)
