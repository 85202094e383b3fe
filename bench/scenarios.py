"""Two older sandbox scenarios, kept as optional parts of ``python -m bench`` (``--parts``).

* ``resume``: a client misses M messages (posted over HTTP in one region), reconnects to
  another region and catches up with ``join`` + ``after`` and ``history`` pages;
* ``longpoll``: an HTTP client long-polls in one region while a message is posted in another;
  the latency from the POST to the GET's answer.

Neither is covered by the other parts (they time the resume and HTTP fallback paths), so they
stay, outside the default set to keep ``make bench`` to the issue's table.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp

from tests.e2e.harness import REGIONS, Client, SandboxProcess, room_name


def summary(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))], 1),
        "max_ms": round(ordered[-1], 1),
    }


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
