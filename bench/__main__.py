"""``python -m bench`` (``make bench``): speed figures of the whole app, measured in the sandbox.

Every scenario runs the real handlers of the synthesized templates in the local
multi-region sandbox (3 regions), with real WebSocket and HTTP clients:

* ``roundtrip``: send in one region, receipt in the same and in a far region.
* ``fanout``: one message to N connections spread over the regions, with
  ``--mgmt-latency-ms`` added to every ``@connections`` call (API Gateway's
  own latency; the fan-out's thread pool is what hides it).
* ``resume``: a client misses M messages, reconnects to another region and
  catches up with ``join`` + ``after`` and ``history`` pages.
* ``longpoll``: an HTTP client long-polls in one region while a message is
  posted in another; the latency from the POST to the GET's answer.

The figures are for this machine and the sandbox (one process per function,
moto for DynamoDB), not for AWS; they are for comparing changes. Every loop is
bounded; nothing here is a test. The sandbox is started and driven through
``tests/e2e/harness.py``, the launcher and client the end-to-end tests use, so
benchmarks and tests exercise the sandbox the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.harness import REGIONS, Client, SandboxProcess, room_name

FAR = {"us-east-1": "ap-northeast-1", "eu-west-1": "ap-northeast-1", "ap-northeast-1": "us-east-1"}


def is_message(body: str) -> Callable[[dict[str, Any]], bool]:
    """A ``Client.wait_for`` predicate: the ``message`` frame with this (unique) body.

    Matched by body, not id: a ``message`` frame can arrive before the ``ack``
    that tells the id, and the clock must stop when the frame arrives.
    """
    return lambda frame: frame.get("type") == "message" and frame.get("body") == body


async def receipt_ms(client: Client, body: str, started: float, timeout: float = 30) -> float:
    """Milliseconds from ``started`` until ``client`` has the message with ``body``."""
    await client.wait_for(is_message(body), timeout=timeout)
    return (time.perf_counter() - started) * 1000


async def send_and_time(
    sender: Client, room: str, body: str, receivers: list[Client]
) -> list[float]:
    """Send ``body`` from ``sender``; each receiver's receipt time in ms, in order."""
    started = time.perf_counter()
    waits = [asyncio.create_task(receipt_ms(client, body, started)) for client in receivers]
    ack = await sender.request({"action": "send", "room": room, "body": body})
    assert ack["type"] == "ack", ack
    return list(await asyncio.gather(*waits))


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "max_ms": round(ordered[-1], 1),
    }


async def joined_clients(
    sandbox: SandboxProcess, room: str, per_region: int, prefix: str
) -> list[Client]:
    clients: list[Client] = []
    for region in REGIONS:
        for number in range(per_region):
            client = await Client.open(sandbox.url(region), f"{prefix}-{region}-{number}")
            await client.join(room)
            clients.append(client)
    return clients


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.close() for client in clients))


async def roundtrip(sandbox: SandboxProcess, count: int) -> dict[str, Any]:
    room = room_name()
    origin = REGIONS[0]
    sender = await Client.open(sandbox.url(origin), "rt-sender")
    far = await Client.open(sandbox.url(FAR[origin]), "rt-far")
    for client in (sender, far):
        await client.join(room)
    local_ms: list[float] = []
    far_ms: list[float] = []
    for number in range(count):
        local, remote = await send_and_time(sender, room, f"rt-{number}", [sender, far])
        local_ms.append(local)
        far_ms.append(remote)
    await close_all([sender, far])
    return {
        "same_region": summary(local_ms),
        f"{origin}->{FAR[origin]}": summary(far_ms),
    }


async def fanout(sandbox: SandboxProcess, per_region: int, count: int) -> dict[str, Any]:
    room = room_name()
    clients = await joined_clients(sandbox, room, per_region, "fan")
    sender = clients[0]
    all_ms: list[float] = []
    for number in range(count):
        all_ms.append(max(await send_and_time(sender, room, f"fan-{number}", clients)))
    await close_all(clients)
    result = summary(all_ms)
    result["connections"] = len(clients)
    result["deliveries_per_s_at_p50"] = round(len(clients) / (result["p50_ms"] / 1000), 1)
    return {"send_to_last_receipt": result}


async def resume(sandbox: SandboxProcess, missed: int) -> dict[str, Any]:
    room = room_name()
    origin, other = REGIONS[0], REGIONS[1]
    post_url = f"{sandbox.url(origin, 'http')}/rooms/{room}/messages"
    watcher = await Client.open(sandbox.url(other), "resume-watcher")
    await watcher.join(room)
    marker = await watcher.request({"action": "send", "room": room, "body": "last seen"})
    await watcher.close()

    async with aiohttp.ClientSession() as http:
        semaphore = asyncio.Semaphore(8)

        async def post(number: int) -> None:
            async with (
                semaphore,
                http.post(
                    post_url, headers=sandbox.bearer("resume-sender"), json={"body": number}
                ) as response,
            ):
                assert response.status == 202, await response.text()

        await asyncio.gather(*(post(number) for number in range(missed)))

    # Every missed message is in the resuming region's history before timing.
    probe = await Client.open(sandbox.url(other), "resume-probe")
    await probe.join(room)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pages, after, seen = 0, marker["id"], 0
        while pages < missed // 100 + 2:
            reply = await probe.request(
                {"action": "history", "room": room, "after": after, "limit": 100}
            )
            seen += len(reply["messages"])
            pages += 1
            if not reply["more"]:
                break
            after = reply["messages"][-1]["id"]
        if seen >= missed:
            break
        await asyncio.sleep(0.5)
    await probe.close()

    started = time.perf_counter()
    client = await Client.open(sandbox.url(other), "resume-watcher")
    frames = 1
    reply = await client.request({"action": "join", "room": room, "after": marker["id"]})
    received = list(reply["missed"])
    more = reply["more"]
    while more and frames < missed:
        reply = await client.request(
            {"action": "history", "room": room, "after": received[-1]["id"], "limit": 100}
        )
        frames += 1
        received.extend(reply["messages"])
        more = reply["more"]
    elapsed_ms = (time.perf_counter() - started) * 1000
    await client.close()
    ids = [message["id"] for message in received]
    return {
        "missed": missed,
        "received": len(received),
        "unique": len(set(ids)),
        "in_id_order": ids == sorted(ids),
        "request_frames": frames,
        "connect_to_caught_up_ms": round(elapsed_ms, 1),
    }


async def longpoll(sandbox: SandboxProcess, count: int) -> dict[str, Any]:
    room = room_name()
    reader_region, writer_region = REGIONS[0], REGIONS[2]
    get_url = f"{sandbox.url(reader_region, 'http')}/rooms/{room}/messages"
    post_url = f"{sandbox.url(writer_region, 'http')}/rooms/{room}/messages"
    samples: list[float] = []
    after: str | None = None
    async with aiohttp.ClientSession() as http:
        for number in range(count):
            params = {"wait": "15", **({"after": after} if after else {})}
            poll = asyncio.create_task(
                http.get(get_url, params=params, headers=sandbox.bearer("poller"))
            )
            await asyncio.sleep(0.3)  # the GET is waiting in the handler
            started = time.perf_counter()
            async with http.post(
                post_url, headers=sandbox.bearer("poster"), json={"body": number}
            ) as response:
                posted = (await response.json())["id"]
            response = await poll
            body = await response.json()
            samples.append((time.perf_counter() - started) * 1000)
            ids = [message["id"] for message in body["messages"]]
            assert posted in ids, body
            after = ids[-1]
    return {f"post_{writer_region}_to_longpoll_{reader_region}": summary(samples)}


async def run(args: argparse.Namespace, sandbox: SandboxProcess) -> dict[str, Any]:
    results: dict[str, Any] = {
        "sandbox_ready_s": sandbox.ready_seconds(),
        "mgmt_latency_ms": args.mgmt_latency_ms,
    }
    wanted = set(args.scenarios.split(","))
    if "roundtrip" in wanted:
        results["roundtrip"] = await roundtrip(sandbox, args.count)
    if "fanout" in wanted:
        results["fanout"] = await fanout(sandbox, args.connections_per_region, args.count)
    if "resume" in wanted:
        results["resume"] = await resume(sandbox, args.missed)
    if "longpoll" in wanted:
        results["longpoll"] = await longpoll(sandbox, args.count)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument("--scenarios", default="roundtrip,fanout,resume,longpoll")
    parser.add_argument("--count", type=int, default=20, help="samples per scenario")
    parser.add_argument("--connections-per-region", type=int, default=50)
    parser.add_argument("--missed", type=int, default=1000)
    parser.add_argument("--mgmt-latency-ms", type=float, default=10.0)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    if not (args.cdk_out / "manifest.json").exists():
        print(f"bench: no synthesized app in {args.cdk_out}; run `make synth`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        sandbox = SandboxProcess(
            args.cdk_out.resolve(),
            Path(workdir),
            extra=("--mgmt-latency-ms", str(args.mgmt_latency_ms)),
        ).start()
        try:
            results = asyncio.run(run(args, sandbox))
        finally:
            sandbox.stop()
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
