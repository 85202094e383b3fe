"""``--bus-latency-ms`` in a running sandbox, and the same-region fast path (issue 17).

Every bus delivery and forward waits the emulated latency. Members in the sender's region
get the message from ClientMessageHandler itself, without waiting for the bus; another
region gets it after a forward and a delivery; and each member gets it exactly once (the
origin region's delivery, arriving later, finds it in history and posts nothing).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Client, SandboxProcess, room_name

# p50 = p99: every delivery and forward waits exactly this; long beside a local delivery
# even on a loaded machine (the local check is also made by order, which needs no clock).
DELAY_S = 2.0


def test_local_members_do_not_wait_for_the_bus_and_remote_ones_do(
    cdk_out: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sandbox = SandboxProcess(
        cdk_out,
        tmp_path_factory.mktemp("bus-latency"),
        regions=("us-east-1", "eu-west-1"),
        extra=("--bus-latency-ms", f"{DELAY_S * 1000:g},{DELAY_S * 1000:g}"),
    ).start()

    async def scenario() -> dict[str, float]:
        room = room_name()
        sender = await Client.open(sandbox.url("us-east-1"), "latency-sender")
        near = await Client.open(sandbox.url("us-east-1"), "latency-near")
        far = await Client.open(sandbox.url("eu-west-1"), "latency-far")
        clients = {"sender": sender, "near": near, "far": far}
        for client in clients.values():
            await client.join(room)
        started = time.perf_counter()
        ack = await sender.request({"action": "send", "room": room, "body": "delayed"})
        assert ack["type"] == "ack", ack
        arrived: dict[str, float] = {"ack": time.perf_counter() - started}

        async def arrival(client: Client, name: str) -> None:
            await client.wait_for(lambda f: f.get("body") == "delayed", timeout=30)
            arrived[name] = time.perf_counter() - started

        await asyncio.gather(*(arrival(client, name) for name, client in clients.items()))
        # The origin region's own bus delivery (one delay) has come and gone by the time the
        # far region's (two delays) arrived: nobody got the message twice.
        for name, client in clients.items():
            copies = [f for f in client.frames if f.get("body") == "delayed"]
            assert len(copies) == 1, (name, copies)
        # On the sender's own connection the message came before the ack: it was posted
        # by ClientMessageHandler before it answered, not by the bus after.
        kinds = [f.get("type") for f in sender.frames if f.get("type") in ("message", "ack")]
        assert kinds[-2:] == ["message", "ack"], sender.frames
        for client in clients.values():
            await client.close()
        return arrived

    try:
        arrived = asyncio.run(scenario())
    finally:
        assert sandbox.stop() == 0, sandbox.stderr()[-4000:]
    # Local members are served before the ack, so well before one emulated bus delivery.
    assert arrived["sender"] < DELAY_S and arrived["near"] < DELAY_S, arrived
    assert arrived["far"] >= 2 * DELAY_S * 0.95, arrived  # asyncio timers may fire a hair early
