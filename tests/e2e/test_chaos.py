"""Chaos in the running app: a cut link heals, dead letters are replayed, the CLI fails over,
and a small soak (3 regions x 4 clients) keeps every message once through both.

These tests share the session's sandbox: each one heals, brings back and resets what it
changed (in ``finally``), so the others see a whole sandbox.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from bench.soak import run_soak
from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.infra.config import ChatConfig
from sandbox.eventbus import DEFAULT_RETRY_TIME_SCALE
from tools.replay_dlq import client_factory, replay_queue

from .harness import REGIONS, Client, Lines, SandboxProcess, room_name, wait_until

TIMEOUT = 60.0


async def control(sandbox: SandboxProcess, method: str, path: str, body: Any = None) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{sandbox.web.rstrip('/')}{path}", json=body) as answer,
    ):
        assert answer.status == 200, await answer.text()
        return await answer.json()


async def bodies(client: Client, room: str) -> list[Any]:
    return [m["body"] for m in client.messages(room)]


def test_messages_sent_during_a_cut_link_arrive_once_after_it_heals(
    sandbox: SandboxProcess,
) -> None:
    room = room_name()
    source, target = "ap-northeast-1", "us-east-1"

    async def scenario() -> None:
        sender = await Client.open(sandbox.url(source), "cut-sender")
        receiver = await Client.open(sandbox.url(target), "cut-receiver")
        third = await Client.open(sandbox.url("eu-west-1"), "cut-third")
        try:
            for client in (sender, receiver, third):
                await client.join(room)
            await control(sandbox, "POST", f"/control/links/{source}/{target}/cut")
            for number in range(3):
                ack = await sender.request({"action": "send", "room": room, "body": number})
                assert ack["type"] == "ack", ack
            # The link that is not cut delivers at once; the cut one holds them back.
            await wait_until(
                lambda: len(third.messages(room)) == 3, TIMEOUT, "delivery over the open link"
            )
            state = await control(sandbox, "GET", "/control/state")
            assert state["cutLinks"] == [{"from": source, "to": target}]
            assert receiver.messages(room) == []
            await wait_until(
                lambda: state_counter(sandbox, source, "forwardRetries") >= 3,
                TIMEOUT,
                "forwards retrying",
            )
        finally:
            await control(sandbox, "POST", f"/control/links/{source}/{target}/heal")
        try:
            await wait_until(
                lambda: len(receiver.messages(room)) >= 3, TIMEOUT, "delivery after the heal"
            )
            await asyncio.sleep(0)
            assert sorted(await bodies(receiver, room)) == [0, 1, 2]
        finally:
            for client in (sender, receiver, third):
                await client.close()

    asyncio.run(scenario())


_STATE: dict[str, Any] = {}


def state_counter(sandbox: SandboxProcess, region: str, name: str) -> int:
    """A counter of ``GET /control/state`` (a blocking read: tests poll it in wait_until)."""
    import urllib.request

    with urllib.request.urlopen(f"{sandbox.web.rstrip('/')}/control/state", timeout=10) as answer:
        return int(json.loads(answer.read())["regions"][region][name])


def test_dead_letters_of_a_long_cut_are_replayed_once(sandbox: SandboxProcess) -> None:
    room = room_name()
    source, target = "us-east-1", "eu-west-1"

    async def scenario() -> None:
        sender = await Client.open(sandbox.url(source), "dlq-sender")
        receiver = await Client.open(sandbox.url(target), "dlq-receiver")
        before = state_counter(sandbox, source, "deadLetterQueued")
        try:
            for client in (sender, receiver):
                await client.join(room)
            # 24 h of retries in about 1.7 s: the events exhaust the template's RetryPolicy.
            await control(sandbox, "PUT", "/control/retry-time-scale", {"scale": 0.00002})
            await control(sandbox, "POST", f"/control/links/{source}/{target}/cut")
            for number in range(3):
                ack = await sender.request({"action": "send", "room": room, "body": number})
                assert ack["type"] == "ack", ack
            await wait_until(
                lambda: state_counter(sandbox, source, "deadLetterQueued") >= before + 3,
                TIMEOUT,
                "the events in the replication DLQ",
            )
        finally:
            await control(sandbox, "POST", f"/control/links/{source}/{target}/heal")
            await control(
                sandbox, "PUT", "/control/retry-time-scale", {"scale": DEFAULT_RETRY_TIME_SCALE}
            )
        try:
            assert receiver.messages(room) == []
            queues = sandbox.endpoints["queues"][source]
            [dlq] = [q["url"] for name, q in queues.items() if "ReplicationDeadLetter" in name]
            clients = client_factory(sandbox.endpoints)
            sqs = clients("sqs", source)
            # At least our 3 messages: the sandbox is shared, and another test's clients
            # leaving during the cut put their presence events in the same DLQ.
            config = ChatConfig.from_mapping({})  # the sandbox's: cdk.json's defaults
            dry = await asyncio.to_thread(
                replay_queue, sqs, dlq, clients, config=config, dry_run=True
            )
            would = dry.as_dict()["outcomes"]
            assert set(would) == {"would-replay"} and set(would["would-replay"]) == {"event-bus"}
            assert would["would-replay"]["event-bus"] >= 3
            report = await asyncio.to_thread(replay_queue, sqs, dlq, clients, config=config)
            assert report.as_dict()["outcomes"] == {"replayed": would["would-replay"]}
            await wait_until(
                lambda: len(receiver.messages(room)) >= 3, TIMEOUT, "the replayed messages"
            )
            assert sorted(await bodies(receiver, room)) == [0, 1, 2]
            # The sender's region had them all along; the replay reached eu-west-1 only.
            assert sorted(await bodies(sender, room)) == [0, 1, 2]
        finally:
            for client in (sender, receiver):
                await client.close()

    asyncio.run(scenario())


async def _lines(lines: Lines) -> AsyncIterator[str]:
    async for line in lines.stream():
        yield line


def test_the_cli_client_fails_over_when_its_region_goes_down(sandbox: SandboxProcess) -> None:
    """eu-west-1 goes down under the CLI: it reconnects to the next region in its list,
    resumes, and prints what was sent meanwhile once; then it carries on there."""
    room = room_name()
    home, fallback = "eu-west-1", "us-east-1"

    async def scenario() -> str:
        lines = Lines()
        out = io.StringIO()
        urls = [
            connect_url(sandbox.url(region), "roamer", "Roamer", secret=sandbox.signing_secret)
            for region in (home, fallback)
        ]
        options = ClientOptions(backoff=Backoff(attempts=10, base=0.2, cap=1.0))
        cli = asyncio.create_task(run_client(urls, room, lines.stream(), out, options))
        other = await Client.open(sandbox.url("ap-northeast-1"), "stayer")
        try:
            await wait_until(lambda: f"* joined #{room}" in out.getvalue(), TIMEOUT, "joined")
            await other.join(room)
            # The CLI has seen no message yet: it resumes from when it joined.
            await control(sandbox, "POST", f"/control/regions/{home}/down")
            for number in range(3):
                await other.request({"action": "send", "room": room, "body": f"missed {number}"})
            await wait_until(
                lambda: "* reconnected to " + sandbox.url(fallback) in out.getvalue(),
                TIMEOUT,
                "the failover",
            )
            await wait_until(lambda: "missed 2" in out.getvalue(), TIMEOUT, "the catch-up")
            lines.put("after the failover")
            await other.wait_for(lambda f: f.get("body") == "after the failover", TIMEOUT)
        finally:
            await control(sandbox, "POST", f"/control/regions/{home}/up")
            lines.end()
            await asyncio.wait_for(cli, TIMEOUT)
            await other.close()
        return out.getvalue()

    output = asyncio.run(scenario())
    for number in range(3):
        assert output.count(f"missed {number}") == 1, output


def test_soak_small(sandbox: SandboxProcess) -> None:
    """3 regions x 4 clients, a region down and back, a link cut and healed, while all send."""
    result = asyncio.run(
        run_soak(sandbox, REGIONS, clients_per_region=4, messages_per_client=3, rate=20.0,
                 room_size=12, settle_s=TIMEOUT)
    )  # fmt: skip
    assert result["messages"] >= 30, result
    assert result["lost"] == 0, result
    assert result["duplicated"] == 0, result
    assert result["order_violations"] == 0, result
    assert result["failovers"] >= 4, result  # every client of the region that went down
