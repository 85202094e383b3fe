"""``python -m tools.smoke``: after a deploy, does every region work, together?

In AWS (the default) it reads each regional stack's outputs with
``describe_stacks`` (the stack names and regions come from ``cdk.json``'s
context, overridable with ``--app-name``/``--stage``/``--regions``), mints a
token for the check's length (at least 5 minutes) from the signing secret
(``GetSecretValue`` in the primary region; or takes ``--token``), connects to
every region, joins one fresh ``smoke-...`` room, sends one message per region
and checks that each region received every message exactly once. Then one region
uploads an attachment and every other region must read its own replica with the
same sha256 within ``--attachment-wait`` seconds (tools/smoke/attachment.py). It
also checks every replica of the signing secret (tools/smoke/replicas.py). With
the global endpoint (``GlobalWebSocketUrl`` output) a ``global`` row connects
there too, sends nothing and must receive every region's message once. It prints
one row per region and exits 0 when all pass, 1 when any fails, 2 when it cannot
run at all.

With ``--endpoints-file`` it does the same against the local sandbox (its
endpoints file gives the URLs, the signing secret and its name). The replica
check asks the file's Secrets Manager endpoint (``secretsmanager``: the
sandbox's moto server, where the templates' replicas are made by moto's own
replication); a file without one gets the check reported as skipped, with the
reason.

Credentials and region come from the usual AWS configuration (``--profile``,
``AWS_PROFILE``, ...); the calls it makes are
``cloudformation:DescribeStacks`` in every region and
``secretsmanager:DescribeSecret`` (plus ``GetSecretValue`` without
``--token``) in the primary region.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.tokens import mint_token
from multiregion_chat.infra.config import ChatConfig
from tools.deployment_config import add_deployment_arguments, deployment_config_of
from tools.smoke.attachment import AttachmentPlan
from tools.smoke.errors import SmokeSetupError, aws_reason
from tools.smoke.exchange import exchange
from tools.smoke.replicas import ReplicaCheck, check_replicas, skipped
from tools.smoke.report import build_reports, render
from tools.smoke.targets import GLOBAL_ROW, RegionTarget, from_endpoints_file, from_stacks

__all__ = ["SANDBOX_CREDENTIALS", "TOKEN_TTL_SECONDS", "main", "run", "token_ttl_seconds"]

# Long enough for the check, short enough not to matter if it leaks: at least this, and
# more when --timeout, --settle and --attachment-wait ask for longer (token_ttl_seconds).
TOKEN_TTL_SECONDS = 300
# The steps' own bounds on top of those options: connect (10 s), the replies (15 s each: join, send,
# upload, the attachment's send, a last download ask) and two attachments (60 s each), rounded up.
TOKEN_TTL_MARGIN_SECONDS = 240
# Over the WebSocket frame and message limits, under the default maxAttachmentBytes.
ATTACHMENT_BYTES = 1024 * 1024
# S3 Replication without Replication Time Control usually copies within seconds; it
# promises nothing (RTC's SLA is 15 minutes), so the wait is generous and adjustable.
ATTACHMENT_WAIT_SECONDS = 120.0
# moto accepts any credentials; these keep a real profile away from the sandbox.
SANDBOX_CREDENTIALS = {
    "aws_access_key_id": "sandbox",
    "aws_secret_access_key": "sandbox",
    "aws_session_token": "sandbox",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke",
        description="Post-deploy check: connect to every region, send one message per region, "
        "check every region receives each exactly once, check the signing secret's replicas.",
    )
    parser.add_argument(
        "--endpoints-file", type=Path, default=None,
        help="check the local sandbox described by this file instead of AWS",
    )  # fmt: skip
    add_deployment_arguments(parser, "comma-separated regions (default: all configured)")
    parser.add_argument("--profile", default=None, help="AWS profile (AWS mode)")
    parser.add_argument(
        "--token", default=None,
        help="a token to connect with (default: one minted from the signing secret)",
    )  # fmt: skip
    parser.add_argument("--room", default=None, help="room to use (default: a new smoke-... room)")
    parser.add_argument(
        "--timeout", type=float, default=30.0,
        help="seconds to wait for every message to reach every region (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=float, default=2.0,
        help="seconds to keep watching for duplicates after the last message (default 2)",
    )  # fmt: skip
    parser.add_argument(
        "--attachment-bytes", type=int, default=None,
        help=f"size of the attachment (default {ATTACHMENT_BYTES}, at most maxAttachmentBytes;"
        " 0 skips the attachment check)",
    )  # fmt: skip
    parser.add_argument(
        "--attachment-wait", type=float, default=ATTACHMENT_WAIT_SECONDS,
        help="seconds each region may take to get its own copy of the attachment "
        f"(default {ATTACHMENT_WAIT_SECONDS:g})",
    )  # fmt: skip
    return parser


def _config(args: argparse.Namespace) -> ChatConfig:
    try:
        return deployment_config_of(args)
    except ValueError as error:
        raise SmokeSetupError(str(error)) from None


def _aws_session(profile: str | None) -> Any:
    return boto3.session.Session(profile_name=profile)


def _sandbox_session(region: str) -> Any:
    return boto3.session.Session(
        region_name=region,
        aws_access_key_id=SANDBOX_CREDENTIALS["aws_access_key_id"],
        aws_secret_access_key=SANDBOX_CREDENTIALS["aws_secret_access_key"],
        aws_session_token=SANDBOX_CREDENTIALS["aws_session_token"],
    )


@dataclass
class _Plan:
    """What to check: the regions' targets, the replica verdicts, how to get a token."""

    targets: list[RegionTarget]
    replicas: dict[str, ReplicaCheck]
    secret: str | None = None
    token_problem: str | None = None
    notes: list[str] = field(default_factory=list)


def _sandbox_plan(args: argparse.Namespace, config: ChatConfig) -> _Plan:
    wanted = [r.strip() for r in args.regions.split(",")] if args.regions else []
    endpoints = from_endpoints_file(args.endpoints_file, wanted)
    regions = [t.region for t in endpoints.targets]
    primary = config.primary_region if config.primary_region in regions else regions[0]
    url = endpoints.secretsmanager_url
    if url is None:
        reason = f"{args.endpoints_file} exposes no Secrets Manager endpoint"
        return _Plan(
            endpoints.targets,
            skipped(regions, reason),
            secret=endpoints.signing_secret,
            notes=[f"replica check skipped: {reason}"],
        )
    sandbox = _sandbox_session(primary)
    replicas = check_replicas(
        lambda region: sandbox.client("secretsmanager", region_name=region, endpoint_url=url),
        endpoints.signing_secret_name or config.signing_secret_id,
        primary,
        regions,
    )
    return _Plan(endpoints.targets, replicas, secret=endpoints.signing_secret)


def _aws_plan(args: argparse.Namespace, config: ChatConfig, session: Any) -> _Plan:
    targets = from_stacks(session, config)
    primary = config.primary_region
    secret_id = next(
        (t.signing_secret_name for t in targets if t.region == primary and t.signing_secret_name),
        config.signing_secret_id,
    )

    def secrets_client(region: str) -> Any:
        return session.client("secretsmanager", region_name=region)

    plan = _Plan(targets, check_replicas(secrets_client, secret_id, primary, config.regions))
    if args.token is None:
        try:
            answer = secrets_client(primary).get_secret_value(SecretId=secret_id)
        except (ClientError, BotoCoreError) as error:
            plan.token_problem = (
                f"GetSecretValue {secret_id} in {primary}: {aws_reason(error)} (or pass --token)"
            )
        else:
            plan.secret = str(answer.get("SecretString") or "").strip() or None
            if plan.secret is None:
                plan.token_problem = f"{secret_id} in {primary} has no SecretString"
    return plan


def _attachment_plan(args: argparse.Namespace, config: ChatConfig) -> AttachmentPlan | None:
    size = args.attachment_bytes
    if size is None:
        size = min(ATTACHMENT_BYTES, config.max_attachment_bytes)
    if size < 0 or size > config.max_attachment_bytes:
        raise SmokeSetupError(
            f"--attachment-bytes must be 0 to maxAttachmentBytes ({config.max_attachment_bytes})"
        )
    return AttachmentPlan(size, args.attachment_wait) if size else None


def token_ttl_seconds(
    args: argparse.Namespace, attachment: AttachmentPlan | None, config: ChatConfig
) -> int:
    """A token valid for the whole check: the connections live as long as it does (the
    fan-out closes a connection whose token expired), and the attachment step can take
    ``--attachment-wait`` on top of the delivery timeout and the settle time. Never over
    ``maxTokenLifetimeHours``, which the authorizer would refuse."""
    wait = attachment.wait if attachment is not None else 0.0
    needed = math.ceil(args.timeout + args.settle + wait) + TOKEN_TTL_MARGIN_SECONDS
    return min(max(TOKEN_TTL_SECONDS, needed), config.max_token_lifetime_hours * 3600)


def run(
    argv: Sequence[str] | None = None,
    *,
    session_factory: Callable[[str | None], Any] = _aws_session,
    out: TextIO | None = None,
) -> int:
    """The check; its exit status. ``session_factory(profile)`` makes the AWS boto3 Session."""
    args = _parser().parse_args(argv)
    if args.timeout <= 0 or args.settle < 0 or args.attachment_wait <= 0:
        raise SmokeSetupError("--timeout and --attachment-wait must be > 0, --settle >= 0")
    config = _config(args)
    attachment = _attachment_plan(args, config)
    if args.endpoints_file is not None:
        plan = _sandbox_plan(args, config)
    else:
        plan = _aws_plan(args, config, session_factory(args.profile))

    run_id = uuid.uuid4().hex[:12]
    room = args.room or f"smoke-{run_id}"
    user = f"smoke-{run_id}"
    token = args.token
    if token is None and plan.secret:
        token = mint_token(
            plan.secret,
            user,
            name="smoke test",
            rooms=[room],
            ttl_seconds=token_ttl_seconds(args, attachment, config),
        )
    if attachment is None:
        plan.notes.append("attachment check skipped (--attachment-bytes 0)")
    urls = {}
    if plan.token_problem:
        plan.notes.append(f"no connection attempted: {plan.token_problem}")
    else:
        # Without a token (a sandbox app without an authorizer) identity goes on the URL.
        urls = {
            t.region: connect_url(t.websocket_url, user, "smoke test", token=token)
            for t in plan.targets
            if t.websocket_url
        }
    results = asyncio.run(
        exchange(
            urls,
            receive_only={GLOBAL_ROW},
            room=room,
            run_id=run_id,
            delivery_timeout=args.timeout,
            settle=args.settle,
            attachment=attachment,
        )
    )
    reports = build_reports(plan.targets, results, plan.replicas)
    print(render(reports, plan.notes), file=out or sys.stdout)
    return 0 if all(report.ok for report in reports) else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except SmokeSetupError as error:
        print(f"smoke: {error}", file=sys.stderr)
        return 2
