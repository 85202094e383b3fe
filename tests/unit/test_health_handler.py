"""HealthHandler: ``GET /health/<key>``, Route 53's health check of the region (global endpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cold_start
from multiregion_chat.runtime.handlers import health_handler
from multiregion_chat.runtime.platform import aws_clients
from tests.unit.conftest import TEST_ENV, FakeLambdaContext

ROOT = Path(__file__).resolve().parents[2]
# The route's path carries the stack id's UUID (infra/global_endpoint.py, health_path).
HEALTH_PATH = "/health/6f1c3a40-1b2c-11f0-9c7d-0a1b2c3d4e5f"


def health_event() -> dict[str, Any]:
    """What API Gateway sends for ``GET /health/<key>`` (payload 2.0, no authorizer)."""
    return {
        "version": "2.0",
        "routeKey": f"GET {HEALTH_PATH}",
        "rawPath": HEALTH_PATH,
        "rawQueryString": "",
        "headers": {"user-agent": "Amazon-Route53-Health-Check-Service"},
        "requestContext": {
            "apiId": "http123",
            "http": {"method": "GET", "path": HEALTH_PATH, "protocol": "HTTP/1.1"},
            "requestId": "health-1",
            "routeKey": f"GET {HEALTH_PATH}",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any AWS client the handler asked for would fail the test."""

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the health check must not call AWS (no table, bus or secret)")

    for name in aws_clients.__all__:
        if name != "reset":
            monkeypatch.setattr(aws_clients, name, refused)
    monkeypatch.setattr("boto3.client", refused)
    monkeypatch.setattr("boto3.resource", refused)


def test_answers_ok_with_the_region_and_counts_a_health_check(
    no_aws: None, emitted_metrics: Any
) -> None:
    emitted_metrics()
    response = health_handler.handler(health_event(), FakeLambdaContext())  # type: ignore[arg-type]
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"] == "application/json"
    assert response["headers"]["cache-control"] == "no-store"
    assert json.loads(response["body"]) == {"status": "ok", "region": TEST_ENV["AWS_REGION"]}
    emitted = emitted_metrics()
    # Its own metric only: health checks are not HTTP API traffic (HttpRequests).
    assert emitted == {"HealthChecks": 1}


@pytest.mark.parametrize("event", [{}, [], None, {"routeKey": "$default"}])
def test_any_event_gets_the_same_answer(no_aws: None, event: Any) -> None:
    """The route is the function's only trigger: nothing in the event can make it fail."""
    response = health_handler.handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "ok"


def test_stays_small_at_cold_start() -> None:
    """No X-Ray SDK (no tracer), no aiohttp or PyJWT: the init Route 53's 2 s wait may include."""
    env = {**cold_start.LAMBDA_ENV, "PYTHONPATH": str(ROOT)}
    env["PATH"] = str(Path(sys.executable).parent)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json\nfrom multiregion_chat.runtime.handlers import health_handler\n"
            "heavy = ('aws_xray_sdk', 'aiohttp', 'jwt',\n"
            "         'multiregion_chat.runtime.platform.aws_clients')\n"
            "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
