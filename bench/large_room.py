"""The ``large_room`` bench: one message to 5,000 members through the sharded fan-out.

The room is big enough to be sharded, the sandbox's ``@connections`` answers after 20 ms and
admits at most ``rate_limit`` requests in any 1 s (``--mgmt-latency-ms 20 --mgmt-rate-limit
1000``), and the app is synthesized with a request budget of ``budget`` (at or just below the
limit), so the budget, not this machine's two cores, bounds the wall time: ``members /
rate_limit`` seconds (``bound_s``).

Members are *virtual connections* (``sandbox.virtual``): ids the sandbox's ``@connections``
counts instead of sending to, seeded as membership items in the region's table, so 5,000
members need no sockets. One real WebSocket client joins the room and sends one message;
the wall time runs from that ``send`` to the sandbox's last post to a virtual member
(``lastPostAt``, both ``time.time()`` on this machine). ``delivered`` counts distinct virtual
ids posted, ``duplicates`` the posts beyond one per id, ``peak_1s`` the most requests the
sandbox admitted in any sliding 1 s window (never above the limit: the sandbox refuses them
with 429, so ``throttled`` says how often the app pushed past its budget).

The app is synthesized once per bench invocation into ``.bench/large-room/cdk.out`` with
``-c`` overrides (``fanoutRequestBudget``, ``fanoutShardThreshold``, ``fanoutShardSize``,
``fanoutMaxWorkers``); the project's ``cdk.out`` is left alone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tests.e2e.harness import REPO, Client, SandboxProcess, room_name, synth

OUT_DIR = REPO / ".bench" / "large-room" / "cdk.out"  # "cdk.out": ruff and mypy skip it
REGION = "us-east-1"


def context_overrides(
    budget: int, shard_threshold: int, shard_size: int, max_workers: int
) -> list[str]:
    return [
        "-c", f"fanoutRequestBudget={budget}",
        "-c", f"fanoutShardThreshold={shard_threshold}",
        "-c", f"fanoutShardSize={shard_size}",
        "-c", f"fanoutMaxWorkers={max_workers}",
    ]  # fmt: skip


async def one_message(
    sandbox: SandboxProcess, cdk_out: Path, members: int, settle_s: float
) -> dict[str, Any]:
    from sandbox import virtual

    management = sandbox.url(REGION, "management")
    virtual.reset(management)
    virtual.management_stats(management, reset_counters=True)
    room = room_name()
    ids = virtual.virtual_ids(members, prefix=f"v-{room}-")
    virtual.register(management, ids)
    table = virtual.function_variable(cdk_out, REGION, "CONNECTIONS_TABLE")
    # The sender joins first: a join reads the room partition (moto is slow at that),
    # and what is measured is the message, not the join.
    sender = await Client.open(sandbox.url(REGION), "large-room-sender")
    try:
        await sender.join(room)
        await asyncio.to_thread(
            virtual.seed_room,
            table,
            room,
            ids,
            endpoint_url=sandbox.endpoints["dynamodb"],
            region=REGION,
        )
        started = time.time()
        ack = await sender.request({"action": "send", "room": room, "body": "to everyone"})
        if ack.get("type") != "ack":
            raise RuntimeError(f"send was not acknowledged: {ack}")
        summary = await asyncio.to_thread(
            virtual.wait_for_posts, management, members, settle_s, 0.1
        )
        # a late duplicate (a retried shard) would arrive after the count is reached
        await asyncio.sleep(1.0)
        summary = virtual.summary(management)
        stats = virtual.management_stats(management)
    finally:
        await sender.close()
    last = summary.get("lastPostAt") or float("nan")
    counters = stats.get("counters", {})
    return {
        "members": members,
        "wall_s": last - started,
        # send -> first post: history write, member query, shard jobs, queue poll
        "first_post_s": (summary.get("firstPostAt") or float("nan")) - started,
        "delivered": summary["idsPosted"],
        "duplicates": summary["posts"] - summary["idsPosted"],
        "duplicate_payloads": summary["duplicatePosts"],
        "peak_1s": stats.get("admittedPeak1s", counters.get("admitted_peak_1s")),
        "throttled": counters.get("throttled", 0),
    }


def measure_large_room(
    runs: int,
    members: int = 5000,
    rate_limit: int = 1000,
    budget: int = 950,
    latency_ms: float = 20.0,
    shard_threshold: int = 1000,
    shard_size: int = 500,
    max_workers: int = 4,
    # Longer than the fan-out queue's visibility timeout (360 s): a shard that failed
    # and came back is late, not lost.
    settle_s: float = 420.0,
) -> list[dict[str, Any]]:
    """``runs`` messages, each to a fresh room of ``members`` virtual members, in one sandbox."""
    import tempfile

    OUT_DIR.parent.mkdir(parents=True, exist_ok=True)
    cdk_out = synth(
        OUT_DIR,
        timeout=900,
        context=context_overrides(budget, shard_threshold, shard_size, max_workers),
    )
    results: list[dict[str, Any]] = []
    # A fresh sandbox per run: a run's room must not receive anything but its own
    # message (the sender leaving the previous room pushes a frame to its 5,000
    # members, whose posts would land in the next run's counts).
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="chat-bench-large-") as workdir:
            sandbox = SandboxProcess(
                cdk_out.resolve(),
                Path(workdir),
                regions=(REGION,),
                extra=(
                    "--mgmt-latency-ms", str(latency_ms),
                    "--mgmt-rate-limit", str(rate_limit),
                ),
            ).start()  # fmt: skip
            try:
                result = asyncio.run(one_message(sandbox, cdk_out, members, settle_s))
                if result["delivered"] < members:
                    raise RuntimeError(
                        f"large_room: {result['delivered']} of {members} members got the message"
                        f" within {settle_s:.0f} s; sandbox stderr:\n{sandbox.stderr()[-2000:]}"
                    )
            finally:
                sandbox.stop()
        result.update(
            workers=max_workers,
            bound_s=members / rate_limit,
            rate_limit=rate_limit,
            budget=budget,
        )
        result["ratio_vs_bound"] = result["wall_s"] / result["bound_s"]
        results.append(result)
    return results
