"""Continuity across regions: resume after a drop, interleaved bursts, presence, HTTP and
WebSocket clients together, long resumes. Real WebSocket clients, 3 regions of the sandbox.
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import aiohttp

from multiregion_chat.clients.resume import resume_after
from multiregion_chat.clients.session import ChatSession

from .harness import REGIONS, Client, SandboxProcess, room_name, wait_until

SETTLE = 1.0  # how long "nothing more arrives" is watched for
US, EU, AP = REGIONS


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def open_joined(sandbox: SandboxProcess, region: str, user: str, room: str) -> Client:
    client = await Client.open(sandbox.url(region), user, user.upper())
    await client.join(room)
    return client


async def close_all(*clients: Client) -> None:
    await asyncio.gather(*(c.close() for c in clients))


async def send(client: Client, room: str, body: Any) -> str:
    for _ in range(100):  # bounded; waits out the connection's budget as a client should
        ack = await client.request({"action": "send", "room": room, "body": body})
        if ack.get("code") != "rate_limited":
            break
        await asyncio.sleep(ack["retryAfterMs"] / 1000)
    assert ack["type"] == "ack", ack
    return str(ack["id"])


async def receive_all(client: Client, room: str, ids: set[str], timeout: float = 30.0) -> None:
    await wait_until(
        lambda: ids <= {f["id"] for f in client.messages(room)},
        timeout,
        f"{client.user} received {len(ids)} messages",
    )


async def catch_up(client: Client, room: str, after: str) -> tuple[dict[str, Any], list[Any]]:
    """Join with ``after``, then page ``history`` while ``more`` (bounded): the joined reply and
    every message, in the order received."""
    joined = await client.request({"action": "join", "room": room, "after": after})
    assert joined["type"] == "joined", joined
    messages = list(joined["missed"])
    more = joined["more"]
    for _ in range(20):
        if not more:
            break
        page = await client.request(
            {"action": "history", "room": room, "after": messages[-1]["id"], "limit": 100}
        )
        assert page["type"] == "history", page
        messages += page["messages"]
        more = page["more"]
    assert not more, "history paging did not end"
    return joined, messages


def test_dropped_client_resumes_in_another_region(sandbox: SandboxProcess) -> None:
    """Close without leave; messages sent in the two other regions meanwhile; reconnect to a
    different region with ``after``: each missed message once, in id order, then live ones."""
    room = room_name()

    async def scenario() -> None:
        roamer = await open_joined(sandbox, US, "roamer", room)
        eu = await open_joined(sandbox, EU, "eu-talker", room)
        ap = await open_joined(sandbox, AP, "ap-talker", room)
        back: Client | None = None
        try:
            before = await send(eu, room, "before")
            await receive_all(roamer, room, {before})
            seen = {f["id"] for f in roamer.messages(room)}
            await roamer.close()  # no leave
            missed = []
            for n in range(3):
                missed.append(await send(eu, room, f"eu-{n}"))
                missed.append(await send(ap, room, f"ap-{n}"))
            # eu-talker got them live, so they are in eu-west-1's history.
            await receive_all(eu, room, set(missed))
            back = await Client.open(sandbox.url(EU), "roamer", "ROAMER")
            joined, got = await catch_up(back, room, resume_after(max(seen)))
            assert joined["more"] is False
            ids = [m["id"] for m in got]
            assert ids == sorted(ids) and len(ids) == len(set(ids))
            assert set(ids) <= seen | set(missed)  # the resume window may repeat what was seen
            assert [i for i in ids if i not in seen] == sorted(missed)
            assert {m["body"] for m in got if m["id"] in missed} == {
                f"{region}-{n}" for region in ("eu", "ap") for n in range(3)
            }
            live = await send(ap, room, "live")
            await receive_all(back, room, {live})
            await asyncio.sleep(SETTLE)
            assert [f["id"] for f in back.messages(room)] == [live]
        finally:
            await close_all(eu, ap, *([back] if back else []))

    run(scenario())


def test_interleaved_bursts_from_three_regions(sandbox: SandboxProcess) -> None:
    """3 senders x 20 messages at once: every client sees each once; id order is one order."""
    room = room_name()
    per_sender = 20

    async def scenario() -> None:
        senders = [await open_joined(sandbox, r, f"sender-{r}", room) for r in REGIONS]
        listeners = [await open_joined(sandbox, r, f"listener-{r}", room) for r in REGIONS]
        everyone = senders + listeners
        try:

            async def burst(client: Client, region: str) -> list[str]:
                return [
                    await send(client, room, {"from": region, "n": n}) for n in range(per_sender)
                ]

            pairs = zip(senders, REGIONS, strict=True)
            acked = await asyncio.gather(*(burst(client, region) for client, region in pairs))
            expected = {i for ids in acked for i in ids}
            assert len(expected) == per_sender * len(REGIONS)
            for client in everyone:
                await receive_all(client, room, expected)
            await asyncio.sleep(SETTLE)
            orders = []
            for client in everyone:
                ids = [f["id"] for f in client.messages(room)]
                assert len(ids) == len(set(ids)) == len(expected), f"{client.user}: duplicates"
                assert set(ids) == expected
                orders.append(sorted(ids))
            assert all(order == orders[0] for order in orders)
            # Every region's history holds the same messages in that same order...
            for client in listeners:
                _, history = await catch_up(client, room, "0" * 26)
                assert [m["id"] for m in history] == orders[0], client.user
            # ... and in it each sender's messages keep the order they were sent in.
            bodies = {m["id"]: m["body"] for m in history}
            for region in REGIONS:
                sequence = [bodies[i]["n"] for i in orders[0] if bodies[i]["from"] == region]
                assert sequence == list(range(per_sender)), region
        finally:
            await close_all(*everyone)

    run(scenario())


async def settled_presence(client: Client, room: str, expected: list[dict[str, Any]]) -> None:
    """Poll ``presence`` until it shows ``expected`` (replication is asynchronous; bounded)."""
    members: Any = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        reply = await client.request({"action": "presence", "room": room})
        members = reply["members"]
        if members == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{client.user}: presence {members} != {expected}")


def member(user: str, region: str) -> dict[str, Any]:
    return {"userId": user, "name": user.upper(), "region": region}


def test_presence_is_the_same_in_every_region(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> None:
        watchers = {r: await open_joined(sandbox, r, f"w-{r}", room) for r in REGIONS}
        others: list[Client] = []
        try:
            everyone = sorted((member(f"w-{r}", r) for r in REGIONS), key=lambda m: m["userId"])
            for client in watchers.values():
                await settled_presence(client, room, everyone)

            def mark() -> dict[str, int]:
                return {r: len(c.frames) for r, c in watchers.items()}

            async def member_frame(
                region: str, event: str, who: dict[str, Any], since: int
            ) -> None:
                await watchers[region].wait_for(
                    lambda f: (
                        f.get("type") == "member"
                        and f.get("room") == room
                        and f.get("event") == event
                        and f.get("member") == who
                    ),
                    start=since,
                )

            # Join in ap-northeast-1: the other regions are told.
            since = mark()
            dave = await open_joined(sandbox, AP, "dave", room)
            others.append(dave)
            for region in (US, EU):
                await member_frame(region, "joined", member("dave", AP), since[region])
            # Leave: "left" everywhere else.
            since = mark()
            assert (await dave.request({"action": "leave", "room": room}))["type"] == "left"
            for region in (US, EU):
                await member_frame(region, "left", member("dave", AP), since[region])
            # A disconnect without leave ($disconnect) does the same.
            since = mark()
            erin = await open_joined(sandbox, EU, "erin", room)
            for region in (US, AP):
                await member_frame(region, "joined", member("erin", EU), since[region])
            since = mark()
            await erin.close()
            for region in (US, AP):
                await member_frame(region, "left", member("erin", EU), since[region])
            # A user in two regions is listed once: with the region where one looks, else the
            # alphabetically first; leaving one region re-announces the one that remains.
            since = mark()
            frank_us = await open_joined(sandbox, US, "frank", room)
            frank_ap = await open_joined(sandbox, AP, "frank", room)
            others += [frank_us, frank_ap]
            await member_frame(EU, "joined", member("frank", AP), since[EU])
            await settled_presence(
                watchers[EU],
                room,
                sorted([*everyone, member("frank", AP)], key=lambda m: m["userId"]),
            )
            since = mark()
            assert (await frank_ap.request({"action": "leave", "room": room}))["type"] == "left"
            await member_frame(EU, "joined", member("frank", US), since[EU])
            final = sorted([*everyone, member("frank", US)], key=lambda m: m["userId"])
            for client in watchers.values():
                await settled_presence(client, room, final)
            # A client that keeps presence as a map by userId (joined.members, then member
            # frames; docs/protocol.md) ends with the same list in every region.
            for region, client in watchers.items():

                def replayed(client: Client = client) -> list[dict[str, Any]]:
                    session = ChatSession(room, io.StringIO())
                    for frame in list(client.frames):
                        if frame.get("type") in ("joined", "member"):
                            session.receive_frame(frame)
                    return session.members(room)

                await wait_until(lambda r=replayed: r() == final, 10, f"{region} member map")
        finally:
            await close_all(*watchers.values(), *others)

    run(scenario())


def test_http_and_websocket_clients_talk_across_regions(sandbox: SandboxProcess) -> None:
    """POST in A -> WebSocket in B; WebSocket send in C -> a long-poll GET in A returns it,
    well before its wait runs out."""
    room = room_name()

    async def scenario() -> None:
        ws_b = await open_joined(sandbox, EU, "ws-b", room)
        ws_c = await open_joined(sandbox, AP, "ws-c", room)
        messages_a = f"{sandbox.url(US, 'http')}/rooms/{room}/messages"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    messages_a, headers=sandbox.bearer("poster", "Poster"), json={"body": "up"}
                ) as answer:
                    assert answer.status == 202, await answer.text()
                    posted = (await answer.json())["id"]
                message = await ws_b.wait_for(lambda f: f.get("id") == posted)
                assert message["sender"] == {
                    "userId": "poster",
                    "name": "Poster",
                    "region": US,
                }
                assert message["body"] == "up"

                async def long_poll() -> tuple[dict[str, Any], float]:
                    started = time.monotonic()
                    async with http.get(
                        messages_a,
                        params={"after": posted, "wait": "15"},
                        headers=sandbox.bearer("reader"),
                    ) as got:
                        assert got.status == 200, await got.text()
                        return await got.json(), time.monotonic() - started

                poll = asyncio.create_task(long_poll())
                await asyncio.sleep(1.0)
                assert not poll.done(), "the long poll returned before anything was sent"
                sent = await send(ws_c, room, "down")
                page, seconds = await poll
                assert [m["id"] for m in page["messages"]] == [sent]
                assert page["messages"][0]["sender"]["region"] == AP
                assert seconds < 10, f"the long poll did not return early ({seconds:.1f}s)"
                # Nothing new: the long poll runs out and answers an empty page.
                async with http.get(
                    messages_a,
                    params={"after": sent, "wait": "0.5"},
                    headers=sandbox.bearer("reader"),
                ) as got:
                    assert await got.json() == {"messages": [], "more": False}
        finally:
            await close_all(ws_b, ws_c)

    run(scenario())


def test_resume_of_more_than_a_hundred_missed_messages(sandbox: SandboxProcess) -> None:
    room = room_name()
    count = 150

    async def scenario() -> None:
        reader = await open_joined(sandbox, US, "reader", room)
        writer = await open_joined(sandbox, EU, "writer", room)
        witness = await open_joined(sandbox, AP, "witness", room)
        back: Client | None = None
        try:
            first = await send(writer, room, "first")
            await receive_all(reader, room, {first})
            await reader.close()
            sent: list[str] = []
            for start in range(0, count, 10):  # 10 at a time on one connection
                sent += await asyncio.gather(
                    *(send(writer, room, n) for n in range(start, min(start + 10, count)))
                )
            await receive_all(witness, room, set(sent))  # in ap-northeast-1's history
            back = await Client.open(sandbox.url(AP), "reader")
            joined, got = await catch_up(back, room, resume_after(first))
            assert joined["more"] is True and len(joined["missed"]) == 100
            ids = [m["id"] for m in got]
            assert len(ids) == len(set(ids)), "duplicates in the resume"
            assert ids == sorted(ids)
            assert set(ids) - {first} == set(sent)
        finally:
            await close_all(writer, witness, *([back] if back else []))

    run(scenario())
