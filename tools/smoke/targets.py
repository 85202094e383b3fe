"""Where the smoke test connects: each region's URLs, from CloudFormation or an endpoints file.

In AWS the regional stacks' outputs (``WebSocketUrl``, ``HttpUrl``,
``SigningSecretName``; infra/region_stack.py) are the source of truth, read
with ``describe_stacks`` in each region under the stack name the app gives it
(``<appName>-<stage>-<region>``, ``ChatConfig.stack_name``). Against the
sandbox the endpoints file it writes plays that part (docs/sandbox.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from multiregion_chat.infra.config import ChatConfig
from tools.smoke.errors import SmokeSetupError, aws_reason

__all__ = [
    "GLOBAL_ROW",
    "RegionTarget",
    "SandboxEndpoints",
    "from_endpoints_file",
    "from_stacks",
]

WEBSOCKET_OUTPUT = "WebSocketUrl"
HTTP_OUTPUT = "HttpUrl"
GLOBAL_WEBSOCKET_OUTPUT = "GlobalWebSocketUrl"
# The table's row for the global endpoint (with domainName + hostedZoneId).
GLOBAL_ROW = "global"
SECRET_OUTPUT = "SigningSecretName"


@dataclass(frozen=True)
class RegionTarget:
    """One region to check: its WebSocket URL, or why it has none."""

    region: str
    websocket_url: str | None = None
    http_url: str | None = None
    signing_secret_name: str | None = None
    problem: str | None = None
    # The global endpoint's URL, as the stack outputs it (None without one).
    global_websocket_url: str | None = None


@dataclass(frozen=True)
class SandboxEndpoints:
    """What the sandbox's endpoints file offers the check."""

    targets: list[RegionTarget]
    signing_secret: str | None
    secretsmanager_url: str | None
    signing_secret_name: str | None = None


def from_stacks(session: Any, config: ChatConfig) -> list[RegionTarget]:
    """Each configured region's outputs, read from its stack (``session``: a boto3 Session)."""
    targets = []
    for region in config.regions:
        stack_name = config.stack_name(region)
        try:
            answer = session.client("cloudformation", region_name=region).describe_stacks(
                StackName=stack_name
            )
        except (ClientError, BotoCoreError) as error:
            targets.append(RegionTarget(region, problem=f"stack {stack_name}: {aws_reason(error)}"))
            continue
        (stack,) = answer["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}
        status = str(stack.get("StackStatus", ""))
        if not outputs.get(WEBSOCKET_OUTPUT):
            targets.append(
                RegionTarget(
                    region,
                    problem=f"stack {stack_name} ({status}) has no {WEBSOCKET_OUTPUT} output",
                )
            )
            continue
        targets.append(
            RegionTarget(
                region,
                websocket_url=outputs[WEBSOCKET_OUTPUT],
                http_url=outputs.get(HTTP_OUTPUT),
                signing_secret_name=outputs.get(SECRET_OUTPUT),
                global_websocket_url=outputs.get(GLOBAL_WEBSOCKET_OUTPUT),
                problem=None
                if status.endswith("_COMPLETE") and "ROLLBACK" not in status
                else f"stack {stack_name} is {status}",
            )
        )
    global_urls = {t.global_websocket_url for t in targets if t.global_websocket_url}
    if global_urls:
        # DNS picks the region: the connection listens and must get every message too.
        targets.append(RegionTarget(GLOBAL_ROW, websocket_url=min(global_urls)))
    return targets


def from_endpoints_file(path: Path, regions: Sequence[str] = ()) -> SandboxEndpoints:
    """The regions (all, or ``regions`` in that order) of a sandbox endpoints file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SmokeSetupError(f"{path} not found: start the sandbox (`make local`)") from None
    except ValueError as error:
        raise SmokeSetupError(f"{path} is not JSON: {error}") from None
    listed = document.get("regions") if isinstance(document, dict) else None
    if not isinstance(listed, dict) or not listed:
        raise SmokeSetupError(f"{path} lists no regions")
    wanted = list(regions) or list(listed)
    targets = []
    for region in wanted:
        urls = listed.get(region)
        if not isinstance(urls, dict) or not urls.get("websocket"):
            targets.append(RegionTarget(region, problem=f"no websocket URL in {path}"))
            continue
        targets.append(
            RegionTarget(region, websocket_url=urls["websocket"], http_url=urls.get("http"))
        )
    secretsmanager = document.get("secretsmanager")
    secret_name = document.get("signingSecretName")
    return SandboxEndpoints(
        targets=targets,
        signing_secret=document.get("signingSecret") or None,
        secretsmanager_url=secretsmanager if isinstance(secretsmanager, str) else None,
        signing_secret_name=secret_name if isinstance(secret_name, str) else None,
    )
