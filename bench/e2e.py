"""The ``e2e`` bench: many clients in three regions of the sandbox, latency and exactly-once.

``clients_per_region`` real WebSocket clients in each of the sandbox's regions (3 x 100 by
default) are split into rooms of ``room_size`` (each room has members in every region, so most
deliveries cross a region). ``messages`` messages in all are sent at a bounded total rate
(``rate`` per second, spread over the rooms in turn, each from the room's next member), so the
figure is the latency of a loaded but not saturated sandbox, not of a queue that grows without
end. Each message's body is unique; a client stamps every frame when it arrives
(``time.perf_counter`` in this process, the same clock as the send).

Figures: ``p50_ms`` / ``p99_ms`` from ``send`` to receipt in a region other than the sender's
(the cross-region path: EventBridge replication, the far region's handler and fan-out);
``same_region_p50_ms``; ``lost`` = (message, member) pairs that never arrived within
``settle_s`` after the last send; ``duplicated`` = receipts beyond the first of a pair. Every
member of a room should receive every message of the room exactly once, the sender included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from multiregion_chat.clients.strict_json import loads_frame
from tests.e2e.harness import Client, SandboxProcess, room_name


class TimedClient(Client):
    """A harness :class:`Client` that also remembers when each ``message`` frame, and each
    ``ack`` of a frame sent with a ``ref``, arrived."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (perf_counter, body)
        self.acks: dict[str, float] = {}  # ref -> perf_counter
        super().__init__(*args, **kwargs)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.perf_counter()
                frame = loads_frame(raw)
                if frame.get("type") == "message":
                    self.arrivals.append((now, str(frame.get("body"))))
                    continue  # kept out of ``frames``: 10,000 of them would slow wait_for
                if frame.get("type") == "ack" and isinstance(frame.get("ref"), str):
                    self.acks[frame["ref"]] = now
                    continue
                async with self._arrived:
                    self.frames.append(frame)
                    self._arrived.notify_all()
        async with self._arrived:
            self._arrived.notify_all()


@dataclass
class Room:
    name: str
    members: list[tuple[str, TimedClient]] = field(default_factory=list)  # (region, client)


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of an already sorted list (``share`` in 0..1)."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


def room_of(number: int, room_size: int, rooms: int) -> int:
    """The room of client ``number``: consecutive numbers (whose regions alternate) share a
    room, so every room has members in every region."""
    return (number // room_size) % rooms


async def open_rooms(
    sandbox: SandboxProcess, regions: tuple[str, ...], clients_per_region: int, room_size: int
) -> list[Room]:
    """Rooms of ``room_size`` members, members taken from the regions in turn."""
    total = clients_per_region * len(regions)
    rooms = [Room(room_name()) for _ in range(max(1, total // room_size))]
    slots = [(regions[i % len(regions)], i) for i in range(total)]

    async def member(region: str, number: int) -> tuple[int, str, TimedClient]:
        client = await TimedClient.open(sandbox.url(region), f"e2e-{region}-{number}")
        assert isinstance(client, TimedClient)
        return number, region, client

    opened: list[tuple[int, str, TimedClient]] = []
    for start in range(0, len(slots), 50):  # connect in waves: the sandbox's authorizer is one
        opened += await asyncio.gather(*(member(r, n) for r, n in slots[start : start + 50]))
    for number, region, client in sorted(opened, key=lambda entry: entry[0]):
        rooms[room_of(number, room_size, len(rooms))].members.append((region, client))
    for room in rooms:
        for start in range(0, len(room.members), 50):
            await asyncio.gather(*(c.join(room.name) for _, c in room.members[start : start + 50]))
    return rooms


async def measure_e2e(
    sandbox: SandboxProcess,
    regions: tuple[str, ...],
    clients_per_region: int = 100,
    messages: int = 10000,
    rate: float = 100.0,
    room_size: int = 10,
    settle_s: float = 30.0,
) -> dict[str, Any]:
    rooms = await open_rooms(sandbox, regions, clients_per_region, room_size)
    sent: dict[str, tuple[float, str, Room]] = {}  # body -> (send time, sender region, room)
    started = time.perf_counter()
    try:
        for number in range(messages):
            due = started + number / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            room = rooms[number % len(rooms)]
            region, sender = room.members[(number // len(rooms)) % len(room.members)]
            body = f"e2e-{number}"
            sent[body] = (time.perf_counter(), region, room)
            await sender.send_raw(json.dumps({"action": "send", "room": room.name, "body": body}))
        send_s = time.perf_counter() - started
        expected = sum(len(room.members) for _, _, room in sent.values())
        # Wait while receipts keep arriving (a sandbox behind its senders catches up
        # late: that is latency, not loss), until settle_s pass with none, or the cap.
        cap = time.perf_counter() + SETTLE_CAP_S
        received, quiet_since = -1, time.perf_counter()
        while time.perf_counter() < min(cap, quiet_since + settle_s):
            now_received = sum(len(c.arrivals) for room in rooms for _, c in room.members)
            if now_received >= expected:
                break
            if now_received > received:
                received, quiet_since = now_received, time.perf_counter()
            await asyncio.sleep(0.2)
        return tally(rooms, sent, send_s)
    finally:
        await asyncio.gather(
            *(c.close() for room in rooms for _, c in room.members), return_exceptions=True
        )


SETTLE_CAP_S = 900.0  # the longest a run waits for late receipts after its last send


def tally(
    rooms: list[Room], sent: dict[str, tuple[float, str, Room]], send_s: float
) -> dict[str, Any]:
    """Latencies, lost and duplicated (message, member) pairs of one e2e run."""
    cross: list[float] = []
    local: list[float] = []
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
                latency_ms = (first[body] - at_send) * 1000
                (local if region == sender_region else cross).append(latency_ms)
            duplicated += sum(n for body, n in counts.items() if body not in sent)  # strays
    cross.sort()
    local.sort()
    return {
        "p50_ms": percentile(cross, 0.50),
        "p99_ms": percentile(cross, 0.99),
        "max_ms": cross[-1] if cross else float("nan"),
        "same_region_p50_ms": statistics.median(local) if local else float("nan"),
        "lost": lost,
        "duplicated": duplicated,
        "messages": len(sent),
        "clients": sum(len(room.members) for room in rooms),
        "rooms": len(rooms),
        "deliveries": len(cross) + len(local),
        "send_rate_per_s": len(sent) / send_s if send_s > 0 else float("nan"),
    }
