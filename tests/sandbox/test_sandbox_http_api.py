"""The HTTP API emulation (the fallback API) against a scripted integration."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from sandbox_templates import free_port

from sandbox.function_pool import InvokeResult
from sandbox.http_api import HttpApi
from sandbox.template_model import ApiSpec, AuthorizerSpec, RouteSpec


def http_spec(authorizer: AuthorizerSpec | None) -> ApiSpec:
    api = ApiSpec(
        "Http",
        "httpapi123",
        "http",
        "HTTP",
        "$default",
        "https://httpapi123.execute-api.eu-west-1.amazonaws.com",
        "",
    )
    for key in ("POST /rooms/{room}/messages", "GET /rooms/{room}/messages", "$default"):
        api.routes[key] = RouteSpec(
            key,
            f"R{len(api.routes)}",
            "Fn",
            "I",
            False,
            authorizer if key != "$default" else None,
            "2.0",
        )
    return api


def test_routes_events_authorizer_and_responses() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    authorizer = AuthorizerSpec(
        "Auth",
        "AuthFn",
        "REQUEST",
        ("$request.header.Authorization",),
        simple_responses=True,
        payload_version="2.0",
    )

    async def invoke(function: str, event: Any, timeout: float | None = None) -> InvokeResult:
        calls.append((function, event))
        if function == "AuthFn":
            ok = event["headers"].get("authorization") == "Bearer good"
            return InvokeResult(True, {"isAuthorized": ok, "context": {"userId": "alice"}})
        if event["routeKey"] == "$default":
            return InvokeResult(True, {"plain": True})  # 2.0 without statusCode: 200 JSON
        return InvokeResult(
            True, {"statusCode": 202, "headers": {"X-Id": "1"}, "body": json.dumps({"id": "1"})}
        )

    async def scenario() -> dict[str, Any]:
        api = HttpApi("eu-west-1", http_spec(authorizer), invoke)
        runner = web.AppRunner(api.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        results: dict[str, Any] = {}
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{base}/rooms/lobby/messages?x=1&x=2",
                    json={"body": "hi"},
                    headers={"Authorization": "Bearer good"},
                ) as answer:
                    results["post"] = (
                        answer.status,
                        await answer.json(),
                        answer.headers.get("X-Id"),
                    )
                async with http.post(f"{base}/rooms/lobby/messages") as answer:
                    results["no_token"] = answer.status
                async with http.post(
                    f"{base}/rooms/lobby/messages", headers={"Authorization": "Bearer bad"}
                ) as answer:
                    results["bad_token"] = answer.status
                async with http.get(f"{base}/anything/else") as answer:
                    results["default"] = (answer.status, await answer.json())
        finally:
            await runner.cleanup()
        return results

    results = asyncio.run(scenario())
    assert results["post"] == (202, {"id": "1"}, "1")
    assert results["no_token"] == 401 and results["bad_token"] == 403
    assert results["default"] == (200, {"plain": True})
    event = next(e for f, e in calls if f == "Fn" and e["routeKey"].startswith("POST"))
    assert event["version"] == "2.0"
    assert event["pathParameters"] == {"room": "lobby"}
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert json.loads(event["body"]) == {"body": "hi"}
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["authorizer"] == {"lambda": {"userId": "alice"}}


def test_no_http_api_answers_404() -> None:
    async def invoke(function: str, event: Any, timeout: float | None = None) -> InvokeResult:
        raise AssertionError("not called")

    async def scenario() -> int:
        api = HttpApi("eu-west-1", None, invoke)
        runner = web.AppRunner(api.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/rooms") as answer,
            ):
                return answer.status
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == 404


def test_cors_preflight_and_headers() -> None:
    async def invoke(function: str, event: Any, timeout: float | None = None) -> InvokeResult:
        return InvokeResult(True, {"statusCode": 200, "body": "{}"})

    async def scenario() -> dict[str, Any]:
        spec = http_spec(None)
        spec.cors = {
            "AllowOrigins": ["*"],
            "AllowMethods": ["GET", "POST"],
            "AllowHeaders": ["Authorization"],
            "MaxAge": 3600,
        }
        api = HttpApi("eu-west-1", spec, invoke)
        runner = web.AppRunner(api.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/rooms/lobby/messages"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.options(
                    url, headers={"Origin": "http://page", "Access-Control-Request-Method": "POST"}
                ) as pre:
                    preflight = (pre.status, dict(pre.headers))
                async with http.get(url, headers={"Origin": "http://page"}) as answer:
                    simple = dict(answer.headers)
        finally:
            await runner.cleanup()
        return {"preflight": preflight, "simple": simple}

    result = asyncio.run(scenario())
    status, headers = result["preflight"]
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert headers["Access-Control-Max-Age"] == "3600"
    assert result["simple"]["Access-Control-Allow-Origin"] == "*"


def test_iam_routes_want_a_sigv4_signature_for_the_region() -> None:
    """AWS_IAM routes: signed for execute-api in this region passes, anything else is 403."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from sandbox.http_api import sigv4_identity

    api_spec = http_spec(None)
    key = "POST /server/rooms/{room}/messages"
    api_spec.routes[key] = RouteSpec(key, "RIam", "Fn", "I", False, None, "2.0", iam=True)
    calls: list[dict[str, Any]] = []

    async def invoke(function: str, event: Any, timeout: float | None = None) -> InvokeResult:
        calls.append(event)
        return InvokeResult(True, {"statusCode": 202, "body": "{}"})

    def signed(url: str, region: str, service: str = "execute-api") -> dict[str, str]:
        request = AWSRequest(method="POST", url=url, data=b"{}")
        SigV4Auth(Credentials("AKIDSANDBOX", "secret"), service, region).add_auth(request)
        return dict(request.headers.items())

    async def scenario() -> list[int]:
        api = HttpApi("eu-west-1", api_spec, invoke)
        runner = web.AppRunner(api.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/server/rooms/lobby/messages"
        statuses = []
        try:
            async with aiohttp.ClientSession() as http:
                for headers in (
                    signed(url, "eu-west-1"),
                    {},
                    signed(url, "us-east-1"),
                    signed(url, "eu-west-1", service="lambda"),
                    {"Authorization": "Bearer good"},
                ):
                    async with http.post(url, data=b"{}", headers=headers) as answer:
                        statuses.append(answer.status)
        finally:
            await runner.cleanup()
        return statuses

    assert asyncio.run(scenario()) == [202, 403, 403, 403, 403]
    (event,) = calls
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == "AKIDSANDBOX"
    assert sigv4_identity("", "eu-west-1") is None
