"""The attachment buckets: properties, lifecycle, logging, replication mesh, IAM, alarms.

The replication rules are not in the templates (a custom resource sets them once the
destination buckets exist, runtime/handlers/attachment_replication.py); its properties name every
region's bucket and role, and tests/unit/test_attachment_replication.py runs it on moto.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from .helpers import (
    ACCOUNT,
    JsonDict,
    SynthResult,
    as_list,
    function_by_handler,
    getatt_id,
    resolve,
    resources,
    role_statements,
)

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")


def bucket_name(region: str) -> str:
    return f"chat-prod-files-{ACCOUNT}-{region}"


def attachment_bucket(template: JsonDict, region: str) -> tuple[str, JsonDict]:
    (found,) = [
        (logical_id, bucket)
        for logical_id, bucket in resources(template, "AWS::S3::Bucket").items()
        if "BucketName" in bucket["Properties"]
    ]
    assert resolve(found[1]["Properties"]["BucketName"], region=region) == bucket_name(region)
    return found


def handler_role(template: JsonDict, handler: str) -> str:
    _, function = function_by_handler(template, handler)
    return getatt_id(function["Properties"]["Role"])


def replication_role(template: JsonDict, region: str) -> str:
    (role_id,) = [
        logical_id
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"].get("RoleName") == f"chat-prod-files-repl-{region}"
    ]
    return role_id


def statements_of(template: JsonDict, role_id: str, region: str) -> list[tuple[Any, Any]]:
    return sorted(
        (
            sorted(as_list(s["Action"])),
            sorted(map(str, as_list(resolve(s["Resource"], region=region)))),
        )
        for s in role_statements(template, role_id)
        if s["Effect"] == "Allow"
    )


@pytest.mark.parametrize("region", REGIONS)
def test_the_bucket_is_private_encrypted_versioned_and_logged(
    app3: SynthResult, region: str
) -> None:
    template = app3.template_json(region)
    bucket_id, bucket = attachment_bucket(template, region)
    properties = bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["OwnershipControls"] == {
        "Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]
    }
    logging = properties["LoggingConfiguration"]
    log_bucket_id = logging["DestinationBucketName"]["Ref"]
    assert logging["LogFilePrefix"] == "attachments/"
    log_bucket = template["Resources"][log_bucket_id]["Properties"]
    assert (
        log_bucket["PublicAccessBlockConfiguration"] == properties["PublicAccessBlockConfiguration"]
    )
    assert log_bucket["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30
    # TLS only, on both buckets.
    for policy in resources(template, "AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
    policed = {
        p["Properties"]["Bucket"]["Ref"]
        for p in resources(template, "AWS::S3::BucketPolicy").values()
    }
    assert policed == {bucket_id, log_bucket_id}
    (log_policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"]["Ref"] == log_bucket_id
    ]
    (delivery,) = [s for s in log_policy if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert resolve(delivery["Condition"], region=region) == {
        "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket_name(region)}"},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    assert "AccessControl" not in log_bucket  # no ACLs: bucket-owner-enforced
    assert bucket["DeletionPolicy"] == "Retain"  # prod


@pytest.mark.parametrize(("hours", "days"), [(24, 1), (25, 2), (48, 2), (24 * 7, 7)])
def test_the_lifecycle_expires_with_the_history(tmp_path: Any, hours: int, days: int) -> None:
    from .helpers import synth

    app = synth({"historyRetentionHours": hours, "regions": "us-east-1"}, tmp_path)
    _, bucket = attachment_bucket(app.template_json("us-east-1"), "us-east-1")
    (rule,) = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] == days
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": days}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}


def test_attachment_retention_days_overrides(tmp_path: Any) -> None:
    from .helpers import synth

    app = synth({"attachmentRetentionDays": 9, "regions": "us-east-1"}, tmp_path)
    _, bucket = attachment_bucket(app.template_json("us-east-1"), "us-east-1")
    assert bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 9


@pytest.mark.parametrize("region", REGIONS)
def test_the_replication_setup_names_every_bucket_and_role(app3: SynthResult, region: str) -> None:
    template = app3.template_json(region)
    (setup,) = resources(template, "Custom::AttachmentReplication").values()
    properties = resolve(setup["Properties"], region=region)
    assert properties["Region"] == region
    assert properties["Buckets"] == {r: bucket_name(r) for r in REGIONS}
    assert properties["Roles"] == {
        r: f"arn:aws:iam::{ACCOUNT}:role/chat-prod-files-repl-{r}" for r in REGIONS
    }
    bucket_id, _ = attachment_bucket(template, region)
    role_id = replication_role(template, region)
    assert {bucket_id, role_id} <= set(setup["DependsOn"])


def test_every_region_pair_is_a_replication_destination(app3: SynthResult) -> None:
    """Each role may replicate into exactly the other regions' buckets: 2 per region here."""
    for source, destination in itertools.permutations(REGIONS, 2):
        template = app3.template_json(source)
        role_id = replication_role(template, source)
        bucket_id, _ = attachment_bucket(template, source)
        own = f"<{bucket_id}.Arn>"
        others = sorted(f"arn:aws:s3:::{bucket_name(r)}/rooms/*" for r in REGIONS if r != source)
        assert statements_of(template, role_id, source) == sorted(
            [
                (["s3:GetReplicationConfiguration", "s3:ListBucket"], [own]),
                (
                    [
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionTagging",
                    ],
                    [f"{own}/rooms/*"],
                ),
                (["s3:ReplicateObject", "s3:ReplicateTags"], others),
            ]
        )
        assert f"arn:aws:s3:::{bucket_name(destination)}/rooms/*" in others
        role = template["Resources"][role_id]["Properties"]
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "s3.amazonaws.com"
        }


def test_twenty_regions_give_nineteen_destinations_and_alarms(app20: SynthResult) -> None:
    region = app20.config.regions[0]
    template = app20.template_json(region)
    (setup,) = resources(template, "Custom::AttachmentReplication").values()
    assert len(setup["Properties"]["Buckets"]) == 20
    alarms = [
        alarm
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "OperationsFailedReplication"
    ]
    assert len(alarms) == 19


@pytest.mark.parametrize("region", REGIONS)
def test_the_setup_function_may_touch_only_the_buckets_replication(
    app3: SynthResult, region: str
) -> None:
    template = app3.template_json(region)
    role_id = handler_role(
        template, "multiregion_chat.runtime.handlers.attachment_replication.handler"
    )
    statements = statements_of(template, role_id, region)
    buckets = sorted(f"arn:aws:s3:::{bucket_name(r)}" for r in REGIONS)
    roles = sorted(f"arn:aws:iam::{ACCOUNT}:role/chat-prod-files-repl-{r}" for r in REGIONS)
    assert (["s3:ListBucket", "s3:PutReplicationConfiguration"], buckets) in statements
    assert (["iam:PassRole"], roles) in statements
    passing = [s for s in role_statements(template, role_id) if s["Action"] == "iam:PassRole"]
    assert passing[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "s3.amazonaws.com"}}
    assert len(statements) == 4  # plus its log group and X-Ray


@pytest.mark.parametrize("region", REGIONS)
def test_the_client_handler_gets_exactly_the_attachment_grants(
    app3: SynthResult, region: str
) -> None:
    template = app3.template_json(region)
    _, function = function_by_handler(
        template, "multiregion_chat.runtime.handlers.client_message_handler.handler"
    )
    role_id = handler_role(
        template, "multiregion_chat.runtime.handlers.client_message_handler.handler"
    )
    bucket_id, _ = attachment_bucket(template, region)
    s3_statements = [
        statement
        for statement in statements_of(template, role_id, region)
        if any(action.startswith("s3:") for action in statement[0])
    ]
    others = sorted(f"arn:aws:s3:::{bucket_name(r)}/rooms/*" for r in REGIONS if r != region)
    assert s3_statements == sorted(
        [
            (["s3:GetObject", "s3:PutObject"], [f"<{bucket_id}.Arn>/rooms/*"]),
            (["s3:ListBucket"], [f"<{bucket_id}.Arn>"]),
            (["s3:GetObject"], others),
        ]
    )
    environment = resolve(function["Properties"]["Environment"]["Variables"], region=region)
    assert environment["ATTACHMENT_BUCKET"] == bucket_name(region)
    assert environment["ATTACHMENT_BUCKET_PATTERN"] == bucket_name("{region}")
    assert environment["MAX_ATTACHMENT_BYTES"] == str(10 * 1024 * 1024)
    assert environment["UPLOAD_SLOTS_PER_USER_PER_MINUTE"] == "10"


@pytest.mark.parametrize("region", REGIONS)
def test_replication_failures_are_alarmed_per_destination(app3: SynthResult, region: str) -> None:
    template = app3.template_json(region)
    alarms = [
        alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == "OperationsFailedReplication"
    ]
    (actions_json,) = {
        json.dumps(alarm["Properties"]["AlarmActions"])
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Namespace") != "AWS/S3"
    }
    other_actions = json.loads(actions_json)
    seen = []
    for alarm in alarms:
        dimensions = {d["Name"]: resolve(d["Value"], region=region) for d in alarm["Dimensions"]}
        target = dimensions["RuleId"].removeprefix("to-")
        assert dimensions == {
            "SourceBucket": bucket_name(region),
            "DestinationBucket": bucket_name(target),
            "RuleId": f"to-{target}",
        }
        assert alarm["Namespace"] == "AWS/S3" and alarm["Threshold"] == 1
        assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        # S3 emits the metric only while it replicates: no data is no failure.
        assert alarm["TreatMissingData"] == "notBreaching"
        # The same action as every other alarm of the stack (the alarm topic).
        assert alarm["AlarmActions"] == other_actions
        seen.append(target)
    assert sorted(seen) == sorted(r for r in REGIONS if r != region)


def test_bucket_names_too_long_are_refused() -> None:
    from multiregion_chat.infra.config import ChatConfig, ConfigError

    with pytest.raises(ConfigError, match="attachment bucket names"):
        ChatConfig.from_mapping({"appName": "a-very-long-app-name1", "stage": "stagingstaging12"})
