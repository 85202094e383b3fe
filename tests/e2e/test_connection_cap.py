"""One user's connections per region are capped at the handshake (issue 18, item 4).

Through the synthesized templates in the sandbox: the default app's ``maxConnectionsPerUser``
connections open, the next handshake is refused with HTTP 429 (no connection), and a closed
connection frees its place. Another region counts on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest
from websockets.exceptions import InvalidStatus

from multiregion_chat.infra.config import ChatConfig

from .harness import REGIONS, Client, SandboxProcess

CAP = ChatConfig().max_connections_per_user


def test_the_connection_over_the_cap_is_refused_with_429(sandbox: SandboxProcess) -> None:
    asyncio.run(_cap(sandbox))


async def _cap(sandbox: SandboxProcess) -> None:
    user = f"cap-{uuid.uuid4().hex[:8]}"
    url = sandbox.url(REGIONS[0])
    clients = [await Client.open(url, user) for _ in range(CAP)]
    try:
        with pytest.raises(InvalidStatus) as refused:
            await Client.open(url, user)
        assert refused.value.response.status_code == 429
        # every admitted connection still works
        assert (await clients[-1].request({"action": "ping"}))["type"] == "pong"
        # another region has its own count
        elsewhere = await Client.open(sandbox.url(REGIONS[1]), user)
        await elsewhere.close()
        # a closed connection frees its place once $disconnect has run (asynchronous)
        await clients.pop().close()

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(InvalidStatus):
                clients.append(await Client.open(url, user))
                break
            assert time.monotonic() < deadline, "the closed connection's place was not freed"
            await asyncio.sleep(0.2)
    finally:
        for client in clients:
            await client.close()
