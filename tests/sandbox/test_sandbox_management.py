"""The local @connections API, driven by boto3's apigatewaymanagementapi client."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.exceptions import ClientError
from sandbox_templates import free_port

from sandbox.management import ManagementApi


@dataclass
class FakeConnection:
    connected_at: float
    last_active_at: float
    source_ip: str = "127.0.0.1"
    user_agent: str = "test"


class FakeSpec:
    stage = "prod"


class FakeApi:
    """What ManagementApi needs from WebSocketApi."""

    api = FakeSpec()

    def __init__(self) -> None:
        self.live = {"Ab+/cd==": FakeConnection(time.time() - 5, time.time())}
        self.posted: list[tuple[str, bytes]] = []

    async def post(self, connection_id: str, data: bytes) -> bool:
        self.posted.append((connection_id, data))
        return connection_id in self.live

    def info(self, connection_id: str) -> FakeConnection | None:
        return self.live.get(connection_id)

    async def delete(self, connection_id: str) -> bool:
        return self.live.pop(connection_id, None) is not None


def client(url: str) -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


def serve_and(latency_ms: float, work: Any) -> tuple[FakeApi, Any]:
    fake = FakeApi()

    async def main() -> Any:
        management = ManagementApi(fake, latency_ms)  # type: ignore[arg-type]
        runner = web.AppRunner(management.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await asyncio.to_thread(work, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return fake, asyncio.run(main())


def error_of(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_post_get_delete_with_api_gateway_answers() -> None:
    def work(url: str) -> dict[str, Any]:
        api = client(f"{url}/prod")  # the callback URL ends in the stage, as CALLBACK_URL does
        api.post_to_connection(ConnectionId="Ab+/cd==", Data=b"hello")
        found = api.get_connection(ConnectionId="Ab+/cd==")
        results = {
            "gone": error_of(lambda: api.post_to_connection(ConnectionId="nope", Data=b"x")),
            "large": error_of(
                lambda: api.post_to_connection(
                    ConnectionId="Ab+/cd==", Data=b"x" * (128 * 1024 + 1)
                )
            ),
            "found": found,
        }
        api.delete_connection(ConnectionId="Ab+/cd==")
        results["deleted_get"] = error_of(lambda: api.get_connection(ConnectionId="Ab+/cd=="))
        results["other_stage"] = error_of(
            lambda: client(f"{url}/dev").post_to_connection(ConnectionId="Ab+/cd==", Data=b"x")
        )
        return results

    fake, results = serve_and(0, work)
    assert fake.posted[0] == ("Ab+/cd==", b"hello")  # the id survives URL encoding
    assert results["gone"] == ("GoneException", 410)
    assert results["large"] == ("PayloadTooLargeException", 413)
    assert results["deleted_get"] == ("GoneException", 410)
    assert results["other_stage"] == ("ForbiddenException", 403)
    found = results["found"]
    assert isinstance(found["ConnectedAt"], datetime)
    assert isinstance(found["LastActiveAt"], datetime)
    assert found["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "test"}


def test_injected_latency() -> None:
    def work(url: str) -> float:
        api = client(f"{url}/prod")
        api.post_to_connection(ConnectionId="Ab+/cd==", Data=b"warm-up")
        started = time.perf_counter()
        api.post_to_connection(ConnectionId="Ab+/cd==", Data=b"x")
        return time.perf_counter() - started

    _, elapsed = serve_and(150, work)
    assert elapsed >= 0.15
