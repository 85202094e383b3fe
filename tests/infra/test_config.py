"""ChatConfig: defaults, parsing of CLI strings, one-line errors naming the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multiregion_chat.infra.config import (
    ACCEPTED_REGIONS,
    CLOUDWATCH_LOG_RETENTION,
    CLOUDWATCH_LOG_RETENTION_DAYS,
    CONTEXT_KEYS,
    EXCLUDED_REGIONS,
    ChatConfig,
    ConfigError,
    RegionOverrides,
)

from .helpers import CDK_JSON_CONTEXT


def test_defaults() -> None:
    config = ChatConfig.from_mapping({})
    assert config == ChatConfig()
    assert config.regions == ("us-east-1", "eu-west-1", "ap-northeast-1")
    assert config.stage == "prod"
    assert config.removal_policy == "retain"
    assert config.stack_name("eu-west-1") == "chat-prod-eu-west-1"
    assert config.bus_name == "chat-prod-chat-bus"
    assert config.event_source == "chat.chat"
    assert config.metrics_namespace == "chat/prod"
    assert config.connection_ttl_seconds == 3 * 3600 > 7200
    assert config.history_retention_seconds == 86400
    assert config.other_regions("eu-west-1") == ("us-east-1", "ap-northeast-1")
    assert config.signing_secret_id == "chat/prod/token-signing-secret"
    assert config.signing_secret_managed is True
    assert config.primary_region == "us-east-1"


def test_signing_secret_keys() -> None:
    dev = ChatConfig.from_mapping({"appName": "talk", "stage": "dev"})
    assert dev.signing_secret_id == "talk/dev/token-signing-secret"
    own = ChatConfig.from_mapping(
        {"signingSecretName": "team/chat-key_1", "signingSecretManaged": "false"}
    )
    assert (own.signing_secret_id, own.signing_secret_managed) == ("team/chat-key_1", False)
    for bad in ("has space", "x" * 257, "quote'"):
        with pytest.raises(ConfigError, match="signingSecretName"):
            ChatConfig.from_mapping({"signingSecretName": bad})
    with pytest.raises(ConfigError, match="signingSecretManaged"):
        ChatConfig.from_mapping({"signingSecretManaged": "maybe"})


def test_cdk_json_context_matches_defaults() -> None:
    """cdk.json spells the defaults out; both must agree."""
    assert ChatConfig.from_mapping(CDK_JSON_CONTEXT) == ChatConfig()
    assert set(CONTEXT_KEYS) >= {key for key in CDK_JSON_CONTEXT if not key.startswith("@")}


def test_cli_strings_are_parsed() -> None:
    """`cdk synth -c key=value` always passes strings."""
    config = ChatConfig.from_mapping(
        {
            "appName": "talk",
            "stage": "dev",
            "regions": " us-west-2 , eu-central-1 ",
            "maxBodyBytes": "2048",
            "historyRetentionHours": "48",
            "connectionTtlHours": "4",
            "throttleRateLimit": "50",
            "throttleBurstLimit": "75",
            "logRetentionDays": "14",
            "fanoutConcurrency": "8",
            "alarmEmail": "ops@example.com",
            "apiGatewayAccountRole": "false",
            "httpCorsOrigins": " https://chat.example.com , http://localhost:8080 ",
            "connectionRateLimit": "5",
            "connectionBurstLimit": "12",
            "userRateLimit": "8",
            "userBurstLimit": "24",
            "maxRoomsPerConnection": "20",
            "maxConnectionsPerUser": "7",
            "maxLongPollsPerUser": "3",
            "httpReservedConcurrency": "40",
        }
    )
    assert config == ChatConfig(
        app_name="talk",
        stage="dev",
        regions=("us-west-2", "eu-central-1"),
        max_body_bytes=2048,
        history_retention_hours=48,
        connection_ttl_hours=4,
        throttle_rate_limit=50,
        throttle_burst_limit=75,
        log_retention_days=14,
        removal_policy="destroy",  # derived: stage is not prod
        fanout_concurrency=8,
        alarm_email="ops@example.com",
        api_gateway_account_role=False,
        http_cors_origins=("https://chat.example.com", "http://localhost:8080"),
        connection_rate_limit=5,
        connection_burst_limit=12,
        user_rate_limit=8,
        user_burst_limit=24,
        max_rooms_per_connection=20,
        max_connections_per_user=7,
        max_long_polls_per_user=3,
        http_reserved_concurrency=40,
    )
    assert config.bus_name == "talk-dev-chat-bus"
    assert config.event_source == "talk.chat"


def test_api_gateway_account_role_is_owned_by_prod_only() -> None:
    """One owner of the account-level singleton: prod by default, any stage on request."""
    assert ChatConfig.from_mapping({}).api_gateway_account_role is True
    assert ChatConfig.from_mapping({"stage": "dev"}).api_gateway_account_role is False
    assert ChatConfig.from_mapping({"stage": "test1"}).api_gateway_account_role is False
    dev_owner = ChatConfig.from_mapping({"stage": "dev", "apiGatewayAccountRole": "true"})
    assert dev_owner.api_gateway_account_role is True
    prod_guest = ChatConfig.from_mapping({"apiGatewayAccountRole": False})
    assert prod_guest.api_gateway_account_role is False
    assert "apiGatewayAccountRole" not in CDK_JSON_CONTEXT  # or it would override the stage


def test_removal_policy_override() -> None:
    assert ChatConfig.from_mapping({"stage": "dev", "removalPolicy": "retain"}).removal_policy == (
        "retain"
    )
    assert ChatConfig.from_mapping({"removalPolicy": "DESTROY"}).removal_policy == "destroy"


# The services the stacks use, as botocore's endpoint data names them.
USED_SERVICES = (
    "apigateway",  # WebSocket and HTTP APIs (API Gateway v2 shares the endpoint)
    "lambda",
    "dynamodb",
    "events",
    "sqs",
    "sns",
    "s3",  # attachment buckets
    "kms",
    "secretsmanager",
    "xray",
    "monitoring",  # CloudWatch
    "logs",
    "cloudformation",
)


def _template_resource_types() -> set[str]:
    """Every resource type a region stack declares (built, not synthesized: no bundling)."""
    from aws_cdk import App

    from multiregion_chat.infra.region_stack import ChatRegionStack

    app = App(context={**CDK_JSON_CONTEXT, "regions": "us-east-1"})
    config = ChatConfig.from_context(app.node)
    stack = ChatRegionStack(app, "Types", config=config, region="us-east-1")
    return {
        child.cfn_resource_type
        for child in stack.node.find_all()
        if hasattr(child, "cfn_resource_type")
        and hasattr(child, "logical_id")
        # A custom resource is our own function's, in every region the functions are.
        and not child.cfn_resource_type.startswith("Custom::")
    } - {"AWS::CDK::Metadata"}


def test_region_list_is_complete() -> None:
    """ACCEPTED_REGIONS is exactly the `aws` partition's regions where every service
    the stacks use has an endpoint (botocore) and every resource type they declare
    exists (CloudFormation's per-region registry, as cfn-lint ships it), and CDK
    knows each of them; what is left out is named in EXCLUDED_REGIONS."""
    import botocore
    import cfnlint
    from aws_cdk.region_info import RegionInfo

    endpoints = json.loads((Path(botocore.__file__).parent / "data" / "endpoints.json").read_text())
    (aws,) = [p for p in endpoints["partitions"] if p["partition"] == "aws"]
    with_services = {
        region
        for region in aws["regions"]
        if all(region in aws["services"][s]["endpoints"] for s in USED_SERVICES)
    }
    providers = Path(cfnlint.__file__).parent / "data" / "schemas" / "providers"
    types = _template_resource_types()
    assert {"AWS::ApiGatewayV2::Api", "AWS::Lambda::Function", "AWS::KMS::Key"} <= types
    with_resources = set()
    for region in aws["regions"]:
        schema = providers / f"{region}.json"
        if schema.is_file() and types <= set(json.loads(schema.read_text())):
            with_resources.add(region)
    assert set(ACCEPTED_REGIONS) == with_services & with_resources
    assert set(EXCLUDED_REGIONS) == set(aws["regions"]) - set(ACCEPTED_REGIONS)
    cdk_regions = {region.name for region in RegionInfo.regions if region.partition == "aws"}
    assert set(ACCEPTED_REGIONS) <= cdk_regions
    assert len(set(ACCEPTED_REGIONS)) == len(ACCEPTED_REGIONS)
    assert ChatConfig.from_mapping({"regions": list(ACCEPTED_REGIONS)}).regions == (
        ACCEPTED_REGIONS
    )


def test_excluded_region_says_why() -> None:
    with pytest.raises(ConfigError, match="'me-south-1' is not accepted: out of service"):
        ChatConfig.from_mapping({"regions": "us-east-1,me-south-1"})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("regions", "us-east-1,xx-fake-1", "'xx-fake-1' is not an AWS region; accepted: us-east-1"),
        ("regions", "us-east-1,eu-west-1,us-east-1", "'us-east-1' is listed twice"),
        ("regions", "", "'' is empty"),
        ("regions", [], "[] is empty"),
        ("regions", "cn-north-1", "is not an AWS region"),
        ("regions", 42, "is not a list of regions"),
        ("stage", "Prod", "does not match"),
        ("stage", "pr-od", "does not match"),
        ("stage", "a" * 17, "does not match"),
        ("appName", "Chat", "does not match"),
        ("appName", "x", "does not match"),
        ("maxBodyBytes", "abc", "'abc' is not an integer; accepted: an integer from 1 to"),
        ("maxBodyBytes", "-5", "'-5' is out of range"),
        ("maxBodyBytes", "200000", "is out of range"),
        ("maxBodyBytes", "1.5", "is not an integer"),
        ("maxBodyBytes", True, "is not an integer"),
        ("maxBodyBytes", "32001", "accepted: an integer from 1 to 32000"),
        ("connectionRateLimit", "0", "is out of range"),
        ("connectionBurstLimit", "x", "is not an integer"),
        ("userRateLimit", "1001", "is out of range"),
        ("userBurstLimit", "0", "is out of range"),
        ("maxRoomsPerConnection", "501", "accepted: an integer from 1 to 500"),
        ("maxConnectionsPerUser", "0", "accepted: an integer from 1 to 1000"),
        ("maxConnectionsPerUser", "1001", "is out of range"),
        ("maxLongPollsPerUser", "0", "is out of range"),
        ("httpReservedConcurrency", "0", "is out of range"),
        ("httpReservedConcurrency", "501", "accepted: an integer from 1 to 500"),
        ("historyRetentionHours", "0", "is out of range"),
        ("connectionTtlHours", "2", "'2' is out of range; accepted: an integer from 3 to"),
        ("throttleRateLimit", "-1", "is out of range"),
        ("throttleBurstLimit", "lots", "is not an integer"),
        ("logRetentionDays", "31", "is not a CloudWatch Logs retention period; accepted: 1, 3"),
        ("logRetentionDays", "-30", "is out of range"),
        ("fanoutConcurrency", "0", "is out of range"),
        ("fanoutConcurrency", "1025", "is out of range"),
        ("fanoutMemoryMb", "127", "is out of range"),
        ("fanoutShardSize", "2001", "is out of range"),
        ("fanoutRequestBudget", "10001", "is out of range"),
        ("fanoutMaxWorkers", "1", "is out of range"),
        ("fanoutShardThreshold", "0", "is out of range"),
        ("removalPolicy", "snapshot", "is not a removal policy; accepted: retain, destroy"),
        ("alarmEmail", "not-an-email", "does not match"),
        ("apiGatewayAccountRole", "yes", "is not a boolean; accepted: true, false"),
        ("httpCorsOrigins", "chat.example.com", "'chat.example.com' is not an origin; accepted"),
        ("httpCorsOrigins", "https://chat.example.com/", "is not an origin"),
        ("httpCorsOrigins", "https://a.example.com/app", "is not an origin"),
        ("httpCorsOrigins", "*,https://a.example.com", 'mixes "*" with origins'),
        ("httpCorsOrigins", ",", "is not an origin"),
        ("httpCorsOrigins", [], "[] is empty"),
        ("httpCorsOrigins", "https://a.io,https://a.io", "'https://a.io' is listed twice"),
        ("httpCorsOrigins", 7, "is not a list of origins"),
    ],
)
def test_bad_values_name_the_key(key: str, value: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ChatConfig.from_mapping({key: value})
    message = str(raised.value)
    assert message.startswith(f"Invalid context value for {key!r}: ")
    assert fragment in message
    assert "\n" not in message
    assert raised.value.key == key


def test_cors_origins() -> None:
    assert ChatConfig().http_cors_origins == ("*",)
    assert ChatConfig.from_mapping({"httpCorsOrigins": "*"}).http_cors_origins == ("*",)
    assert ChatConfig.from_mapping(
        {"httpCorsOrigins": ["https://chat.example.com", "http://127.0.0.1:8000"]}
    ).http_cors_origins == ("https://chat.example.com", "http://127.0.0.1:8000")


def test_every_retention_value_is_accepted() -> None:
    for days in CLOUDWATCH_LOG_RETENTION_DAYS:
        assert ChatConfig.from_mapping({"logRetentionDays": days}).log_retention_days == days


def test_retention_list_is_cdks() -> None:
    """CLOUDWATCH_LOG_RETENTION is every finite RetentionDays member, each with its days."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_logs as logs
    from aws_cdk.assertions import Template

    from multiregion_chat.infra.region_stack import log_retention

    finite = {member.name for member in logs.RetentionDays} - {"INFINITE"}
    assert set(CLOUDWATCH_LOG_RETENTION.values()) == finite
    stack = Stack(App(), "Retention")
    for days in CLOUDWATCH_LOG_RETENTION:
        logs.LogGroup(stack, f"Group{days}", retention=log_retention(days))
    groups = Template.from_stack(stack).find_resources("AWS::Logs::LogGroup")
    assert sorted(g["Properties"]["RetentionInDays"] for g in groups.values()) == sorted(
        CLOUDWATCH_LOG_RETENTION
    )


def _run_app(
    repo_root: Path, context: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """Run app.py the way the CDK CLI does: context in CDK_CONTEXT_JSON."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(tmp_path),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    return subprocess.run(
        [sys.executable, "app.py"],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_app_prints_one_line_for_a_bad_region(repo_root: Path, tmp_path: Path) -> None:
    result = _run_app(repo_root, {**CDK_JSON_CONTEXT, "regions": "us-east-1,xx-fake-1"}, tmp_path)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "Invalid context value for 'regions': 'xx-fake-1' is not an AWS region; accepted: "
        + ", ".join(ACCEPTED_REGIONS)
    ]
    assert "jsii" not in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


@pytest.mark.parametrize(
    ("context", "limit"),
    [
        ({"httpReservedConcurrency": "100"}, 800),
        ({"httpReservedConcurrency": "500"}, 400),
        # HealthHandler's 5 come out of the same quota with the global endpoint.
        (
            {
                "httpReservedConcurrency": "100",
                "domainName": "example.com",
                "hostedZoneId": "Z0123456789ABCDEFGHIJ",
            },
            795,
        ),
    ],
)
def test_a_stage_that_cannot_fit_the_default_lambda_quota_is_refused(
    context: dict[str, str], limit: int
) -> None:
    # Reservations + FanoutWorkers + the 100 other functions need <= 1,000 (infra/concurrency.py).
    assert ChatConfig.from_mapping({**context, "fanoutMaxWorkers": str(limit)})
    with pytest.raises(ConfigError) as refused:
        ChatConfig.from_mapping({**context, "fanoutMaxWorkers": str(limit + 1)})
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("Invalid context value for 'fanoutMaxWorkers'")
    assert f"at most {limit} with that httpReservedConcurrency" in message
    assert "above Lambda's default quota of 1,000" in message


def test_region_overrides_size_memory_by_memory_size() -> None:
    overrides = RegionOverrides(memory_size={"ClientMessageHandler": 1024})
    assert overrides.memory_size == {"ClientMessageHandler": 1024}
    with pytest.raises(ConfigError) as refused:
        RegionOverrides(memory_size={"ClientMessageHandler": 64})
    assert refused.value.key == "memory_size['ClientMessageHandler']"
    assert "accepted: an integer from 128 to 10240" in str(refused.value)
