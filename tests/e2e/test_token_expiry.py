"""A listen-only connection honours its token's ``exp``: it never sends a frame, so
ClientMessageHandler never sees it; the next message to its room closes it instead
(``token_expired``, then DeleteConnection), while the room's other members get the message."""

from __future__ import annotations

import asyncio
import time

from multiregion_chat.clients.tokens import mint_token

from .harness import Client, SandboxProcess, room_name, wait_until

LEEWAY_SECONDS = 30  # runtime.protocol.claims.LEEWAY_SECONDS: the server's clock leeway on exp
ACCEPTED_FOR = 30  # seconds the listener's token is still accepted for (connect, join): generous


def test_a_listen_only_connection_is_closed_at_the_next_message_after_its_token_expired(
    sandbox: SandboxProcess,
) -> None:
    async def scenario() -> None:
        url, room = sandbox.url("us-east-1"), room_name()
        now = int(time.time())
        # exp in the past, yet within the leeway for ACCEPTED_FOR more seconds.
        expires_at = now - LEEWAY_SECONDS + ACCEPTED_FOR
        token = mint_token(
            sandbox.signing_secret,
            "listener",
            ttl_seconds=expires_at - now,
            now=now,
        )
        listener = await Client.open(url, "listener", token=token)
        sender = await Client.open(url, "sender")
        try:
            await listener.join(room)
            await sender.join(room)
            # The wall clock (not the server) must pass exp + leeway; bounded.
            await wait_until(
                lambda: time.time() > expires_at + LEEWAY_SECONDS + 1,
                timeout=ACCEPTED_FOR + 60,
                what="the listener's token to expire",
            )
            ack = await sender.request({"action": "send", "room": room, "body": "after exp"})
            assert ack["type"] == "ack", ack
            await sender.wait_for(
                lambda f: f.get("type") == "message" and f.get("body") == "after exp", 30
            )
            closing = await listener.wait_for(lambda f: f.get("type") == "error", 30)
            assert closing["code"] == "token_expired", closing
            await asyncio.wait_for(listener.ws.wait_closed(), timeout=30)
            assert listener.messages(room) == []
        finally:
            await listener.close()
            await sender.close()

    asyncio.run(scenario())
