"""``python -m tools.remove_secret_replicas``: a dev stage's secret can then be deleted (moto)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tools.remove_secret_replicas import main

REPO = Path(__file__).resolve().parents[2]
SECRET = "chat/dev/token-signing-secret"
CONTEXT = ["--context", str(REPO / "cdk.json"), "--regions", "us-east-1,eu-west-1,ap-northeast-1"]


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        # As the first region's stack creates it (infra/auth.py): replicas in the others.
        client.create_secret(
            Name=SECRET,
            SecretString="s" * 64,
            AddReplicaRegions=[{"Region": "eu-west-1"}, {"Region": "ap-northeast-1"}],
        )
        yield client


def test_replicas_are_removed_so_the_primary_can_be_deleted(secrets: Any) -> None:
    # What `cdk destroy` would meet without the tool.
    with pytest.raises(secrets.exceptions.InvalidParameterException, match="replica regions"):
        secrets.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    out = io.StringIO()
    assert main([*CONTEXT, "--stage", "dev"], client=secrets, out=out) == 0
    assert "removed replicas in eu-west-1, ap-northeast-1" in out.getvalue()
    assert not secrets.describe_secret(SecretId=SECRET).get("ReplicationStatus")
    secrets.delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    # A second run (or a stage that never deployed) has nothing to do.
    assert main([*CONTEXT, "--stage", "dev"], client=secrets, out=io.StringIO()) == 0


def test_a_retained_stage_keeps_its_replicas(
    secrets: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # prod retains its secret on delete: its replicas are what the other regions read.
    assert main([*CONTEXT, "--stage", "dev", "-c", "removalPolicy=retain"], client=secrets) == 2
    assert "retains its secret" in capsys.readouterr().err
    assert len(secrets.describe_secret(SecretId=SECRET)["ReplicationStatus"]) == 2
