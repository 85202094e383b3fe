"""A room above the shard threshold, through the synthesized templates in the sandbox.

The room has a few real WebSocket members and enough virtual members (table
items whose posts the sandbox counts, see docs/sandbox.md) to cross
``fanoutShardThreshold``: the message goes through the fan-out queue and the
FanoutWorkers of the template, and every member gets it exactly once.
"""

from __future__ import annotations

import asyncio

from multiregion_chat.infra.config import ChatConfig
from sandbox import virtual

from .harness import REGIONS, Client, SandboxProcess, room_name, wait_until

MEMBERS = ChatConfig().fanout_shard_threshold + 150  # the default app's threshold, crossed


def test_a_big_room_is_sharded_and_every_member_gets_the_message_once(
    sandbox: SandboxProcess,
) -> None:
    asyncio.run(_big_room(sandbox))


async def _big_room(sandbox: SandboxProcess) -> None:
    room = room_name()
    region, other = REGIONS[0], REGIONS[1]
    management = sandbox.url(region, "management")
    ids = virtual.virtual_ids(MEMBERS, prefix=f"{room}-")
    virtual.register(management, ids)
    table = virtual.function_variable(sandbox.cdk_out, region, "CONNECTIONS_TABLE")
    local = [await Client.open(sandbox.url(region), f"big-local-{n}") for n in range(3)]
    remote = await Client.open(sandbox.url(other), "big-remote")
    for client in (*local, remote):
        await client.join(room)
    # Every other join's presence frame has been pushed in this region: nothing
    # else is on its way to the room when the virtual members join it.
    for user in ("big-local-1", "big-local-2", "big-remote"):
        await local[0].wait_for(
            lambda f, user=user: (
                f.get("type") == "member" and f.get("member", {}).get("userId") == user
            )
        )
    # Memberships only, not counted in the room's memberCount: the room stays
    # below presenceLiveMaxMembers, so the message is the only frame they get.
    await asyncio.to_thread(
        virtual.seed_room,
        table,
        room,
        ids,
        endpoint_url=sandbox.endpoints["dynamodb"],
        region=region,
        with_meta=False,
        with_count=False,
    )
    before = virtual.summary(management)

    ack = await local[0].request({"action": "send", "room": room, "body": "to everyone"})
    assert ack["type"] == "ack", ack

    def posted() -> dict[str, object] | None:
        found = virtual.summary(management)
        return found if found["posts"] - before["posts"] >= MEMBERS else None

    after = await wait_until(posted, timeout=120, what=f"{MEMBERS} virtual posts")
    for client in (*local, remote):
        await client.wait_for(lambda f: f.get("type") == "message" and f.get("id") == ack["id"])
    # Every virtual member was posted exactly once; no real member got it twice.
    assert after["posts"] - before["posts"] == MEMBERS
    assert after["idsPosted"] - before["idsPosted"] == MEMBERS
    assert after["duplicatePosts"] == before["duplicatePosts"]
    for client in (*local, remote):
        assert [m["id"] for m in client.messages(room)] == [ack["id"]], client.user
    for client in (*local, remote):
        await client.close()
