"""The WebSocket half of the smoke test: one room, one message per region, counted everywhere.

Every region gets one connection (one token serves them all: tokens work in
every region), every connection joins one room, then each sends one message whose
body names the run and the sending region. Each region must then receive
every acknowledged message exactly once: a missing one means the global bus
(forwarding rule, the other region's delivery rule or fan-out) is broken, a
second copy means a duplicate delivery. After the last expected message
arrived, the connections stay open for ``settle`` seconds so that a late
duplicate is still seen. Then, on the same connections, the attachment check
(tools/smoke/attachment.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from multiregion_chat.clients.strict_json import loads_frame
from tools.smoke.attachment import AttachmentOutcome, AttachmentPlan, check_attachment
from tools.smoke.errors import describe, refusal

__all__ = ["RegionExchange", "exchange"]


@dataclass
class RegionExchange:
    """What happened in one region. ``received``: sending region -> copies that arrived."""

    region: str
    connect_error: str | None = None
    send_error: str | None = None
    connected: bool = False
    sent: bool = False
    ack_ms: float | None = None
    received: dict[str, int] = field(default_factory=dict)
    latencies_ms: dict[str, float] = field(default_factory=dict)
    attachment: AttachmentOutcome | None = None

    def missing(self, expected: set[str]) -> list[str]:
        return sorted(r for r in expected if not self.received.get(r))

    def duplicated(self) -> list[str]:
        return sorted(r for r, copies in self.received.items() if copies > 1)

    def unexpected(self, expected: set[str]) -> list[str]:
        return sorted(r for r in self.received if r not in expected)


class _Session:
    """One connection: its direct replies by ``ref`` and the run's messages as they arrive."""

    def __init__(
        self,
        ws: ClientConnection,
        result: RegionExchange,
        run_id: str,
        room: str,
        arrived: asyncio.Condition,
        sent_at: Mapping[str, float],
    ) -> None:
        self.ws = ws
        self.result = result
        self.run_id = run_id
        self.room = room
        self.arrived = arrived
        self.sent_at = sent_at
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.attachment_bodies: dict[str, dict[str, Any]] = {}  # message id -> body
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                received_at = time.monotonic()
                try:
                    frame = loads_frame(raw)
                except (ValueError, RecursionError):
                    continue
                if not isinstance(frame, dict):
                    continue
                reply = self.replies.get(str(frame.get("ref")))
                if reply is not None and not reply.done():
                    reply.set_result(frame)
                if frame.get("type") == "message" and frame.get("room") == self.room:
                    await self._count(frame.get("body"), received_at)
                    await self._note_attachment(frame)
        for reply in self.replies.values():
            if not reply.done():
                reply.set_exception(ConnectionError("the connection closed"))
        async with self.arrived:
            self.arrived.notify_all()

    async def _count(self, body: Any, received_at: float) -> None:
        if not isinstance(body, dict) or body.get("smoke") != self.run_id:
            return
        sender = str(body.get("from"))
        async with self.arrived:
            self.result.received[sender] = self.result.received.get(sender, 0) + 1
            if sender in self.sent_at and sender not in self.result.latencies_ms:
                self.result.latencies_ms[sender] = (received_at - self.sent_at[sender]) * 1000
            self.arrived.notify_all()

    async def _note_attachment(self, frame: dict[str, Any]) -> None:
        body = frame.get("body")
        if isinstance(body, dict) and isinstance(body.get("attachment"), dict):
            async with self.arrived:
                self.attachment_bodies[str(frame.get("id"))] = body
                self.arrived.notify_all()

    async def attachment_message(self, message_id: str, timeout: float) -> dict[str, Any]:
        """The body of the room's message ``message_id`` (one with an attachment)."""

        def arrived_or_closed() -> bool:
            return message_id in self.attachment_bodies or self.reader.done()

        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(arrived_or_closed), timeout)
        if message_id not in self.attachment_bodies:
            raise ConnectionError("the connection closed")
        return self.attachment_bodies[message_id]

    async def request(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]:
        """The reply to ``frame``; ConnectionError once the connection has closed.

        websockets' ``ConnectionClosed`` is not a ConnectionError: left as it is, a
        connection lost between two steps (the attachment's) escaped the callers'
        handling as a traceback instead of a failed row.
        """
        if self.reader.done():  # nothing would ever answer
            raise ConnectionError("the connection closed")
        ref = f"smoke-{len(self.replies) + 1}"
        reply = self.replies[ref] = asyncio.get_running_loop().create_future()
        try:
            await self.ws.send(json.dumps({**frame, "ref": ref}))
        except ConnectionClosed as error:
            raise ConnectionError(f"the connection closed ({error})") from error
        return await asyncio.wait_for(reply, timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.reader, 5)


async def exchange(
    urls: Mapping[str, str],
    *,
    receive_only: Collection[str] = (),
    room: str,
    run_id: str,
    open_timeout: float = 10.0,
    reply_timeout: float = 15.0,
    delivery_timeout: float = 30.0,
    settle: float = 2.0,
    attachment: AttachmentPlan | None = None,
) -> dict[str, RegionExchange]:
    """Connect to every region's WebSocket URL (identity already on it: ``?token=``), join
    ``room``, send one message from each (but the ``receive_only`` keys, e.g. the global
    endpoint, which only listen), and count what every connection received. With
    ``attachment``, the first region that sent then uploads one and every other that sent
    reads it back (tools/smoke/attachment.py)."""
    results = {region: RegionExchange(region) for region in urls}
    arrived = asyncio.Condition()
    sent_at: dict[str, float] = {}
    sessions: dict[str, _Session] = {}

    async def join(region: str, url: str) -> None:
        result = results[region]
        try:
            ws = await connect(url, open_timeout=open_timeout)
        except Exception as error:
            result.connect_error = describe(error)
            return
        session = sessions[region] = _Session(ws, result, run_id, room, arrived, sent_at)
        try:
            reply = await session.request({"action": "join", "room": room}, reply_timeout)
        except Exception as error:
            result.connect_error = f"join: {describe(error)}"
            return
        result.connect_error = refusal(reply, "joined")
        result.connected = result.connect_error is None

    async def send(region: str) -> None:
        result = results[region]
        body = {"smoke": run_id, "from": region, "text": f"smoke test from {region}"}
        sent_at[region] = started = time.monotonic()
        try:
            reply = await sessions[region].request(
                {"action": "send", "room": room, "body": body}, reply_timeout
            )
        except Exception as error:
            result.send_error = describe(error)
            return
        result.send_error = refusal(reply, "ack")
        result.sent = result.send_error is None
        result.ack_ms = (time.monotonic() - started) * 1000

    try:
        await asyncio.gather(*(join(region, url) for region, url in urls.items()))
        joined = [region for region, result in results.items() if result.connected]
        await asyncio.gather(*(send(region) for region in joined if region not in receive_only))
        expected = {region for region in joined if results[region].sent}

        def complete() -> bool:
            return all(
                not results[region].missing(expected) or sessions[region].reader.done()
                for region in joined
            )

        async with arrived:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait_for(complete), delivery_timeout)
        if expected:
            # Duplicates arrive after the first copy: watch a little longer.
            await asyncio.sleep(settle)
        senders = [region for region in joined if region in expected]
        if attachment is not None and senders:
            outcomes = await check_attachment(
                {region: sessions[region] for region in senders},
                senders[0],
                room=room,
                run_id=run_id,
                plan=attachment,
            )
            for region, outcome in outcomes.items():
                results[region].attachment = outcome
    finally:
        await asyncio.gather(*(session.close() for session in sessions.values()))
    return results
