"""The ``latency`` bench (issue 17): what members and senders wait for, fast path on and off.

Two sandboxes in one run, both with the bus's delivery latency emulated from the latency
model (``--bus-latency-ms`` with bench.latency_model's EventBridge -> Lambda hop, p50 148 ms,
p99 387 ms, on every rule delivery and every cross-region forward):

* ``on``: the app as ``--cdk-out`` holds it (``localFastPathMaxMembers`` as configured,
  100 by default);
* ``off``: the same app synthesized with ``-c localFastPathMaxMembers=0`` into
  ``.bench/latency-off/cdk.out`` (today's path: every member served through the bus).

In each: ``clients_per_region`` clients in each of the 3 regions, in rooms of ``room_size``
whose members are spread over the regions (bench.e2e's rooms); ``messages`` sends at ``rate``
per second, spread over the rooms, each from the room's next member and with a ``ref``, so
its ``ack`` is timed too, after ``WARM_UP_MESSAGES`` unmeasured ones (a function's first
invocations load what it loads lazily, the delivery engine among them). The rate is low on
purpose: this part measures the path, not the sandbox's throughput (that is ``e2e``).

Figures per mode (ms, nearest-rank percentiles): ``same_region_p50_ms``/``p99`` from ``send``
to receipt by the other members in the sender's region, ``cross_region_p50_ms``/``p99`` by
members in the other regions, ``ack_p50_ms``/``p99`` from ``send`` to the sender's ``ack``;
``lost`` and ``duplicated`` (message, member) pairs (the sender's own copy included). Beside
them: ``ack_p99_growth_ms`` (on - off) and ``cross_region_p99_ratio`` (on / off).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.e2e import Room, open_rooms, percentile
from bench.latency_model import HOPS
from tests.e2e.harness import REPO, SandboxProcess, synth

OFF_CDK_OUT = REPO / ".bench" / "latency-off" / "cdk.out"
OFF_CONTEXT = ("-c", "localFastPathMaxMembers=0")
WARM_UP_MESSAGES = 30


def bus_latency_option() -> tuple[str, str]:
    """``--bus-latency-ms P50,P99`` from the model's EventBridge -> Lambda hop."""
    hop = HOPS["eventbridge_lambda"]
    return "--bus-latency-ms", f"{hop.p50_ms:g},{hop.p99_ms:g}"


Sent = dict[str, tuple[float, str, str, Room, Any]]  # body -> (at, region, ref, room, sender)


async def send_and_settle(
    rooms: list[Room], messages: int, rate: float, settle_s: float, label: str
) -> Sent:
    """``messages`` sends at ``rate``/s over ``rooms``; returns once every member has every
    message and every sender its acks, or ``settle_s`` after the last send."""
    sent: Sent = {}
    started = time.perf_counter()
    for number in range(messages):
        due = started + number / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        room = rooms[number % len(rooms)]
        region, sender = room.members[(number // len(rooms)) % len(room.members)]
        body, ref = f"{label}-{number}", f"{label}-ref-{number}"
        sent[body] = (time.perf_counter(), region, ref, room, sender)
        await sender.send_raw(
            json.dumps({"action": "send", "room": room.name, "body": body, "ref": ref})
        )
    expected = sum(len(room.members) for *_, room, _ in sent.values())
    deadline = time.perf_counter() + settle_s
    while time.perf_counter() < deadline:
        arrived = sum(len(c.arrivals) for room in rooms for _, c in room.members)
        acked = sum(ref in sender.acks for _, _, ref, _, sender in sent.values())
        if arrived >= expected and acked == len(sent):
            break
        await asyncio.sleep(0.1)
    return sent


async def run_sends(
    sandbox: SandboxProcess,
    regions: tuple[str, ...],
    clients_per_region: int,
    messages: int,
    rate: float,
    room_size: int,
    settle_s: float,
) -> dict[str, Any]:
    """One mode's figures (see the module's docstring)."""
    rooms = await open_rooms(sandbox, regions, clients_per_region, room_size)
    clients = [client for room in rooms for _, client in room.members]
    try:
        # Unmeasured first: a function's first invocations import what it loads lazily (the
        # delivery engine, its HTTP client); the figures are of warm functions.
        await send_and_settle(rooms, min(messages, WARM_UP_MESSAGES), rate, settle_s, "warm")
        for client in clients:
            client.arrivals.clear()
            client.acks.clear()
        sent = await send_and_settle(rooms, messages, rate, settle_s, "latency")
        acks = {
            body: sender.acks[ref] - at
            for body, (at, _, ref, _, sender) in sent.items()
            if ref in sender.acks
        }
        by_body = {body: (at, region, room) for body, (at, region, _, room, _) in sent.items()}
        senders = {body: sender for body, (*_, sender) in sent.items()}
        return tally(rooms, by_body, senders, acks)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def tally(
    rooms: list[Room],
    sent: dict[str, tuple[float, str, Room]],
    senders: dict[str, Any],
    acks: dict[str, float],
) -> dict[str, Any]:
    """Latencies (ms) by path, the ack's, lost and duplicated pairs of one mode.

    ``sent``: body -> (send time, sender's region, room); ``senders``: body -> the client that
    sent it (its own copy counts for lost/duplicated, not for a latency); ``acks``: body ->
    seconds from send to ack."""
    same: list[float] = []
    cross: list[float] = []
    lost = duplicated = 0
    for room in rooms:
        for region, client in room.members:
            counts = Counter(body for _, body in client.arrivals)
            first: dict[str, float] = {}
            for at, body in client.arrivals:
                first.setdefault(body, at)
            for body, (at_send, sender_region, sent_room) in sent.items():
                if sent_room is not room:
                    continue
                if body not in first:
                    lost += 1
                    continue
                duplicated += counts[body] - 1
                if client is senders[body]:
                    continue
                latency_ms = (first[body] - at_send) * 1000
                (same if region == sender_region else cross).append(latency_ms)
            duplicated += sum(n for body, n in counts.items() if body not in sent)  # strays
    same.sort()
    cross.sort()
    acked = sorted(seconds * 1000 for seconds in acks.values())
    return {
        "same_region_p50_ms": percentile(same, 0.50),
        "same_region_p99_ms": percentile(same, 0.99),
        "cross_region_p50_ms": percentile(cross, 0.50),
        "cross_region_p99_ms": percentile(cross, 0.99),
        "ack_p50_ms": percentile(acked, 0.50),
        "ack_p99_ms": percentile(acked, 0.99),
        "unacked": len(sent) - len(acks),
        "lost": lost,
        "duplicated": duplicated,
        "messages": len(sent),
    }


def compare(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """The run's row: both modes and what the targets compare."""
    return {
        "on": on,
        "off": off,
        "ack_p99_growth_ms": on["ack_p99_ms"] - off["ack_p99_ms"],
        "cross_region_p99_ratio": on["cross_region_p99_ms"] / off["cross_region_p99_ms"],
        "lost": on["lost"] + off["lost"],
        "duplicated": on["duplicated"] + off["duplicated"],
    }


def measure_latency(
    cdk_out: Path,
    regions: tuple[str, ...],
    *,
    clients_per_region: int = 10,
    messages: int = 300,
    rate: float = 5.0,
    room_size: int = 10,
    settle_s: float = 60.0,
) -> dict[str, Any]:
    """One run of both modes: ``compare(on, off)``."""
    off_cdk_out = synth(OFF_CDK_OUT, timeout=900, context=OFF_CONTEXT)
    modes: dict[str, dict[str, Any]] = {}
    for mode, assembly in (("on", cdk_out), ("off", off_cdk_out)):
        with tempfile.TemporaryDirectory(prefix=f"chat-bench-latency-{mode}-") as workdir:
            sandbox = SandboxProcess(
                assembly.resolve(), Path(workdir), extra=bus_latency_option()
            ).start()
            try:
                modes[mode] = asyncio.run(
                    run_sends(
                        sandbox, regions, clients_per_region, messages, rate, room_size, settle_s
                    )
                )
            finally:
                sandbox.stop()
    return compare(modes["on"], modes["off"])
