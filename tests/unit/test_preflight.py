"""``python -m tools.preflight`` against stubbed AWS answers (botocore Stubber, no network)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from multiregion_chat.infra.config import ChatConfig
from tools.preflight.cli import main
from tools.preflight.plan import plan_from_config

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"


class FakeAws:
    """One stubbed client per (service, region); every call must be one the test expects."""

    def __init__(self, region: str = REGION, stage: str = "prod") -> None:
        self.region = region
        self.stack_name = f"chat-{stage}-{region}"
        self.session = boto3.session.Session(
            aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        )
        self.stubbers: dict[tuple[str, str], Stubber] = {}
        self.clients: dict[tuple[str, str], Any] = {}

    def __call__(self, service: str, region: str) -> Any:
        return self.stub(service, region).client

    def stub(self, service: str, region: str | None = None) -> Stubber:
        region = region or self.region
        if (service, region) not in self.stubbers:
            client = self.session.client(service, region_name=region)  # type: ignore[call-overload]
            stubber = Stubber(client)
            stubber.activate()
            self.stubbers[service, region] = stubber
        return self.stubbers[service, region]

    def verify(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()

    # ---- the answers of a typical account -----------------------------------
    def enabled(self, status: str = "ENABLED_BY_DEFAULT") -> None:
        self.stub("account", "us-east-1").add_response(
            "get_region_opt_status",
            {"RegionName": self.region, "RegionOptStatus": status},
            {"RegionName": self.region},
        )

    def lambda_limits(self, quota: int, unreserved: int) -> None:
        self.stub("lambda").add_response(
            "get_account_settings",
            {
                "AccountLimit": {
                    "ConcurrentExecutions": quota,
                    "UnreservedConcurrentExecutions": unreserved,
                }
            },
        )

    def stack(self, reserved: dict[str, int] | None) -> None:
        """This stage's stack: None before its first deploy, else function -> reservation."""
        cloudformation = self.stub("cloudformation")
        if reserved is None:
            cloudformation.add_client_error(
                "list_stack_resources",
                "ValidationError",
                f"Stack with id {self.stack_name} does not exist",
                expected_params={"StackName": self.stack_name},
            )
            return
        summaries = [
            {
                "LogicalResourceId": name,
                "PhysicalResourceId": f"{self.stack_name}-{name}",
                "ResourceType": "AWS::Lambda::Function",
                "LastUpdatedTimestamp": "2026-01-01T00:00:00Z",
                "ResourceStatus": "UPDATE_COMPLETE",
            }
            for name in reserved
        ]
        cloudformation.add_response(
            "list_stack_resources",
            {"StackResourceSummaries": summaries},
            {"StackName": self.stack_name},
        )
        for name, value in reserved.items():
            answer = {"ReservedConcurrentExecutions": value} if value else {}
            self.stub("lambda").add_response(
                "get_function_concurrency", answer, {"FunctionName": f"{self.stack_name}-{name}"}
            )

    def bootstrapped(self, version: int | None = 29) -> None:
        ssm = self.stub("ssm")
        if version is None:
            ssm.add_client_error("get_parameter", "ParameterNotFound", "no such parameter")
            return
        ssm.add_response(
            "get_parameter",
            {"Parameter": {"Name": "/cdk-bootstrap/hnb659fds/version", "Value": str(version)}},
            {"Name": "/cdk-bootstrap/hnb659fds/version"},
        )

    def api_gateway_quotas(self, connects: float = 500.0, throttle: float = 10_000.0) -> None:
        quotas = self.stub("service-quotas")
        for code, value in (("L-9ED1E49A", connects), ("L-8A5B8E43", throttle)):
            quotas.add_response(
                "get_service_quota",
                {"Quota": {"QuotaCode": code, "Value": value}},
                {"ServiceCode": "apigateway", "QuotaCode": code},
            )


@pytest.fixture
def aws() -> Iterator[FakeAws]:
    fake = FakeAws()
    yield fake
    fake.verify()


def preflight(aws: FakeAws, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["--context", str(REPO / "cdk.json"), "--regions", aws.region, *extra]
    return main(argv, clients=aws, out=out), out.getvalue()


def rows(text: str, region: str = REGION) -> dict[str, str]:
    """check name -> its result column."""
    found = {}
    for line in text.splitlines()[1:]:
        for name in ("region enabled", "Lambda concurrency", "CDK bootstrap"):
            if line.startswith(region) and name in line:
                found[name] = line.split(name, 1)[1].split()[0]
    return found


def test_a_ready_account_passes_with_the_table(aws: FakeAws) -> None:
    aws.enabled()
    aws.lambda_limits(quota=1000, unreserved=1000)
    aws.stack(None)
    aws.bootstrapped()
    aws.api_gateway_quotas()
    status, text = preflight(aws)
    assert status == 0, text
    assert text.splitlines()[0].split() == ["region", "check", "result", "found"]
    assert rows(text) == {"region enabled": "ok", "Lambda concurrency": "ok", "CDK bootstrap": "ok"}
    assert "WebSocket new connections/s" in text and "500 (applied)" in text
    assert text.splitlines()[-1].startswith("OK: nothing blocks the deploy")


@pytest.mark.parametrize("quota", [10, 50])
def test_a_new_accounts_small_quota_blocks_the_reservation(aws: FakeAws, quota: int) -> None:
    aws.enabled()
    aws.lambda_limits(quota=quota, unreserved=quota)
    aws.stack(None)
    aws.bootstrapped()
    aws.api_gateway_quotas()
    status, text = preflight(aws)
    assert status == 1, text
    assert rows(text)["Lambda concurrency"] == "BLOCK"
    assert f"quota {quota}" in text and "'Concurrent executions' quota" in text
    assert f"BLOCKED: {REGION}" in text


def test_a_second_stage_at_500_does_not_fit_beside_the_first() -> None:
    aws = FakeAws(stage="dev")
    # prod holds 505 (500 + HealthHandler's 5); dev with httpReservedConcurrency=500
    # and the global endpoint asks for 505 more: 1,110 with Lambda's 100 > 1,000.
    aws.enabled()
    aws.lambda_limits(quota=1000, unreserved=495)
    aws.stack(None)
    aws.bootstrapped()
    aws.api_gateway_quotas()
    status, text = preflight(
        aws,
        *("--stage", "dev", "-c", "httpReservedConcurrency=500", "-c", "fanoutMaxWorkers=10"),
        *("-c", "domainName=example.com", "-c", "hostedZoneId=Z0123456789ABCDEFGHIJ"),
    )
    assert status == 1, text
    assert "505 more would leave -10" in text
    aws.verify()


def test_a_redeploy_counts_what_its_stack_already_holds(aws: FakeAws) -> None:
    # The stack's 100 are already out of the 200 unreserved: nothing more is needed.
    aws.enabled()
    aws.lambda_limits(quota=300, unreserved=200)
    aws.stack({"HttpHandler": 100, "ClientMessageHandler": 0})
    aws.bootstrapped()
    aws.api_gateway_quotas()
    status, text = preflight(aws)
    assert status == 0, text
    assert rows(text)["Lambda concurrency"] == "warn"  # below the default 1,000
    assert "(100 already held)" in text


def test_a_disabled_region_blocks_and_is_not_asked_further(aws: FakeAws) -> None:
    aws.enabled("DISABLED")  # any other call would fail the Stubber
    status, text = preflight(aws)
    assert status == 1
    assert f"aws account enable-region --region-name {REGION}" in text


def test_opt_in_status_falls_back_to_ec2_when_the_account_api_is_denied(aws: FakeAws) -> None:
    aws.stub("account", "us-east-1").add_client_error("get_region_opt_status", "AccessDenied")
    aws.stub("ec2", "us-east-1").add_response(
        "describe_regions",
        {"Regions": [{"RegionName": REGION, "OptInStatus": "not-opted-in"}]},
        {"AllRegions": True, "RegionNames": [REGION]},
    )
    status, text = preflight(aws)
    assert status == 1 and rows(text)["region enabled"] == "BLOCK"


def test_an_unbootstrapped_region_blocks(aws: FakeAws) -> None:
    aws.enabled()
    aws.lambda_limits(quota=1000, unreserved=1000)
    aws.stack(None)
    aws.bootstrapped(None)
    aws.api_gateway_quotas()
    status, text = preflight(aws)
    assert status == 1
    assert f"not bootstrapped: npx cdk bootstrap aws://<account>/{REGION}" in text


def test_an_old_bootstrap_blocks_and_a_denied_parameter_reads_the_toolkit_stack(
    aws: FakeAws,
) -> None:
    aws.enabled()
    aws.lambda_limits(quota=1000, unreserved=1000)
    aws.stack(None)
    aws.stub("ssm").add_client_error("get_parameter", "AccessDeniedException")
    aws.stub("cloudformation").add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "CDKToolkit",
                    "CreationTime": "2020-01-01T00:00:00Z",
                    "StackStatus": "CREATE_COMPLETE",
                    "Outputs": [{"OutputKey": "BootstrapVersion", "OutputValue": "4"}],
                }
            ]
        },
        {"StackName": "CDKToolkit"},
    )
    aws.api_gateway_quotas()
    status, text = preflight(aws)
    assert status == 1
    assert "version 4, the templates need 6" in text


def test_quotas_fall_back_to_the_documented_defaults_and_flag_the_fanout_budget() -> None:
    # af-south-1's default account throttle is 2,500/s: the default budget (5,000) takes it all.
    aws = FakeAws(region="af-south-1")
    aws.enabled("ENABLED")
    aws.lambda_limits(quota=1000, unreserved=1000)
    aws.stack(None)
    aws.bootstrapped()
    for _ in range(2):
        aws.stub("service-quotas").add_client_error("get_service_quota", "AccessDeniedException")
    status, text = preflight(aws)
    aws.verify()
    assert status == 0, text  # a warning, not a blocker
    assert "2,500 (documented default; Service Quotas: AccessDeniedException" in text
    assert "fanoutRequestBudget 5,000 leaves clients nothing" in text


def test_bad_arguments_exit_2(aws: FakeAws, capsys: pytest.CaptureFixture[str]) -> None:
    assert preflight(aws, "-c", "fanoutMaxWorkers=2000")[0] == 2
    assert "'fanoutMaxWorkers'" in capsys.readouterr().err


def test_the_plan_counts_the_stacks_reservations() -> None:
    (plain,) = plan_from_config(ChatConfig(regions=(REGION,), http_reserved_concurrency=40))
    assert plain.reserved == {"HttpHandler": 40}
    (with_health,) = plan_from_config(
        ChatConfig(regions=(REGION,), domain_name="example.com", hosted_zone_id="Z1")
    )
    assert with_health.reserved == {"HttpHandler": 100, "HealthHandler": 5}


@pytest.mark.parametrize(
    ("quota", "unreserved", "http_reserved", "blocked"),
    [
        (1000, 200, 100, False),  # leaves exactly Lambda's 100
        (1000, 199, 100, True),  # leaves 99
        (50, 50, 1, True),  # a quota of 50 keeps all 50 unreserved: nothing can be reserved
    ],
)
def test_the_reservation_must_leave_lambdas_unreserved_minimum(
    aws: FakeAws, quota: int, unreserved: int, http_reserved: int, blocked: bool
) -> None:
    aws.enabled()
    aws.lambda_limits(quota=quota, unreserved=unreserved)
    aws.stack(None)
    aws.bootstrapped()
    aws.api_gateway_quotas()
    status, text = preflight(aws, "-c", f"httpReservedConcurrency={http_reserved}")
    assert (rows(text)["Lambda concurrency"] == "BLOCK") is blocked, text
    assert status == int(blocked)
