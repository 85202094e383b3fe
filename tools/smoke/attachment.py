"""The attachment half of the smoke test: uploaded in one region, read back in every other.

The first region that sent its message asks for an ``upload`` slot, POSTs random bytes to
its bucket (multiregion_chat/clients/transfer.py, as the CLI does) and sends a message that
references the object. Every other region waits for that message, takes the key from it and
asks its own region for a ``download_url`` until the URL names that region (S3 Replication
made its copy) and the bytes have the upload's sha256, within ``wait`` seconds. Before the
copy arrives the answer points at the origin's copy (docs/architecture.md, "Attachments"):
those bytes are checked too, and the region keeps asking. A refused download or other bytes
fail at once; only the origin's copy when the wait ends fails as "not replicated".
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from multiregion_chat.clients.transfer import (
    TransferError,
    attachment_reference,
    fetch,
    post_to_slot,
    upload_request,
)
from tools.smoke.errors import describe, refusal

__all__ = [
    "AttachmentOutcome",
    "AttachmentPlan",
    "AttachmentSession",
    "check_attachment",
]

CONTENT_TYPE = "application/octet-stream"
POLL_SECONDS = 1.0  # between two download_url asks of a region still served the origin's copy
TRANSFER_SECONDS = 60.0


class AttachmentSession(Protocol):
    """What a region's connection offers (tools/smoke/exchange.py's session)."""

    async def request(self, frame: dict[str, Any], timeout: float) -> dict[str, Any]: ...

    async def attachment_message(self, message_id: str, timeout: float) -> dict[str, Any]:
        """The body of the room's message ``message_id`` once it arrived."""
        ...


@dataclass(frozen=True)
class AttachmentPlan:
    """``size`` random bytes; each other region's own copy must be read within ``wait`` s."""

    size: int
    wait: float
    reply_timeout: float = 15.0


@dataclass
class AttachmentOutcome:
    """One region's part. ``origin``: it uploaded; ``seconds``: send -> own copy matched."""

    origin: bool = False
    seconds: float | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


async def _upload(
    session: AttachmentSession, room: str, name: str, content: bytes, plan: AttachmentPlan
) -> tuple[str | None, str | None]:
    """``upload`` -> POST -> ``send``: (the message's id, None) or (None, what failed)."""
    slot = await session.request(
        upload_request(room, len(content), CONTENT_TYPE, name), plan.reply_timeout
    )
    if refused := refusal(slot, "upload_slot"):
        return None, f"upload: {refused}"
    try:
        await post_to_slot(
            slot, content, name=name, content_type=CONTENT_TYPE, timeout=TRANSFER_SECONDS
        )
    except TransferError as error:
        return None, f"upload POST: {error}"
    body = {
        "text": f"smoke test attachment ({len(content)} bytes)",
        "attachment": attachment_reference(slot, len(content), CONTENT_TYPE, name),
    }
    ack = await session.request({"action": "send", "room": room, "body": body}, plan.reply_timeout)
    if refused := refusal(ack, "ack"):
        return None, f"send with the attachment: {refused}"
    return str(ack.get("id")), None


async def _read_own_copy(
    session: AttachmentSession,
    region: str,
    room: str,
    message_id: str,
    digest: str,
    plan: AttachmentPlan,
) -> AttachmentOutcome:
    """Ask ``region`` for the attachment of ``message_id`` until its own copy matches."""
    started = time.monotonic()
    deadline = started + plan.wait
    try:
        body = await session.attachment_message(message_id, plan.wait)
    except TimeoutError:
        return AttachmentOutcome(
            problem=f"the attachment's message never arrived within {plan.wait:g} s"
        )
    key = str((body.get("attachment") or {}).get("key"))
    while True:
        answer = await session.request(
            {"action": "download", "room": room, "key": key}, plan.reply_timeout
        )
        if refused := refusal(answer, "download_url"):
            return AttachmentOutcome(problem=f"download refused: {refused}")
        served_by = str(answer.get("region"))
        try:
            content = await fetch(str(answer.get("url")), timeout=TRANSFER_SECONDS)
        except TransferError as error:
            return AttachmentOutcome(problem=f"download from {served_by}: {error}")
        if hashlib.sha256(content).hexdigest() != digest:
            return AttachmentOutcome(
                problem=f"the copy in {served_by} has other bytes than the upload "
                f"({len(content)} bytes, sha256 differs)"
            )
        if served_by == region:
            return AttachmentOutcome(seconds=time.monotonic() - started)
        if time.monotonic() + POLL_SECONDS > deadline:
            return AttachmentOutcome(
                problem=f"not replicated within {plan.wait:g} s: still served from "
                f"{served_by} (those bytes match)"
            )
        await asyncio.sleep(POLL_SECONDS)


async def check_attachment(
    sessions: Mapping[str, AttachmentSession],
    origin: str,
    room: str,
    run_id: str,
    plan: AttachmentPlan,
) -> dict[str, AttachmentOutcome]:
    """Upload in ``origin``, read back in every other region of ``sessions``."""
    content = os.urandom(plan.size)
    digest = hashlib.sha256(content).hexdigest()
    outcomes = {origin: AttachmentOutcome(origin=True)}
    try:
        message_id, problem = await _upload(
            sessions[origin], room, f"smoke-{run_id}.bin", content, plan
        )
    except (TimeoutError, ConnectionError) as error:
        message_id, problem = None, f"upload: {describe(error)}"
    if message_id is None:
        outcomes[origin].problem = problem
        return outcomes

    async def read(region: str) -> AttachmentOutcome:
        try:
            return await _read_own_copy(sessions[region], region, room, message_id, digest, plan)
        except (TimeoutError, ConnectionError) as error:
            return AttachmentOutcome(problem=f"download: {describe(error)}")

    readers = [region for region in sessions if region != origin]
    for region, outcome in zip(readers, await asyncio.gather(*map(read, readers)), strict=True):
        outcomes[region] = outcome
    return outcomes
