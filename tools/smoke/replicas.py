"""Is the signing secret replicated to every region? (``ReplicationStatus`` of the primary.)

CloudFormation reports a stack as created even when a Secrets Manager replica
failed (aws-cloudformation/cloudformation-coverage-roadmap#1459, e.g. a secret
of that name already existed in the replica region): the first sign would be
every ``$connect`` in that region refused by its authorizer. So the check
asks Secrets Manager itself: ``DescribeSecret`` on the primary lists one
``ReplicationStatus`` entry per replica region, and only ``InSync`` passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tools.smoke.errors import aws_reason

__all__ = ["IN_SYNC", "ReplicaCheck", "check_replicas", "skipped"]

IN_SYNC = "InSync"


@dataclass(frozen=True)
class ReplicaCheck:
    """One region's copy of the secret: ``status`` is what the table shows."""

    status: str
    ok: bool
    detail: str = ""


def skipped(regions: Sequence[str], reason: str) -> dict[str, ReplicaCheck]:
    """Every region's check reported as skipped (not a failure) with ``reason``."""
    return {region: ReplicaCheck("skipped", True, reason) for region in regions}


def check_replicas(
    client_for: Any, secret_id: str, primary_region: str, regions: Sequence[str]
) -> dict[str, ReplicaCheck]:
    """The secret's state in each of ``regions``.

    ``client_for(region)`` returns a Secrets Manager client of that region.
    ``primary_region`` is where the app expects the primary; when the secret
    turns out to be a replica there (``signingSecretManaged=false`` with a
    primary elsewhere), its ``PrimaryRegion`` is asked instead.
    """
    try:
        described = client_for(primary_region).describe_secret(SecretId=secret_id)
        actual_primary = described.get("PrimaryRegion") or primary_region
        if actual_primary != primary_region:
            described = client_for(actual_primary).describe_secret(SecretId=secret_id)
    except (ClientError, BotoCoreError) as error:
        reason = f"DescribeSecret {secret_id} in {primary_region}: {aws_reason(error)}"
        return {region: ReplicaCheck("error", False, reason) for region in regions}

    statuses = {entry.get("Region"): entry for entry in described.get("ReplicationStatus") or []}
    results = {}
    for region in regions:
        if region == actual_primary:
            results[region] = ReplicaCheck("primary", True)
            continue
        entry = statuses.get(region)
        if entry is None:
            results[region] = ReplicaCheck(
                "missing", False, f"{secret_id} has no replica in {region}"
            )
            continue
        status = str(entry.get("Status") or "unknown")
        results[region] = ReplicaCheck(
            status, status == IN_SYNC, str(entry.get("StatusMessage") or "")
        )
    return results
