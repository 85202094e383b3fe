"""A sender's order, pipelined: numbered sends get ids in send order, in every region.

Before numbered sends, a burst sent without waiting for acks was observed in the sandbox as
``a1 a3 a4 a0 a2 a8 a7 a6 a9 a5`` (the id went to whichever invocation ran first).
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import aiohttp

from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.options import ClientOptions

from .harness import REGIONS, Client, Lines, SandboxProcess, room_name, wait_until
from .test_continuity import catch_up, close_all, open_joined, receive_all, run

BURST = 12


async def pipelined_burst(client: Client, room: str, bodies: list[str]) -> list[dict[str, Any]]:
    """Send ``bodies`` as numbered sends all at once (no ack awaited in between), then do what
    a client does with ``sequence_gap``/``internal``: send those seqs again, as they were. The
    final reply of each seq, in seq order."""
    replies: dict[int, dict[str, Any]] = {}
    todo = list(range(1, len(bodies) + 1))
    for attempt in range(6):
        for seq in todo:
            frame = {"action": "send", "room": room, "body": bodies[seq - 1], "seq": seq}
            await client.send_raw(json.dumps({**frame, "ref": f"b{seq}.{attempt}"}))
        for seq in todo:
            ref = f"b{seq}.{attempt}"
            replies[seq] = await client.wait_for(lambda f, r=ref: f.get("ref") == r, 60)
        todo = [n for n in todo if replies[n].get("code") in ("sequence_gap", "internal")]
        if not todo:
            break
    return [replies[n] for n in range(1, len(bodies) + 1)]


def bodies_in_id_order(client: Client, room: str) -> list[Any]:
    return [f["body"] for f in sorted(client.messages(room), key=lambda f: f["id"])]


def test_a_pipelined_burst_arrives_in_send_order_in_every_region(
    sandbox: SandboxProcess,
) -> None:
    room = room_name()
    expected = [f"a{n}" for n in range(BURST)]

    async def scenario() -> None:
        sender = await open_joined(sandbox, REGIONS[0], "burst", room)
        listeners = [await open_joined(sandbox, r, f"order-{r}", room) for r in REGIONS]
        try:
            acks = await pipelined_burst(sender, room, expected)
            assert [a["type"] for a in acks] == ["ack"] * BURST, acks
            assert [a["seq"] for a in acks] == list(range(1, BURST + 1))
            ids = [a["id"] for a in acks]
            assert ids == sorted(ids), "ids are not in send order"
            for listener in listeners:
                await receive_all(listener, room, set(ids))
                assert bodies_in_id_order(listener, room) == expected, listener.user
                _, history = await catch_up(listener, room, "0" * 26)
                assert [m["body"] for m in history] == expected, listener.user
        finally:
            await close_all(sender, *listeners)

    run(scenario())


def test_numbered_http_posts_keep_their_order_and_a_retry_is_not_a_second_message(
    sandbox: SandboxProcess,
) -> None:
    room = room_name()
    expected = [f"h{n}" for n in range(BURST)]

    async def scenario() -> None:
        listener = await open_joined(sandbox, REGIONS[1], "http-order", room)
        url = f"{sandbox.url(REGIONS[0], 'http').rstrip('/')}/rooms/{room}/messages"
        try:
            async with aiohttp.ClientSession(headers=sandbox.bearer("poster")) as http:

                async def post(n: int) -> dict[str, Any]:
                    body = {"body": expected[n], "clientId": "e2e", "seq": n + 1}
                    async with http.post(url, json=body) as answer:
                        assert answer.status == 202, await answer.text()
                        return dict(await answer.json())

                # Concurrent (the order the server sees them in is anyone's), plus one retry.
                answers = await asyncio.gather(*(post(n) for n in [*range(BURST), 3]))
            by_seq = {a["seq"]: a["id"] for a in answers}
            assert answers[-1] == answers[3]  # the retried post: the same id
            ids = [by_seq[n] for n in range(1, BURST + 1)]
            assert ids == sorted(ids)
            await receive_all(listener, room, set(ids))
            await asyncio.sleep(1.0)  # a second message for the retry would show up by now
            assert bodies_in_id_order(listener, room) == expected
        finally:
            await close_all(listener)

    run(scenario())


def test_the_cli_pipelines_a_paste_and_receivers_print_it_in_order(
    sandbox: SandboxProcess,
) -> None:
    """The CLI sends a pasted burst without waiting for acks; another CLI in another region
    prints it in the order it was typed."""
    room = room_name()
    expected = [f"line {n}" for n in range(BURST)]

    async def scenario() -> str:
        receiver_lines, sender_lines = Lines(), Lines()
        receiver_out, sender_out = io.StringIO(), io.StringIO()
        secret = sandbox.signing_secret
        receiver = asyncio.create_task(
            run_client(
                connect_url(sandbox.url(REGIONS[2]), "reader", "Reader", secret=secret),
                room,
                receiver_lines.stream(),
                receiver_out,
                ClientOptions(reorder_seconds=0.25),
            )
        )
        sender = asyncio.create_task(
            run_client(
                connect_url(sandbox.url(REGIONS[0]), "paster", "Paster", secret=secret),
                room,
                sender_lines.stream(),
                sender_out,
                ClientOptions(drain_seconds=60),  # the sandbox is slow: wait for every ack
            )
        )
        try:
            await wait_until(lambda: f"* joined #{room}" in receiver_out.getvalue(), 30, "join")
            await wait_until(lambda: f"* joined #{room}" in sender_out.getvalue(), 30, "join")
            for line in expected:
                sender_lines.put(line)
            sender_lines.end()
            assert await asyncio.wait_for(sender, 60) == 0
            try:
                await wait_until(
                    lambda: all(line in receiver_out.getvalue() for line in expected), 60, "all"
                )
            except AssertionError as error:
                shown = f"sender:\n{sender_out.getvalue()}\nreceiver:\n{receiver_out.getvalue()}"
                raise AssertionError(f"{error}\n{shown}") from None
            receiver_lines.end()
            assert await asyncio.wait_for(receiver, 60) == 0
        finally:
            for task in (sender, receiver):
                task.cancel()
        assert "!" not in sender_out.getvalue(), sender_out.getvalue()
        return receiver_out.getvalue()

    output = run(scenario())
    printed = [
        line.split(": ", 1)[1]
        for line in output.splitlines()
        if line.startswith("[") and "(paster)@" in line
    ]
    assert printed == expected, output
