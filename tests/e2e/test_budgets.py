"""Client budgets and reply sizes through the synthesized templates in the sandbox (issue 8).

The default app's budgets apply (infra/config.py): a connection's burst of
frames, the room cap, and API Gateway's size limits as the sandbox enforces
them (a client frame over 32 KB closes the connection with 1009; a reply
over 128 KB would not be delivered).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import boto3

from multiregion_chat.infra.config import ChatConfig
from multiregion_chat.runtime.protocol.reply_limits import MAX_REPLY_BYTES
from sandbox import virtual

from .harness import REGIONS, Client, SandboxProcess, room_name, wait_until

DEFAULTS = ChatConfig()


async def request_within_budget(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    """``request``, waiting out ``rate_limited`` replies as a client should (bounded)."""
    for _ in range(50):
        reply = await client.request(frame)
        if reply.get("code") != "rate_limited":
            return reply
        await asyncio.sleep(reply["retryAfterMs"] / 1000)
    raise AssertionError(f"still rate limited: {frame}")


def table_client(sandbox: SandboxProcess, region: str) -> tuple[Any, str]:
    """The sandbox's DynamoDB and the region's connections table (budgets live there)."""
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=sandbox.endpoints["dynamodb"],
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return dynamodb, virtual.function_variable(sandbox.cdk_out, region, "CONNECTIONS_TABLE")


def rate_key(user: str) -> dict[str, Any]:
    """The user's budget item (runtime.quota.client_budget): ``u`` and one
    ``c:<connectionId>`` each."""
    return {"pk": {"S": f"RATE#{user}"}, "sk": {"S": "RATE"}}


def connection_ids(dynamodb: Any, table: str, user: str) -> list[str]:
    answer = dynamodb.query(
        TableName=table,
        IndexName="ConnectionsByUser",
        KeyConditionExpression="connectedUserId = :u",
        ExpressionAttributeValues={":u": {"S": user}},
    )
    return [item["pk"]["S"].removeprefix("CONN#") for item in answer["Items"]]


def _replies(
    client: Client, refs: list[str], found: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    wanted = set(refs)
    for frame in client.frames:
        if frame.get("ref") in wanted:
            found[frame["ref"]] = frame
    return found


def test_a_burst_over_the_connection_budget_is_refused_and_the_connection_stays(
    sandbox: SandboxProcess,
) -> None:
    asyncio.run(_burst(sandbox))


async def _burst(sandbox: SandboxProcess) -> None:
    user = "budget-burst"
    client = await Client.open(sandbox.url(REGIONS[0]), user)
    dynamodb, table = table_client(sandbox, REGIONS[0])
    room = room_name()
    loop = asyncio.get_running_loop()
    try:
        await client.join(room)
        # All frames at once (the replies are awaited after): more than the burst.
        count = DEFAULTS.connection_burst_limit + 10
        refs = [f"b{n}" for n in range(count)]
        started = loop.time()
        for n, ref in enumerate(refs):
            await client.send_raw(
                json.dumps({"action": "send", "room": room, "body": n, "ref": ref})
            )
        # Generous: 40 frames at once start up to 16 sandbox workers on a shared machine.
        by_ref: dict[str, dict[str, Any]] = {}
        await wait_until(
            lambda: len(_replies(client, refs, by_ref)) == count,
            timeout=300,
            what=f"replies to the burst (frames so far: {client.frames[-5:]})",
        )
        elapsed = loop.time() - started
        replies = [by_ref[ref] for ref in refs]
        limited = [r for r in replies if r.get("code") == "rate_limited"]
        acked = [r for r in replies if r["type"] == "ack"]
        assert len(acked) + len(limited) == count
        # A token bucket: at most the burst plus what refilled while the sandbox worked
        # through the frames (a slow machine refills more; the bound holds at any speed).
        refilled = math.ceil(DEFAULTS.connection_rate_limit * elapsed)
        assert len(acked) <= DEFAULTS.connection_burst_limit + refilled
        assert all(r["retryAfterMs"] > 0 for r in limited)
        # nothing refused was published: only the acked bodies come back as messages
        # (unnumbered sends are concurrent, so they may arrive in any order: wait for all)
        ids = {r["id"] for r in acked}
        await wait_until(
            lambda: {m["id"] for m in client.messages(room)} >= ids,
            timeout=120,
            what="every acked message delivered",
        )
        assert {m["id"] for m in client.messages(room)} == ids
        assert sorted(m["body"] for m in client.messages(room)) == sorted(
            n for n, reply in enumerate(replies) if reply["type"] == "ack"
        )
        # The burst alone proves no refusal: a slow machine refills the bucket as it
        # works. So, speed-independent, the connection's own bucket is emptied in the
        # table (its theoretical arrival time 10 minutes ahead; the user's bucket is
        # left alone): the next frame must be refused by the connection budget.
        (connection_id,) = await asyncio.to_thread(connection_ids, dynamodb, table, user)
        ahead_ms = int(time.time() * 1000) + 600_000
        await asyncio.to_thread(
            dynamodb.update_item,
            TableName=table,
            Key=rate_key(user),
            UpdateExpression="SET #c = :ahead",
            ExpressionAttributeNames={"#c": f"c:{connection_id}"},
            ExpressionAttributeValues={":ahead": {"N": str(ahead_ms)}},
        )
        refused = await client.request({"action": "send", "room": room, "body": "over"})
        assert (refused["type"], refused.get("code")) == ("error", "rate_limited"), refused
        assert refused["retryAfterMs"] > 60_000
        await asyncio.to_thread(
            dynamodb.update_item,
            TableName=table,
            Key=rate_key(user),
            UpdateExpression="REMOVE #c",
            ExpressionAttributeNames={"#c": f"c:{connection_id}"},
        )
        # the connection stayed up and works once the budget refills
        reply = await request_within_budget(client, {"action": "send", "room": room, "body": "x"})
        assert reply["type"] == "ack"
        await client.wait_for(lambda f: f.get("type") == "message" and f.get("id") == reply["id"])
        assert "over" not in [m["body"] for m in client.messages(room)]
    finally:
        await client.close()


def test_an_exhausted_user_budget_refuses_frames_and_the_connection_stays(
    sandbox: SandboxProcess,
) -> None:
    """Speed-independent: the user's bucket is emptied in the table itself (its theoretical
    arrival time a minute ahead), so the next frame is over budget whatever the machine."""
    asyncio.run(_exhausted(sandbox))


async def _exhausted(sandbox: SandboxProcess) -> None:
    region, user = REGIONS[0], "budget-empty"
    client = await Client.open(sandbox.url(region), user)
    room = room_name()
    dynamodb, table = table_client(sandbox, region)
    key = rate_key(user)
    try:
        await client.join(room)
        ahead_ms = int(time.time() * 1000) + 60_000
        await asyncio.to_thread(
            dynamodb.update_item,
            TableName=table,
            Key=key,
            UpdateExpression="SET u = :ahead",
            ExpressionAttributeValues={":ahead": {"N": str(ahead_ms)}},
        )
        refused = await client.request({"action": "send", "room": room, "body": "over"})
        assert (refused["type"], refused["code"]) == ("error", "rate_limited")
        assert refused["retryAfterMs"] > 1000
        await asyncio.to_thread(dynamodb.delete_item, TableName=table, Key=key)
        # the connection stayed up; the refused frame published nothing
        reply = await request_within_budget(client, {"action": "send", "room": room, "body": "ok"})
        assert reply["type"] == "ack"
        await client.wait_for(lambda f: f.get("type") == "message" and f.get("id") == reply["id"])
        assert [m["body"] for m in client.messages(room)] == ["ok"]
    finally:
        await client.close()


def test_a_join_beyond_the_room_cap_is_refused(sandbox: SandboxProcess) -> None:
    asyncio.run(_room_cap(sandbox))


async def _room_cap(sandbox: SandboxProcess) -> None:
    client = await Client.open(sandbox.url(REGIONS[0]), "budget-rooms")
    prefix = room_name()
    try:
        for n in range(DEFAULTS.max_rooms_per_connection):
            reply = await request_within_budget(client, {"action": "join", "room": f"{prefix}-{n}"})
            assert reply["type"] == "joined", reply
        refused = await request_within_budget(client, {"action": "join", "room": f"{prefix}-x"})
        assert (refused["type"], refused["code"]) == ("error", "too_many_rooms")
        # existing memberships are unaffected
        reply = await request_within_budget(
            client, {"action": "send", "room": f"{prefix}-0", "body": "still here"}
        )
        assert reply["type"] == "ack"
        pong = await request_within_budget(client, {"action": "ping"})
        assert pong["type"] == "pong"
    finally:
        await client.close()


def test_history_of_large_messages_fits_in_replies(sandbox: SandboxProcess) -> None:
    asyncio.run(_large_history(sandbox))


async def _large_history(sandbox: SandboxProcess) -> None:
    client = await Client.open(sandbox.url(REGIONS[0]), "budget-history")
    room = room_name()
    body = "\u00e9" * (DEFAULTS.max_body_bytes // 2 - 1)  # 2-byte characters, quotes: the limit
    try:
        await client.join(room)
        sent = []
        for _ in range(12):  # about 196 KB of bodies: more than one reply holds
            ack = await request_within_budget(
                client, {"action": "send", "room": room, "body": body}
            )
            assert ack["type"] == "ack", ack
            sent.append(ack["id"])
        await client.wait_for(lambda f: f.get("type") == "message" and f.get("id") == sent[-1])
        got: list[str] = []
        after: str | None = None
        for _ in range(len(sent)):  # bounded
            frame: dict[str, Any] = {"action": "history", "room": room, "limit": 100}
            if after:
                frame["after"] = after
            start = len(client.frames)
            reply = await request_within_budget(client, frame)
            assert reply["type"] == "history", reply  # not the gateway's error
            assert len(json.dumps(reply, ensure_ascii=False).encode()) <= MAX_REPLY_BYTES
            assert client.frames[start:].count(reply) == 1
            got += [m["id"] for m in reply["messages"]]
            if not reply["more"]:
                break
            after = got[-1]
        assert got == sent
    finally:
        await client.close()


def test_a_client_frame_over_32_kb_closes_the_connection_with_1009(
    sandbox: SandboxProcess,
) -> None:
    asyncio.run(_big_frame(sandbox))


async def _big_frame(sandbox: SandboxProcess) -> None:
    client = await Client.open(sandbox.url(REGIONS[0]), "budget-frame")
    try:
        # one unfragmented frame of 33 KB, as a browser would send it
        await client.send_raw(json.dumps({"action": "ping", "pad": "p" * 33 * 1024}))
        await asyncio.wait_for(asyncio.shield(client._reader), 15)  # the reader ends on close
        assert client.ws.close_code == 1009
    finally:
        await client.close()
