"""@connections for benchmarks: the request-rate limit, its sliding-window peak, and virtual
connections (counted, never sent), through the control routes and sandbox.virtual's helpers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError
from sandbox_templates import free_port

from sandbox import virtual
from sandbox.management import ManagementApi, RateLimit, SlidingPeak, TokenBucket


class FakeApi:
    """What ManagementApi needs from WebSocketApi: one real connection, ``real``."""

    class api:
        stage = "prod"

    def __init__(self) -> None:
        self.posted: list[str] = []

    async def post(self, connection_id: str, data: bytes) -> bool:
        self.posted.append(connection_id)
        return connection_id == "real"

    def info(self, connection_id: str) -> None:
        return None

    async def delete(self, connection_id: str) -> bool:
        return False


def serve_and(work: Any, **options: Any) -> tuple[FakeApi, ManagementApi, Any]:
    fake = FakeApi()
    management = ManagementApi(fake, **options)  # type: ignore[arg-type]

    async def main() -> Any:
        runner = web.AppRunner(management.app())
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await work(f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return fake, management, asyncio.run(main())


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_continuously() -> None:
    clock = Clock()
    bucket = TokenBucket(10, clock=clock)
    assert [bucket.admit() for _ in range(11)].count(True) == 10  # capacity N
    clock.now += 0.5
    assert [bucket.admit() for _ in range(10)].count(True) == 5  # N/s, continuously
    clock.now += 60
    assert [bucket.admit() for _ in range(20)].count(True) == 10  # never above capacity


def test_rate_limit_never_admits_more_than_n_in_any_second() -> None:
    clock = Clock()
    limit = RateLimit(10, clock=clock)
    peak = SlidingPeak()
    admitted = 0
    for _ in range(400):  # 4 s of a client asking 100 times a second
        if limit.admit():
            admitted += 1
            peak.record(clock.now)
        clock.now += 0.01
    assert peak.peak == 10  # a bare bucket would have let 19 through in the first second
    assert 38 <= admitted <= 41


def test_sliding_peak() -> None:
    peak = SlidingPeak()
    for at in (0.0, 0.5, 0.99, 1.0, 1.2, 3.0):
        peak.record(at)
    assert peak.peak == 4  # 0.5, 0.99, 1.0, 1.2 (0.0 left the window at 1.0)


def test_rate_limit_answers_429_like_api_gateway() -> None:
    async def work(url: str) -> list[tuple[int, str | None, Any]]:
        async with aiohttp.ClientSession() as session:

            async def post() -> tuple[int, str | None, Any]:
                async with session.post(f"{url}/prod/@connections/real", data=b"x") as answer:
                    body = await answer.json(content_type=None) if answer.status != 200 else None
                    return answer.status, answer.headers.get("x-amzn-ErrorType"), body

            return await asyncio.gather(*(post() for _ in range(40)))

    fake, management, answers = serve_and(work, rate_limit=10)
    ok = [a for a in answers if a[0] == 200]
    throttled = [a for a in answers if a[0] == 429]
    assert 1 <= len(ok) <= 10 and len(ok) + len(throttled) == 40
    assert all(
        answer == (429, "LimitExceededException", {"message": "Rate exceeded"})
        for answer in throttled
    )
    stats = management.stats()
    assert stats["throttled"] == stats["post_throttled"] == len(throttled)
    assert stats["admitted"] == len(ok) == len(fake.posted)
    assert stats["admitted_peak_1s"] <= 10


def test_boto3_sees_a_throttling_error() -> None:
    def call(url: str) -> tuple[str, int]:
        api = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=f"{url}/prod",
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
            config=Config(retries={"total_max_attempts": 1}),
        )
        api.post_to_connection(ConnectionId="real", Data=b"first")  # the only token
        with pytest.raises(ClientError) as raised:
            api.post_to_connection(ConnectionId="real", Data=b"second")
        error = raised.value.response
        return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]

    async def work(url: str) -> tuple[str, int]:
        return await asyncio.to_thread(call, url)

    _, _, answer = serve_and(work, rate_limit=1)
    assert answer == ("LimitExceededException", 429)


def test_virtual_connections_are_counted_not_sent() -> None:
    def scenario(url: str) -> dict[str, Any]:
        management_url = f"{url}/prod"  # as in the endpoints file
        ids = virtual.virtual_ids(5)
        results: dict[str, Any] = {"register": virtual.register(management_url, ids)}
        results["again"] = virtual.register(management_url, ids[:2])
        api = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=management_url,
            region_name="eu-west-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        started = time.time()
        for connection_id in ids[:3]:
            api.post_to_connection(ConnectionId=connection_id, Data=b"frame-1")
        api.post_to_connection(ConnectionId=ids[0], Data=b"frame-2")  # another frame
        api.post_to_connection(ConnectionId=ids[1], Data=b"frame-1")  # a duplicate
        results["info"] = api.get_connection(ConnectionId=ids[4])
        api.delete_connection(ConnectionId=ids[4])
        with pytest.raises(ClientError) as gone:
            api.post_to_connection(ConnectionId=ids[4], Data=b"frame-1")
        results["gone"] = gone.value.response["Error"]["Code"]
        results["started"] = started
        results["summary"] = virtual.summary(management_url, detail=True)
        results["counters"] = virtual.management_stats(management_url)
        results["waited"] = virtual.wait_for_posts(management_url, 5, timeout=5)
        results["reset"] = virtual.reset(management_url)
        results["after"] = virtual.summary(management_url)
        results["cleared"] = virtual.management_stats(management_url, reset_counters=True)
        return results

    async def work(url: str) -> dict[str, Any]:
        return await asyncio.to_thread(scenario, url)

    fake, _, results = serve_and(work, latency_ms=1)
    assert fake.posted == ["virtual-000004"]  # only the post after its DELETE reached it
    assert results["register"] == {"added": 5, "registered": 5}
    assert results["again"] == {"added": 0, "registered": 5}
    assert results["gone"] == "GoneException"
    assert results["info"]["Identity"]["UserAgent"] == "sandbox-virtual"
    summary = results["summary"]
    assert summary["registered"] == 4 and summary["deleted"] == 1
    assert summary["posts"] == 5 and summary["idsPosted"] == 3
    assert summary["idsPostedMoreThanOnce"] == 2 and summary["duplicatePosts"] == 1
    assert summary["counts"] == {
        "virtual-000000": 2, "virtual-000001": 2, "virtual-000002": 1, "virtual-000003": 0,
    }  # fmt: skip
    assert results["started"] <= summary["firstPostAt"] <= summary["lastPostAt"]
    assert results["waited"]["posts"] == 5
    counters = results["counters"]["counters"]
    assert counters["post_virtual"] == 5 and counters["post_gone"] == 1
    assert results["counters"]["rateLimit"] is None and results["counters"]["latencyMs"] == 1
    assert results["reset"] == {"removed": 4}
    assert results["after"]["registered"] == 0 and results["after"]["posts"] == 0
    assert results["cleared"]["counters"] == {"admitted_peak_1s": 0}


def test_control_routes_are_not_api_paths() -> None:
    async def work(url: str) -> list[int]:
        async with aiohttp.ClientSession() as session:
            statuses = []
            for method, path in (
                ("POST", "/prod/@connections/_sandbox/virtual-connections"),  # an id: gone
                ("GET", "/_sandbox/nothing"),
                ("PUT", "/_sandbox/virtual-connections"),
                ("POST", "/_sandbox/virtual-connections"),  # no JSON body
            ):
                async with session.request(method, url + path) as answer:
                    statuses.append(answer.status)
            return statuses

    _, _, statuses = serve_and(work)
    assert statuses == [410, 404, 405, 400]
