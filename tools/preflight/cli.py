"""``python -m tools.preflight``: can this account take the app? Run it before deploying.

Per configured region it checks, read-only:

* the region is enabled (``account:GetRegionOptStatus``, else
  ``ec2:DescribeRegions``): opt-in regions are off in a new account;
* Lambda's concurrency (``lambda:GetAccountSettings``): the stack's reserved
  concurrency must leave Lambda's unreserved minimum (100; a new account's
  whole quota of 10 or 50), counting what this stage's stack already holds
  (``cloudformation:ListStackResources``, ``lambda:GetFunctionConcurrency``)
  and what other stages and apps reserve (already out of the unreserved
  figure);
* CDK's bootstrap (``ssm:GetParameter`` of the bootstrap version, else the
  ``CDKToolkit`` stack's output) at the version the templates need;
* API Gateway's account quotas (``servicequotas:GetServiceQuota``, else the
  documented defaults): WebSocket new connections per second and the account
  throttle, which ``fanoutRequestBudget`` must stay under.

The regions and reservations come from ``cdk.json``'s context (with
``--stage``/``--regions`` and ``-c key=value`` overrides, as ``cdk`` takes
them) or, with ``--cdk-out``, from the synthesized templates (a team's own
functions' reservations included). It prints a table and exits 0 when nothing
blocks the deploy, 1 when something does, 2 when it cannot start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import boto3

from tools.preflight.checks import (
    BLOCK,
    OK,
    Check,
    ClientFactory,
    check_api_gateway_quotas,
    check_bootstrap,
    check_lambda_concurrency,
    check_opt_in,
)
from tools.preflight.plan import (
    PlanError,
    RegionPlan,
    add_config_arguments,
    config_from_arguments,
    plan_from_cdk_out,
    plan_from_config,
)

__all__ = ["COLUMNS", "main", "render", "run"]

COLUMNS = ("region", "check", "result", "found")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.preflight",
        description="Before deploying: Lambda concurrency, opt-in regions, CDK bootstrap and "
        "API Gateway quotas of every configured region.",
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--cdk-out", type=Path, default=None,
        help="read the reservations and bootstrap version from this synthesized cdk.out",
    )  # fmt: skip
    parser.add_argument("--profile", default=None, help="AWS profile")
    return parser


def run(
    plans: Sequence[RegionPlan], clients: ClientFactory, *, fanout_request_budget: int
) -> list[Check]:
    """Every check of every region, in order; a disabled region gets no further calls."""
    rows: list[Check] = []
    for plan in plans:
        opt_in = check_opt_in(clients, plan.region)
        rows.append(opt_in)
        if opt_in.status == BLOCK:
            continue
        rows.append(check_lambda_concurrency(clients, plan))
        rows.append(check_bootstrap(clients, plan))
        rows += check_api_gateway_quotas(clients, plan.region, fanout_request_budget)
    return rows


def render(rows: Sequence[Check], out: TextIO) -> None:
    """The table, then one verdict line."""
    cells = [COLUMNS] + [(r.region, r.name, r.status, r.detail) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1], file=out)
    blocked = sorted({r.region for r in rows if r.status == BLOCK})
    if blocked:
        print(f"BLOCKED: {', '.join(blocked)} (fix the BLOCK rows before deploying)", file=out)
    else:
        warned = sum(r.status != OK for r in rows)
        print(f"OK: nothing blocks the deploy ({warned} warning(s))", file=out)


def main(
    argv: Sequence[str] | None = None,
    *,
    clients: ClientFactory | None = None,
    out: TextIO | None = None,
) -> int:
    """Exit status: 0 nothing blocks, 1 something does, 2 cannot start."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    try:
        config = config_from_arguments(args)
        plans = (
            plan_from_cdk_out(args.cdk_out, config) if args.cdk_out else plan_from_config(config)
        )
    except PlanError as error:
        print(f"preflight: {error}", file=sys.stderr)
        return 2
    if clients is None:
        session = boto3.session.Session(profile_name=args.profile)
        cache: dict[tuple[str, str], Any] = {}

        def clients(service: str, region: str) -> Any:
            if (service, region) not in cache:
                cache[service, region] = session.client(service, region_name=region)  # type: ignore[call-overload]
            return cache[service, region]

    rows = run(plans, clients, fanout_request_budget=config.fanout_request_budget)
    render(rows, out)
    return 1 if any(r.status == BLOCK for r in rows) else 0
