"""Remove the signing secret's replicas before destroying a stage (``make destroy-stage``).

Secrets Manager refuses to delete a primary secret that still has replicas
("You can't delete secret ... that still has replica regions [...]"), so
``cdk destroy`` of a stage whose first region created a replicated secret may
leave that stack in ``DELETE_FAILED``. Run this first::

    python -m tools.remove_secret_replicas --stage dev   # then: npx cdk destroy --all -c stage=dev

It reads the stage's secret name and first region from ``cdk.json`` (plus
``--stage``/``--regions``/``-c`` overrides), asks Secrets Manager there which
replicas exist (``DescribeSecret``) and removes them
(``RemoveRegionsFromReplication``). It refuses a stage whose
``removalPolicy`` is ``retain`` (the ``prod`` default): such a secret is
kept when its stack is deleted, and its replicas are what the other regions'
authorizers read. Exit 0 when no replica is left, 1 when a call failed,
2 when it cannot start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from tools.preflight.plan import PlanError, add_config_arguments, config_from_arguments
from tools.smoke.errors import aws_reason

__all__ = ["main", "remove_replicas"]


def remove_replicas(client: Any, secret_id: str, out: TextIO) -> list[str]:
    """Remove every replica of ``secret_id`` (``client``: Secrets Manager in its primary region)."""
    try:
        status = client.describe_secret(SecretId=secret_id).get("ReplicationStatus", [])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            print(f"{secret_id}: no such secret (nothing to do)", file=out)
            return []
        raise
    regions = [replica["Region"] for replica in status]
    if regions:
        client.remove_regions_from_replication(SecretId=secret_id, RemoveReplicaRegions=regions)
    print(f"{secret_id}: removed replicas in {', '.join(regions) or 'no region'}", file=out)
    return regions


def main(
    argv: Sequence[str] | None = None, *, client: Any = None, out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m tools.remove_secret_replicas",
        description="Remove the stage's signing secret replicas so `cdk destroy` can delete it.",
    )
    add_config_arguments(parser)
    parser.add_argument("--profile", default=None, help="AWS profile")
    args = parser.parse_args(argv)
    try:
        config = config_from_arguments(args)
    except PlanError as error:
        print(f"remove_secret_replicas: {error}", file=sys.stderr)
        return 2
    if config.oidc or not config.signing_secret_managed:
        print("nothing to do: this stage does not create the signing secret", file=out)
        return 0
    if config.removal_policy == "retain":
        print(
            f"remove_secret_replicas: stage {config.stage!r} retains its secret on delete "
            "(removalPolicy=retain); its replicas stay",
            file=sys.stderr,
        )
        return 2
    if client is None:
        session = boto3.session.Session(profile_name=args.profile)
        client = session.client("secretsmanager", region_name=config.primary_region)
    try:
        remove_replicas(client, config.signing_secret_id, out)
    except (ClientError, BotoCoreError) as error:
        print(f"remove_secret_replicas: {aws_reason(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
