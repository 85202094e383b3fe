"""The optional global endpoint (domainName + hostedZoneId): absent by default, whole when set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from multiregion_chat.infra.config import ChatConfig, ConfigError

from .helpers import (
    ACCOUNT,
    STACK_UUID,
    JsonDict,
    SynthResult,
    api,
    as_list,
    function_by_handler,
    getatt_id,
    only,
    resolve,
    resources,
    role_statements,
    synth,
)
from .template_checks import XRAY_ACTIONS

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
DOMAIN = "example.com"
ZONE = "Z0123456789ABCDEFGHIJ"
HEALTH_HANDLER = "multiregion_chat.runtime.handlers.health_handler.handler"
HTTP_HANDLER = "multiregion_chat.runtime.handlers.http_handler.handler"
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
GLOBAL_TYPES = (
    "AWS::CertificateManager::Certificate",
    "AWS::ApiGatewayV2::DomainName",
    "AWS::ApiGatewayV2::ApiMapping",
    "AWS::Route53::HealthCheck",
    "AWS::Route53::RecordSet",
)


@pytest.fixture(scope="module")
def app_global(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynthResult]:
    yield synth({"domainName": DOMAIN, "hostedZoneId": ZONE}, tmp_path_factory.mktemp("global"))


@pytest.fixture(scope="module", params=REGIONS)
def region(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The health route's key: the stack id's UUID (infra/global_endpoint.py, health_path).
HEALTH_PATH = f"/health/{STACK_UUID}"


def health_routes(template: JsonDict, region: str) -> dict[str, JsonDict]:
    """Logical id -> properties of every route whose key resolves to ``GET /health...``."""
    return {
        logical_id: r["Properties"]
        for logical_id, r in resources(template, "AWS::ApiGatewayV2::Route").items()
        if str(resolve(r["Properties"]["RouteKey"], region=region)).startswith("GET /health")
    }


def route_keys(template: JsonDict) -> set[str]:
    return {
        r["Properties"]["RouteKey"]
        for r in resources(template, "AWS::ApiGatewayV2::Route").values()
    }


def test_default_synth_has_no_global_endpoint(app3: SynthResult, region: str) -> None:
    template = app3.template_json(region)
    for resource_type in GLOBAL_TYPES:
        assert not resources(template, resource_type), resource_type
    assert "GET /health" not in route_keys(template)
    # Nor its function: no reserved concurrency taken for a route that is not there.
    handlers = {
        f["Properties"]["Handler"] for f in resources(template, "AWS::Lambda::Function").values()
    }
    assert HEALTH_HANDLER not in handlers
    assert app3.stacks[region].functions.health_handler is None
    assert not {"GlobalWebSocketUrl", "GlobalHttpUrl"} & set(template["Outputs"])


def test_certificate_is_dns_validated_in_the_zone(app_global: SynthResult, region: str) -> None:
    _, certificate = only(app_global.template_json(region), "AWS::CertificateManager::Certificate")
    props = certificate["Properties"]
    assert props["DomainName"] == f"chat.{DOMAIN}"
    assert props["SubjectAlternativeNames"] == [f"api.{DOMAIN}"]
    assert props["ValidationMethod"] == "DNS"
    assert props["DomainValidationOptions"] == [
        {"DomainName": f"chat.{DOMAIN}", "HostedZoneId": ZONE},
        {"DomainName": f"api.{DOMAIN}", "HostedZoneId": ZONE},
    ]


def test_custom_domains_map_both_apis(app_global: SynthResult, region: str) -> None:
    template = app_global.template_json(region)
    certificate_id, _ = only(template, "AWS::CertificateManager::Certificate")
    domains = {
        d["Properties"]["DomainName"]: (logical_id, d["Properties"]["DomainNameConfigurations"])
        for logical_id, d in resources(template, "AWS::ApiGatewayV2::DomainName").items()
    }
    assert set(domains) == {f"chat.{DOMAIN}", f"api.{DOMAIN}"}
    for _, configurations in domains.values():
        assert configurations == [
            {"CertificateArn": {"Ref": certificate_id}, "EndpointType": "REGIONAL",
             "SecurityPolicy": "TLS_1_2"}
        ]  # fmt: skip
    websocket_api, _ = api(template, "WEBSOCKET")
    http_api, _ = api(template, "HTTP")
    mappings = {
        (m["Properties"]["DomainName"]["Ref"], m["Properties"]["ApiId"]["Ref"],
         m["Properties"]["Stage"], m["Properties"].get("ApiMappingKey"))
        for m in resources(template, "AWS::ApiGatewayV2::ApiMapping").values()
    }  # fmt: skip
    assert mappings == {
        (domains[f"chat.{DOMAIN}"][0], websocket_api, "prod", None),
        (domains[f"api.{DOMAIN}"][0], http_api, "$default", None),
    }


def test_health_check_calls_the_regions_own_http_api(app_global: SynthResult, region: str) -> None:
    template = app_global.template_json(region)
    http_api, _ = api(template, "HTTP")
    _, check = only(template, "AWS::Route53::HealthCheck")
    config = check["Properties"]["HealthCheckConfig"]
    assert config["Type"] == "HTTPS" and config["Port"] == 443
    # The path Route 53 calls is the one route: /health/<the stack id's UUID>, not /health.
    assert resolve(config["ResourcePath"], region=region) == HEALTH_PATH
    assert "Fn::Select" in str(config["ResourcePath"])  # a deploy-time value, not a constant
    assert config["FullyQualifiedDomainName"] == {
        "Fn::Join": ["", [{"Ref": http_api}, f".execute-api.{region}.", {"Ref": "AWS::URLSuffix"}]]
    }
    (health_route,) = health_routes(template, region).values()
    assert resolve(health_route["RouteKey"], region=region) == f"GET {HEALTH_PATH}"
    assert health_route["AuthorizationType"] == "NONE"
    assert health_route["ApiId"] == {"Ref": http_api}
    # The message routes keep their authorizer.
    others = [
        r["Properties"]
        for r in resources(template, "AWS::ApiGatewayV2::Route").values()
        if r["Properties"]["ApiId"] == {"Ref": http_api}
        and str(r["Properties"]["RouteKey"]).startswith(("GET /rooms", "POST /rooms"))
    ]
    assert len(others) == 2 and all(r["AuthorizationType"] == "CUSTOM" for r in others)


def _integration_function(template: JsonDict, route: JsonDict) -> str:
    """The logical id of the function behind an HTTP API route's Lambda proxy integration."""
    integration_id = route["Target"]["Fn::Join"][1][1]["Ref"]
    integration = template["Resources"][integration_id]["Properties"]
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == "2.0"
    return getatt_id(integration["IntegrationUri"])


def test_health_route_has_a_function_of_its_own(app_global: SynthResult, region: str) -> None:
    """Not HttpHandler: long polls fill its capped executions, which must not fail the check."""
    template = app_global.template_json(region)
    routes = {
        resolve(r["Properties"]["RouteKey"], region=region): r["Properties"]
        for r in resources(template, "AWS::ApiGatewayV2::Route").values()
    }
    health_id, health = function_by_handler(template, HEALTH_HANDLER)
    http_id, http_handler = function_by_handler(template, HTTP_HANDLER)
    assert _integration_function(template, routes[f"GET {HEALTH_PATH}"]) == health_id
    for key in ("GET /rooms/{room}/messages", "POST /rooms/{room}/messages"):
        assert _integration_function(template, routes[key]) == http_id
    props = health["Properties"]
    # Executions of its own, apart from HttpHandler's (and a cap on a flood of the route).
    assert props["ReservedConcurrentExecutions"] == 5
    assert http_handler["Properties"]["ReservedConcurrentExecutions"] == (
        app_global.config.http_reserved_concurrency
    )
    assert (props["Runtime"], props["Architectures"]) == ("python3.14", ["arm64"])
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Timeout"] == 3 and props["MemorySize"] == 256
    # Powertools' variables only: no table, bus or secret name to reach.
    assert set(props["Environment"]["Variables"]) == POWERTOOLS_ENV
    assert app_global.stacks[region].functions.health_handler is not None


def test_health_function_may_only_log_and_trace(app_global: SynthResult, region: str) -> None:
    template = app_global.template_json(region)
    _, health = function_by_handler(template, HEALTH_HANDLER)
    role_id = getatt_id(health["Properties"]["Role"])
    assert "ManagedPolicyArns" not in template["Resources"][role_id]["Properties"]
    own_log_group = health["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    granted = sorted(
        (tuple(sorted(as_list(s["Action"]))), str(s["Resource"]))
        for s in role_statements(template, role_id)
    )
    assert granted == sorted(
        [
            (
                ("logs:CreateLogStream", "logs:PutLogEvents"),
                str({"Fn::GetAtt": [own_log_group, "Arn"]}),
            ),
            (tuple(XRAY_ACTIONS), "*"),
        ]
    )


def test_only_the_health_route_invokes_the_health_function(
    app_global: SynthResult, region: str
) -> None:
    template = app_global.template_json(region)
    http_api, _ = api(template, "HTTP")
    health_id, _ = function_by_handler(template, HEALTH_HANDLER)
    http_id, _ = function_by_handler(template, HTTP_HANDLER)
    source_arns: dict[str, list[str]] = {health_id: [], http_id: []}
    for permission in resources(template, "AWS::Lambda::Permission").values():
        props = permission["Properties"]
        function = props["FunctionName"].get("Fn::GetAtt", [None])[0]
        if function in source_arns:
            assert props["Principal"] == "apigateway.amazonaws.com"
            arn = resolve(props["SourceArn"], region=region, refs={http_api: "http123"})
            source_arns[function].append(arn)
    prefix = f"arn:aws:execute-api:{region}:{ACCOUNT}:http123/*/*"
    assert source_arns[health_id] == [f"{prefix}{HEALTH_PATH}"]
    # HttpHandler: the message routes only (one permission per method).
    assert source_arns[http_id] == [f"{prefix}/rooms/{{room}}/messages"] * 2


def test_health_function_is_alarmed(app_global: SynthResult, region: str) -> None:
    """Errors or throttles of the health check are a failover in the making."""
    template = app_global.template_json(region)
    health_id, _ = function_by_handler(template, HEALTH_HANDLER)
    alarmed = sorted(
        a["Properties"]["MetricName"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/Lambda"
        and a["Properties"]["Dimensions"][0]["Value"] == {"Ref": health_id}
    )
    assert alarmed == ["Errors", "Throttles"]
    assert {"HealthHandlerErrors", "HealthHandlerThrottles"} <= set(
        app_global.stacks[region].monitoring.alarms
    )


def test_latency_records_with_health_check(app_global: SynthResult, region: str) -> None:
    template = app_global.template_json(region)
    check_id, _ = only(template, "AWS::Route53::HealthCheck")
    domains = {
        d["Properties"]["DomainName"]: logical_id
        for logical_id, d in resources(template, "AWS::ApiGatewayV2::DomainName").items()
    }
    records = {
        r["Properties"]["Name"]: r["Properties"]
        for r in resources(template, "AWS::Route53::RecordSet").values()
    }
    assert set(records) == {f"chat.{DOMAIN}.", f"api.{DOMAIN}."}
    for name, record in records.items():
        domain = domains[name.rstrip(".")]
        assert record["Type"] == "A" and record["HostedZoneId"] == ZONE
        assert record["Region"] == region and record["SetIdentifier"] == region
        assert record["HealthCheckId"] == {"Ref": check_id}
        assert record["AliasTarget"] == {
            "DNSName": {"Fn::GetAtt": [domain, "RegionalDomainName"]},
            "HostedZoneId": {"Fn::GetAtt": [domain, "RegionalHostedZoneId"]},
        }


def test_global_urls_are_stack_outputs(app_global: SynthResult, region: str) -> None:
    outputs = app_global.template_json(region)["Outputs"]
    assert outputs["GlobalWebSocketUrl"]["Value"] == f"wss://chat.{DOMAIN}"
    assert outputs["GlobalHttpUrl"]["Value"] == f"https://api.{DOMAIN}/"
    # The regional URLs stay (the smoke test and failover clients use them).
    assert "WebSocketUrl" in outputs and "HttpUrl" in outputs


def test_global_endpoint_templates_lint_clean_in_their_regions(app_global: SynthResult) -> None:
    executable = shutil.which(
        "cfn-lint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    )
    assert executable
    for region in REGIONS:
        template = app_global.outdir / f"chat-prod-{region}.template.json"
        result = subprocess.run(
            [executable, "--regions", region, "--", str(template)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{region}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"domainName": DOMAIN}, "hostedZoneId"),
        ({"hostedZoneId": ZONE}, "domainName"),
        ({"domainName": "not a domain", "hostedZoneId": ZONE}, "domainName"),
        ({"domainName": "https://example.com", "hostedZoneId": ZONE}, "domainName"),
        ({"domainName": DOMAIN, "hostedZoneId": "example.com"}, "hostedZoneId"),
        ({"domainName": DOMAIN, "hostedZoneId": "z0123"}, "hostedZoneId"),
    ],
)
def test_global_endpoint_keys_are_validated(values: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        ChatConfig.from_mapping(values)
    assert raised.value.key == key
    assert "\n" not in str(raised.value)


def test_global_endpoint_keys_accepted() -> None:
    config = ChatConfig.from_mapping({"domainName": "Chat.Example.COM.", "hostedZoneId": ZONE})
    assert config.domain_name == "chat.example.com"
    assert config.global_websocket_domain == "chat.chat.example.com"
    assert config.global_http_domain == "api.chat.example.com"
    assert ChatConfig.from_mapping({}).domain_name is None
