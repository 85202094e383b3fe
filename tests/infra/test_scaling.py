"""App shapes: 1, 3, 10 and 20 regions; stages side by side; cdk-nag gating synth."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_cdk import aws_sqs as sqs

from app import build_app

from .conftest import TWENTY_REGIONS
from .helpers import (
    ACCOUNT,
    SynthResult,
    api,
    forwarding_rules,
    make_app,
    only,
    resolve,
    resources,
    role_statements,
    synth,
)

TEN_REGIONS = (
    "us-east-1,us-east-2,us-west-2,eu-west-1,eu-central-1,"
    "ap-northeast-1,ap-southeast-2,ap-south-1,sa-east-1,ca-central-1"
)


@pytest.fixture(scope="module")
def app1_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    """One region, a non-prod stage (so the account logging role is owned elsewhere), own
    CORS origins."""
    yield synth(
        {
            "regions": "eu-west-1",
            "stage": "dev",
            "httpCorsOrigins": "https://chat.example.com,http://localhost:8080",
        },
        tmp_path_factory.mktemp("app1"),
    )


@pytest.fixture(scope="module")
def app10(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    yield synth({"regions": TEN_REGIONS}, tmp_path_factory.mktemp("app10"))


@pytest.fixture(scope="module")
def app2_external_secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    """signingSecretManaged=false with an own name: the operator's replicated secret."""
    yield synth(
        {
            "regions": "eu-west-1,us-west-2",
            "signingSecretManaged": "false",
            "signingSecretName": "shared/chat-signing",
        },
        tmp_path_factory.mktemp("app2"),
    )


def _secret_policy_resource(template: dict[str, object], region: str) -> object:
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]  # type: ignore[index]
        if statement["Action"] == "secretsmanager:GetSecretValue"
    ]
    # The authorizer and ClientMessageHandler (``refresh``), on the same secret.
    assert len(statements) == 2
    (resource,) = {json.dumps(resolve(s["Resource"], region=region)) for s in statements}
    return json.loads(resource)


def _check_signing_secret(result: SynthResult, expected_regions: list[str]) -> None:
    """Created once, in the first region, replicated to every other; referenced elsewhere."""
    first, *others = expected_regions
    name = result.config.signing_secret_id
    manifest = json.loads((result.outdir / "manifest.json").read_text())["artifacts"]
    for region in expected_regions:
        template = result.template_json(region)
        secrets = resources(template, "AWS::SecretsManager::Secret")
        stack_name = result.stacks[region].stack_name
        declared = manifest[stack_name].get("dependencies", [])
        dependencies = [d for d in declared if ".assets" not in d]
        if region == first:
            ((_, secret),) = secrets.items()
            assert secret["Properties"]["Name"] == name
            replicas = secret["Properties"].get("ReplicaRegions", [])
            assert [replica["Region"] for replica in replicas] == others
            assert dependencies == []
        else:
            assert secrets == {}
            assert dependencies == [result.stacks[first].stack_name]
            assert _secret_policy_resource(template, region) == (
                f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:{name}-??????"
            )


def test_external_signing_secret(app2_external_secret: SynthResult) -> None:
    manifest = json.loads((app2_external_secret.outdir / "manifest.json").read_text())
    for region in ("eu-west-1", "us-west-2"):
        template = app2_external_secret.template_json(region)
        assert resources(template, "AWS::SecretsManager::Secret") == {}
        assert _secret_policy_resource(template, region) == (
            f"arn:aws:secretsmanager:{region}:{ACCOUNT}:secret:shared/chat-signing-??????"
        )
        artifact = manifest["artifacts"][f"chat-prod-{region}"]
        assert [d for d in artifact.get("dependencies", []) if ".assets" not in d] == []
        (function,) = [
            f
            for f in resources(template, "AWS::Lambda::Function").values()
            if f["Properties"]["Handler"] == "multiregion_chat.runtime.handlers.authorizer.handler"
        ]
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["SIGNING_SECRET_NAME"] == "shared/chat-signing"


def _check_mesh(result: SynthResult, expected_regions: list[str]) -> None:
    assert sorted(result.stacks) == sorted(expected_regions)
    assert sorted(stack.stack_name for stack in result.stacks.values()) == sorted(
        f"chat-prod-{region}" for region in expected_regions
    )
    n = len(expected_regions)
    for region in expected_regions:
        template = result.template_json(region)
        rules = forwarding_rules(template)
        assert len(rules) == math.ceil((n - 1) / 5), region
        targets = [
            resolve(target["Arn"], region=region)
            for rule in rules.values()
            for target in rule["Properties"]["Targets"]
        ]
        assert all(len(rule["Properties"]["Targets"]) <= 5 for rule in rules.values())
        expected = sorted(
            f"arn:aws:events:{other}:{ACCOUNT}:event-bus/chat-prod-chat-bus"
            for other in expected_regions
            if other != region
        )
        assert sorted(targets) == expected
        for rule in rules.values():
            assert rule["Properties"]["EventPattern"]["detail"] == {"originRegion": [region]}
            for target in rule["Properties"]["Targets"]:
                assert "RetryPolicy" in target and "DeadLetterConfig" in target
        # One forwarding role for all rules, scoped to exactly the other buses.
        (role_id,) = {
            target["RoleArn"]["Fn::GetAtt"][0]
            for rule in rules.values()
            for target in rule["Properties"]["Targets"]
        }
        (statement,) = role_statements(template, role_id)
        assert sorted(resolve(statement["Resource"], region=region)) == expected


def test_one_region_has_no_forwarding(app1_dev: SynthResult) -> None:
    assert list(app1_dev.stacks) == ["eu-west-1"]
    stack = app1_dev.stacks["eu-west-1"]
    assert stack.stack_name == "chat-dev-eu-west-1"
    template = app1_dev.template_json("eu-west-1")
    assert forwarding_rules(template) == {}
    assert stack.replication.forwarding_role is None
    # Only the delivery rule and the server API's disconnect rule (local
    # delivery only), and no role for EventBridge at all.
    patterns = [
        r["Properties"]["EventPattern"] for r in resources(template, "AWS::Events::Rule").values()
    ]
    assert sorted(patterns, key=len) == [
        {"source": ["chat.chat", "chat.chat.server"]},
        {"source": ["chat.chat"], "detail-type": ["chat.disconnect"]},
    ]
    principals = [
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
        for role in resources(template, "AWS::IAM::Role").values()
    ]
    assert "events.amazonaws.com" not in principals
    # A non-prod stage leaves the account setting to prod (apiGatewayAccountRole's default).
    assert resources(template, "AWS::ApiGateway::Account") == {}
    assert "apigateway.amazonaws.com" not in principals


def test_http_api_cors_origins_from_config(app1_dev: SynthResult) -> None:
    template = app1_dev.template_json("eu-west-1")
    _, http = api(template, "HTTP")
    assert http["Properties"]["CorsConfiguration"]["AllowOrigins"] == [
        "https://chat.example.com",
        "http://localhost:8080",
    ]
    assert http["Properties"]["Name"] == "chat-dev-http"


def test_dev_stage_is_disposable(app1_dev: SynthResult) -> None:
    template = app1_dev.template_json("eu-west-1")
    for table in resources(template, "AWS::DynamoDB::Table").values():
        assert table["DeletionPolicy"] == "Delete"
        assert table["Properties"]["DeletionProtectionEnabled"] is False
    for log_group in resources(template, "AWS::Logs::LogGroup").values():
        assert log_group["DeletionPolicy"] == "Delete"
    _, bus = only(template, "AWS::Events::EventBus")
    assert bus["Properties"]["Name"] == "chat-dev-chat-bus"
    _, secret = only(template, "AWS::SecretsManager::Secret")
    assert secret["DeletionPolicy"] == "Delete"
    assert secret["Properties"]["Name"] == "chat/dev/token-signing-secret"


def test_one_region_signing_secret(app1_dev: SynthResult) -> None:
    _check_signing_secret(app1_dev, ["eu-west-1"])


def test_three_regions(app3: SynthResult) -> None:
    _check_mesh(app3, ["us-east-1", "eu-west-1", "ap-northeast-1"])
    _check_signing_secret(app3, ["us-east-1", "eu-west-1", "ap-northeast-1"])


def test_ten_regions(app10: SynthResult) -> None:
    _check_mesh(app10, TEN_REGIONS.split(","))
    _check_signing_secret(app10, TEN_REGIONS.split(","))


def test_twenty_regions(app20: SynthResult) -> None:
    _check_mesh(app20, TWENTY_REGIONS.split(","))
    _check_signing_secret(app20, TWENTY_REGIONS.split(","))


def test_stages_side_by_side_do_not_collide() -> None:
    """prod and dev in one account: disjoint stack names, buses and sources."""
    prod = build_app(make_app({"stage": "prod"}))
    dev = build_app(make_app({"stage": "dev"}))
    prod_stacks, dev_stacks = list(prod.stacks.values()), list(dev.stacks.values())
    assert len(prod_stacks) == len(dev_stacks) == 3
    assert not {s.stack_name for s in prod_stacks} & {s.stack_name for s in dev_stacks}
    assert not {s.node.id for s in prod_stacks} & {s.node.id for s in dev_stacks}
    assert prod_stacks[0].config.bus_name != dev_stacks[0].config.bus_name
    assert prod_stacks[0].config.signing_secret_id != dev_stacks[0].config.signing_secret_id
    # One owner of the account-level singleton per account and region: prod.
    assert all(stack.api.account is not None for stack in prod_stacks)
    assert all(stack.api.account is None for stack in dev_stacks)


def test_a_dev_stage_can_own_the_account_setting(tmp_path: Path) -> None:
    """An account without prod: one other stage takes the singleton (retained too)."""
    result = synth(
        {"regions": "eu-west-1", "stage": "dev", "apiGatewayAccountRole": "true"}, tmp_path
    )
    template = result.template_json("eu-west-1")
    _, account = only(template, "AWS::ApiGateway::Account")
    assert account["DeletionPolicy"] == "Retain"
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert template["Resources"][role_id]["DeletionPolicy"] == "Retain"


def test_unacknowledged_nag_finding_fails_synth(tmp_path: Path) -> None:
    """cdk-nag gates synth: a finding nobody acknowledged is an error, not a warning."""
    app = make_app({"regions": "us-east-1"}, tmp_path)
    (stack,) = build_app(app).stacks.values()
    sqs.Queue(stack, "Unreviewed")  # no TLS enforcement, not a DLQ, no DLQ
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    violations = {
        violation["ruleName"]: {c["constructPath"] for c in violation["violatingConstructs"]}
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
    }
    assert {"AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= set(violations)
    # Nothing else: every finding of the real app is acknowledged.
    assert set().union(*violations.values()) == {"chat-prod-us-east-1/Unreviewed/Resource"}
