"""Attachments end to end (issue 19): upload in one region, read in the others, through the
public protocol only: ``upload`` -> a presigned POST to the region's bucket, a ``send`` that
references it, ``download`` -> a presigned GET in each reader's own region. The buckets,
their replication (set by the templates' custom resource) and S3's POST policy check are the
sandbox's, from the templates (docs/sandbox.md, "S3")."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import requests

from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.endpoints import connect_url

from .harness import REGIONS, Client, SandboxProcess, room_name, wait_until

ORIGIN = "us-east-1"
READERS = [region for region in REGIONS if region != ORIGIN]
FILE_BYTES = 3 * 1024 * 1024
REPLICATION_TIMEOUT_S = 60.0


def _post(slot: dict[str, Any], content: bytes) -> requests.Response:
    files = {"file": ("data.bin", content, slot["fields"]["Content-Type"])}
    return requests.post(slot["url"], data=slot["fields"], files=files, timeout=60)


async def _upload_slot(client: Client, room: str, size: int) -> dict[str, Any]:
    slot = await client.request(
        {"action": "upload", "room": room, "contentType": "application/octet-stream", "size": size}
    )
    assert slot["type"] == "upload_slot", slot
    return slot


async def _upload_and_send(
    client: Client, room: str, content: bytes, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``upload``, the presigned POST of ``content``, a ``send`` of ``body`` referencing it;
    returns the slot and the ``ack``."""
    slot = await _upload_slot(client, room, len(content))
    posted = await asyncio.to_thread(_post, slot, content)
    assert posted.status_code in (200, 201, 204), posted.text[:500]
    body = {**body, "attachment": {"key": slot["key"], "size": len(content)}}
    ack = await client.request({"action": "send", "room": room, "body": body})
    assert ack["type"] == "ack", ack
    return slot, ack


async def _download_until_replicated(
    client: Client, room: str, key: str
) -> tuple[dict[str, Any], bytes]:
    """Ask for a download URL until it names the reader's own region (replicated), bounded."""
    deadline = time.monotonic() + REPLICATION_TIMEOUT_S
    while True:
        answer = await client.request({"action": "download", "room": room, "key": key})
        assert answer["type"] == "download_url", answer
        if answer["region"] != ORIGIN or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    got = await asyncio.to_thread(requests.get, answer["url"], timeout=60)
    assert got.status_code == 200, got.text[:500]
    return answer, got.content


def test_an_upload_in_one_region_is_read_in_the_others_with_the_same_bytes(
    sandbox: SandboxProcess,
) -> None:
    room = room_name()
    content = os.urandom(FILE_BYTES)

    async def scenario() -> None:
        clients = {
            region: await Client.open(sandbox.url(region), f"att-{region}") for region in REGIONS
        }
        try:
            for client in clients.values():
                await client.join(room)
            uploader = clients[ORIGIN]
            _, ack = await _upload_and_send(uploader, room, content, {"text": "a file"})
            for region in READERS:
                reader = clients[region]
                message = await reader.wait_for(
                    lambda f: f.get("type") == "message" and f.get("id") == ack["id"]
                )
                key = message["body"]["attachment"]["key"]
                answer, got = await _download_until_replicated(reader, room, key)
                assert answer["region"] == region, f"{region}: never replicated: {answer}"
                assert hashlib.sha256(got).hexdigest() == hashlib.sha256(content).hexdigest()
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()))

    asyncio.run(scenario())


def test_a_non_member_is_refused_a_download_url(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> None:
        member = await Client.open(sandbox.url(ORIGIN), "att-member")
        outsider = await Client.open(sandbox.url(READERS[0]), "att-outsider")
        try:
            await member.join(room)
            slot = await _upload_slot(member, room, 10)
            posted = await asyncio.to_thread(_post, slot, b"0123456789")
            assert posted.status_code in (200, 201, 204), posted.text[:500]
            answer = await outsider.request(
                {"action": "download", "room": room, "key": slot["key"]}
            )
            assert answer["type"] == "error" and answer["code"] == "not_member", answer
            assert "url" not in answer
        finally:
            await asyncio.gather(member.close(), outsider.close())

    asyncio.run(scenario())


def test_an_upload_over_the_limit_is_refused_by_the_post_policy(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> None:
        member = await Client.open(sandbox.url(ORIGIN), "att-big")
        try:
            await member.join(room)
            slot = await _upload_slot(member, room, 10)
            too_big = b"x" * (int(slot["maxBytes"]) + 1)
            posted = await asyncio.to_thread(_post, slot, too_big)
            assert posted.status_code == 400 and "EntityTooLarge" in posted.text, posted.text
            # Nothing was stored: a send referencing the key is refused.
            body = {"attachment": {"key": slot["key"]}}
            refused = await member.request({"action": "send", "room": room, "body": body})
            assert refused["type"] == "error" and refused["code"] == "bad_request", refused
        finally:
            await member.close()

    asyncio.run(scenario())


async def _control(sandbox: SandboxProcess, path: str) -> None:
    url = f"{sandbox.web.rstrip('/')}{path}"
    answer = await asyncio.to_thread(requests.post, url, timeout=30)
    assert answer.status_code == 200, answer.text


def test_an_upload_during_a_cut_link_is_read_from_the_origin_until_it_replicates(
    sandbox: SandboxProcess,
) -> None:
    room = room_name()
    cut_to, open_to = READERS
    content = os.urandom(64 * 1024)

    async def scenario() -> None:
        clients = {
            region: await Client.open(sandbox.url(region), f"cut-att-{region}")
            for region in REGIONS
        }
        await _control(sandbox, f"/control/links/{ORIGIN}/{cut_to}/cut")
        try:
            for client in clients.values():
                await client.join(room)
            uploader = clients[ORIGIN]
            slot, ack = await _upload_and_send(uploader, room, content, {})
            # The open link delivers the message and replicates the file.
            message = await clients[open_to].wait_for(
                lambda f: f.get("type") == "message" and f.get("id") == ack["id"]
            )
            answer, got = await _download_until_replicated(clients[open_to], room, slot["key"])
            assert answer["region"] == open_to and got == content
            # Behind the cut link, a member who has the key (passed on by the member above)
            # gets the origin's copy: the file has not replicated to its region.
            key = message["body"]["attachment"]["key"]
            reader = clients[cut_to]
            behind = await reader.request({"action": "download", "room": room, "key": key})
            assert behind["type"] == "download_url" and behind["region"] == ORIGIN, behind
            from_origin = await asyncio.to_thread(requests.get, behind["url"], timeout=60)
            assert from_origin.status_code == 200 and from_origin.content == content
        finally:
            await _control(sandbox, f"/control/links/{ORIGIN}/{cut_to}/heal")
        try:
            # Healed: the held replication goes, and the region serves its own copy.
            answer, got = await _download_until_replicated(reader, room, key)
            assert answer["region"] == cut_to, f"never replicated after the heal: {answer}"
            assert got == content
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()))

    asyncio.run(scenario())


async def _run_clis(
    sandbox: SandboxProcess, room: str, clis: list[tuple[str, str, Any, io.StringIO]]
) -> list[int]:
    """Run CLI clients (region, user, typed lines, output) in ``room`` together; exit codes."""
    runs = [
        run_client(
            connect_url(sandbox.url(region), user, None, secret=sandbox.signing_secret),
            room,
            lines,
            out,
        )
        for region, user, lines, out in clis
    ]
    return list(await asyncio.gather(*runs))


def test_the_cli_uploads_a_file_and_another_region_saves_it(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    room = room_name()
    source, target = tmp_path / "notes.bin", tmp_path / "saved.bin"
    source.write_bytes(os.urandom(256 * 1024))
    uploader_out, saver_out = io.StringIO(), io.StringIO()

    async def saver_lines() -> AsyncIterator[str]:
        await wait_until(lambda: "* attachment 1:" in saver_out.getvalue(), 60, "the attachment")
        yield f"/save 1 {target}\n"
        await wait_until(lambda: "* saved" in saver_out.getvalue(), 60, "the save")

    async def uploader_lines() -> AsyncIterator[str]:
        await wait_until(lambda: "* joined" in saver_out.getvalue(), 60, "the saver's join")
        yield f"/upload {source}\n"

    clis = [
        (READERS[0], "cli-saver", saver_lines(), saver_out),
        (ORIGIN, "cli-uploader", uploader_lines(), uploader_out),
    ]
    assert asyncio.run(_run_clis(sandbox, room, clis)) == [0, 0], (
        uploader_out.getvalue(),
        saver_out.getvalue(),
    )
    assert "! " not in uploader_out.getvalue() + saver_out.getvalue()
    assert "* attachment 1: notes.bin, 262144 bytes" in saver_out.getvalue()
    assert target.read_bytes() == source.read_bytes()


def test_the_cli_sends_a_text_refused_as_too_large_as_a_file(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    room = room_name()
    text = "long " * 4000  # 20,000 bytes: over maxBodyBytes (16,384)
    target = tmp_path / "got.txt"
    sender_out, saver_out = io.StringIO(), io.StringIO()

    async def saver_lines() -> AsyncIterator[str]:
        await wait_until(lambda: "* attachment 1:" in saver_out.getvalue(), 60, "the attachment")
        yield f"/save 1 {target}\n"
        await wait_until(lambda: "* saved" in saver_out.getvalue(), 60, "the save")

    async def sender_lines() -> AsyncIterator[str]:
        await wait_until(lambda: "* joined" in saver_out.getvalue(), 60, "the saver's join")
        yield text + "\n"
        await wait_until(lambda: "/sendfile sends it" in sender_out.getvalue(), 60, "the offer")
        yield "/sendfile\n"

    clis = [
        (READERS[1], "cli-long-saver", saver_lines(), saver_out),
        (ORIGIN, "cli-long-sender", sender_lines(), sender_out),
    ]
    assert asyncio.run(_run_clis(sandbox, room, clis)) == [0, 0], (
        sender_out.getvalue(),
        saver_out.getvalue(),
    )
    assert "too_large" in sender_out.getvalue()
    assert f"* attachment 1: message.txt, {len(text)} bytes" in saver_out.getvalue()
    assert target.read_text() == text
