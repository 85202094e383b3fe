"""The server API end to end: a backend publishes as a system sender and disconnects a user.

The sandbox serves the IAM-authorized routes from the template like AWS would
for a SigV4-signed request (it checks service and region, not the key: there
is no IAM locally); ServerApi, the chat.disconnect rule and the forwarding
rules run as deployed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.credentials import Credentials

from multiregion_chat.clients.server_api_client import ServerApi, ServerApiError

from .harness import REGIONS, Client, SandboxProcess, room_name

BACKEND = Credentials("AKIDBACKEND", "not-checked-locally")


def server_api(sandbox: SandboxProcess, region: str) -> ServerApi:
    return ServerApi(sandbox.url(region, "http"), region=region, credentials=BACKEND)


def test_a_backend_publishes_into_a_room_in_every_region(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> dict[str, dict[str, Any]]:
        clients = {}
        for index, region in enumerate(REGIONS):
            clients[region] = await Client.open(sandbox.url(region), f"member{index}")
            await clients[region].join(room)
        api = server_api(sandbox, REGIONS[1])
        message_id = await asyncio.to_thread(
            api.publish, room, {"text": "maintenance at 22:00"}, sender="Announcements"
        )
        try:
            return {
                region: await client.wait_for(
                    lambda f: f.get("type") == "message" and f.get("id") == message_id
                )
                for region, client in clients.items()
            }
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()))

    received = asyncio.run(scenario())
    for frame in received.values():
        assert frame["body"] == {"text": "maintenance at 22:00"}
        assert frame["sender"] == {
            "userId": "system:Announcements",
            "name": "Announcements",
            "region": REGIONS[1],
        }


def test_unsigned_or_misdirected_calls_are_refused(sandbox: SandboxProcess) -> None:
    wrong_region = ServerApi(
        sandbox.url(REGIONS[0], "http"), region=REGIONS[1], credentials=BACKEND
    )
    with pytest.raises(ServerApiError) as refused:
        wrong_region.publish(room_name(), 1, sender="Bot")
    assert refused.value.status == 403
    with pytest.raises(ServerApiError) as bad:
        server_api(sandbox, REGIONS[0]).publish(room_name(), 1, sender="not a name")
    assert (bad.value.status, bad.value.code) == (400, "bad_request")


def test_disconnect_closes_the_user_everywhere_and_no_one_else(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> tuple[list[bool], dict[str, Any]]:
        mallory = [await Client.open(sandbox.url(region), "mallory-e2e") for region in REGIONS[:2]]
        bob = await Client.open(sandbox.url(REGIONS[2]), "bob-e2e")
        await bob.join(room)
        for client in mallory:
            await client.join(room)
        await asyncio.to_thread(server_api(sandbox, REGIONS[2]).disconnect, "mallory-e2e")
        for client in mallory:  # closed by the sandbox's API Gateway, in both regions
            await asyncio.wait_for(client.ws.wait_closed(), 20)
        still_up = await bob.request({"action": "ping"})
        closed = [client.ws.close_code is not None for client in mallory]
        await bob.close()
        return closed, still_up

    closed, pong = asyncio.run(scenario())
    assert closed == [True, True]
    assert pong["type"] == "pong"
