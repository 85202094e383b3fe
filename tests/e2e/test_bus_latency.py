"""``--bus-latency-ms`` in a running sandbox: a message reaches the sender's region after one
emulated bus delivery, and another region after a forward and a delivery."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Client, SandboxProcess, room_name

DELAY_S = 0.6  # p50 = p99: every delivery and forward waits exactly this


def test_deliveries_wait_for_the_emulated_bus(
    cdk_out: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = SandboxProcess(
        cdk_out,
        tmp_path_factory.mktemp("bus-latency"),
        regions=("us-east-1", "eu-west-1"),
        extra=("--bus-latency-ms", f"{DELAY_S * 1000:g},{DELAY_S * 1000:g}"),
    ).start()

    async def scenario() -> tuple[float, float]:
        room = room_name()
        sender = await Client.open(sandbox.url("us-east-1"), "latency-sender")
        far = await Client.open(sandbox.url("eu-west-1"), "latency-far")
        for client in (sender, far):
            await client.join(room)
        started = time.perf_counter()
        await sender.request({"action": "send", "room": room, "body": "delayed"})
        arrived: dict[str, float] = {}

        async def arrival(client: Client, name: str) -> None:
            await client.wait_for(lambda f: f.get("body") == "delayed", timeout=30)
            arrived[name] = time.perf_counter() - started

        await asyncio.gather(arrival(sender, "local"), arrival(far, "remote"))
        for client in (sender, far):
            await client.close()
        return arrived["local"], arrived["remote"]

    try:
        local, remote = asyncio.run(scenario())
    finally:
        assert sandbox.stop() == 0, sandbox.stderr()[-4000:]
    assert local >= DELAY_S * 0.95, local  # asyncio timers may fire a hair early
    assert remote >= 2 * DELAY_S * 0.95, remote
