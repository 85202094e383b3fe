"""The ``attachments`` bench: how long a file takes to be readable in every region.

In the 3-region sandbox of ``--cdk-out`` (a sandbox of its own), a member in the first region
uploads a file of ``--attachment-mb`` MB (``upload`` -> ``upload_slot``, then the presigned
POST) and sends a message that references it. A member in each other region waits for the
message, then asks its own region for a ``download_url`` until the URL names that region
(its own copy has replicated) and the bytes it reads have the uploaded file's sha256
(bounded by :data:`READABLE_TIMEOUT_S`).

Figures: ``upload_s`` (slot + POST), ``readable_everywhere_s`` (from the ``send`` until the
last region's own copy matched; NaN if one never did) and ``sha256_ok`` (every other region
read the same bytes from its own bucket). The figures are the sandbox's (moto, replication
by the sandbox's own copier), not S3's; see docs/performance.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from multiregion_chat.clients.transfer import (
    TransferError,
    attachment_reference,
    fetch,
    post_to_slot,
    upload_request,
)
from tests.e2e.harness import Client, SandboxProcess, room_name

READABLE_TIMEOUT_S = 120.0
POLL_S = 0.1
NAME, CONTENT_TYPE = "bench.bin", "application/octet-stream"


def tally(
    upload_s: float, sent_at: float, readable_at: dict[str, float | None], mismatched: set[str]
) -> dict[str, Any]:
    """The run's figures from when each region's own copy first matched (None: never) and
    the regions whose own copy was ever read back with other bytes.
    ``readable_everywhere_s`` is NaN (left out of the median) unless every region's matched."""
    everywhere = bool(readable_at) and all(at is not None for at in readable_at.values())
    last = max((at for at in readable_at.values() if at is not None), default=sent_at)
    return {
        "upload_s": round(upload_s, 3),
        "readable_everywhere_s": round(last - sent_at, 3) if everywhere else float("nan"),
        "sha256_ok": everywhere and not mismatched,
        "regions_read": sum(1 for at in readable_at.values() if at is not None),
    }


async def _read_back(url: str) -> bytes | None:
    """The bytes of a download URL, None while storage refuses (the poll asks again)."""
    try:
        return await fetch(url)
    except TransferError:
        return None


async def _own_copy(
    reader: Client, region: str, room: str, key: str, digest: str, mismatched: set[str]
) -> float | None:
    """When ``region``'s own copy first read back with ``digest`` (None: not within the
    bound); a read of its own copy with other bytes adds ``region`` to ``mismatched``."""
    deadline = time.monotonic() + READABLE_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = await reader.request({"action": "download", "room": room, "key": key})
        if answer.get("type") != "download_url":
            raise RuntimeError(f"{region}: download refused: {answer}")
        if answer.get("region") == region:
            content = await _read_back(answer["url"])
            if content is not None and hashlib.sha256(content).hexdigest() == digest:
                return time.perf_counter()
            if content is not None:
                mismatched.add(region)
        await asyncio.sleep(POLL_S)
    return None


async def run_once(
    sandbox: SandboxProcess, regions: tuple[str, ...], size_mb: float
) -> dict[str, Any]:
    origin, readers = regions[0], regions[1:]
    room, run = room_name(), os.urandom(3).hex()
    content = os.urandom(max(1, int(size_mb * 1024 * 1024)))
    digest = hashlib.sha256(content).hexdigest()
    clients = {r: await Client.open(sandbox.url(r), f"bench-att-{run}-{r}") for r in regions}
    try:
        for client in clients.values():
            await client.join(room)
        uploader = clients[origin]
        started = time.perf_counter()
        slot = await uploader.request(
            upload_request(room, len(content), CONTENT_TYPE, NAME), timeout=60
        )
        if slot.get("type") != "upload_slot":
            raise RuntimeError(f"upload refused: {slot}")
        await post_to_slot(slot, content, name=NAME, content_type=CONTENT_TYPE)
        upload_s = time.perf_counter() - started
        body = {"attachment": attachment_reference(slot, len(content), CONTENT_TYPE, NAME)}
        sent_at = time.perf_counter()
        ack = await uploader.request({"action": "send", "room": room, "body": body}, timeout=60)
        if ack.get("type") != "ack":
            raise RuntimeError(f"send refused: {ack}")

        async def read(region: str) -> float | None:
            reader = clients[region]
            message = await reader.wait_for(
                lambda f: f.get("type") == "message" and f.get("id") == ack["id"],
                timeout=READABLE_TIMEOUT_S,
            )
            key = message["body"]["attachment"]["key"]
            return await _own_copy(reader, region, room, key, digest, mismatched)

        mismatched: set[str] = set()
        found = await asyncio.gather(*(read(r) for r in readers))
        return tally(upload_s, sent_at, dict(zip(readers, found, strict=True)), mismatched)
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()))


def measure_attachments(
    cdk_out: Path, regions: tuple[str, ...], size_mb: float, runs: int
) -> list[dict[str, Any]]:
    """``runs`` uploads in one sandbox of their own; one row per run."""
    with tempfile.TemporaryDirectory(prefix="chat-bench-attachments-") as workdir:
        sandbox = SandboxProcess(cdk_out, Path(workdir)).start()
        try:
            return [asyncio.run(run_once(sandbox, regions, size_mb)) for _ in range(runs)]
        finally:
            sandbox.stop()
