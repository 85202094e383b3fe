"""The global endpoint's health check, ``GET /health/<key>``, end to end: the app synthesized with
``-c domainName=... -c hostedZoneId=...`` (the route exists only then) and
``-c httpReservedConcurrency=1``, one region in the sandbox, which runs the route's function
whatever it is called and honours each function's ``ReservedConcurrentExecutions``.

The point (a self-inflicted failover): a long poll holds HttpHandler's one execution, and the
health check still answers, because it has a function and executions of its own. Before, the
sandbox made it wait for the poll (AWS throttles it instead); either way Route 53 would have
marked a working region unhealthy.

Set ``SANDBOX_TEST_HEALTH_CDK_OUT`` to such a synthesized cdk.out to skip the synth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aiohttp
import boto3
import pytest

from sandbox import virtual

from .harness import Client, SandboxProcess, room_name, synthesized_sandbox, wait_until

REGION = "us-east-1"
CONTEXT = [
    "-c", "domainName=example.com",
    "-c", "hostedZoneId=Z0123456789ABCDEFGHIJ",
    "-c", f"regions={REGION}",
    "-c", "httpReservedConcurrency=1",
]  # fmt: skip
# A long poll's longest wait (HttpHandler's MAX_WAIT_SECONDS): the poll holds the execution
# until a message arrives, which the test sends only after the health check answered.
LONG_POLL_SECONDS = "20"


@pytest.fixture(scope="module")
def health_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    with synthesized_sandbox(
        tmp_path_factory.mktemp("health"),
        preset_env="SANDBOX_TEST_HEALTH_CDK_OUT",
        context=CONTEXT,
        regions=(REGION,),
    ) as process:
        yield process


def health_url(sandbox: SandboxProcess) -> str:
    """The region's health check URL: the path's key is the stack id's UUID, as the sandbox
    resolves the template (infra/global_endpoint.py, health_path)."""
    path = virtual.http_route_path(
        sandbox.cdk_out, REGION, "multiregion_chat.runtime.handlers.health_handler.handler"
    )
    return sandbox.url(REGION, "http") + path


def test_health_answers_without_a_token(health_sandbox: SandboxProcess) -> None:
    async def scenario() -> None:
        base = health_sandbox.url(REGION, "http")
        url = health_url(health_sandbox)
        assert url.startswith(f"{base}/health/") and len(url) > len(f"{base}/health/") + 8
        async with aiohttp.ClientSession() as http:
            # A guessable path reaches no route, so a flood of it cannot throttle the check.
            for guess in ("/health", "/health/", "/health/x"):
                async with http.get(f"{base}{guess}") as answer:
                    assert answer.status == 404, (guess, await answer.text())
            async with http.get(url) as answer:
                assert answer.status == 200, await answer.text()
                assert answer.headers["cache-control"] == "no-store"
                assert await answer.json() == {"status": "ok", "region": REGION}
            # The message routes keep their authorizer.
            async with http.get(f"{base}/rooms/{room_name()}/messages") as answer:
                assert answer.status == 401

    asyncio.run(scenario())


def test_health_answers_while_a_long_poll_holds_every_http_handler_execution(
    health_sandbox: SandboxProcess,
) -> None:
    asyncio.run(_health_beside_a_long_poll(health_sandbox))


async def _health_beside_a_long_poll(sandbox: SandboxProcess) -> None:
    room, poller = room_name(), f"poller-{room_name()}"
    base = sandbox.url(REGION, "http")
    health = health_url(sandbox)
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=sandbox.endpoints["dynamodb"],
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    table = virtual.function_variable(sandbox.cdk_out, REGION, "CONNECTIONS_TABLE")

    def poll_leases() -> list[Any]:
        # runtime.delivery.long_poll: an open poll holds a slot POLL#<userId>/<n> while it waits.
        found = dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"POLL#{poller}"}},
        )
        return list(found["Items"])

    async with aiohttp.ClientSession() as http:

        async def long_poll() -> tuple[int, Any]:
            async with http.get(
                f"{base}/rooms/{room}/messages",
                params={"wait": LONG_POLL_SECONDS},
                headers=sandbox.bearer(poller),
            ) as answer:
                return answer.status, await answer.json()

        # Warm HealthHandler first (a cold worker start on a loaded machine is seconds), so
        # the check below has the poll's whole wait to answer in.
        async with http.get(health) as answer:
            assert answer.status == 200, await answer.text()
        poll = asyncio.create_task(long_poll())
        sender = None
        try:
            # The poll is waiting inside HttpHandler's only execution once its lease exists.
            await wait_until(
                lambda: poll.done() or poll_leases(), timeout=60, what="the long poll's lease"
            )
            assert not poll.done(), poll.result()
            async with http.get(health) as answer:
                assert answer.status == 200, await answer.text()
                assert await answer.json() == {"status": "ok", "region": REGION}
            # Answered while the poll still held HttpHandler: not queued behind it.
            assert not poll.done(), f"the health check waited for the long poll: {poll.result()}"
            # End the poll the way a poll ends: a message arrives (sent over the WebSocket).
            sender = await Client.open(sandbox.url(REGION), f"sender-{room}")
            await sender.join(room)
            ack = await sender.request({"action": "send", "room": room, "body": "wake up"})
            assert ack["type"] == "ack", ack
            status, page = await asyncio.wait_for(poll, 60)
            assert status == 200, page
            assert [m["id"] for m in page["messages"]] == [ack["id"]]
        finally:
            if sender is not None:
                await sender.close()
            if not poll.done():
                poll.cancel()
