"""A tiny multi-region chat server for the smoke test's tests (127.0.0.1, its own thread).

Just enough of docs/protocol.md for ``tools.smoke``: ``join`` -> ``joined``,
``send`` -> ``ack`` plus a ``message`` frame to every member of the room in
every region. Tokens are checked with the shared secret (401 otherwise). The
faults a broken deployment shows are switches: a region that never receives
(``lose_in``), one that receives twice (``duplicate_in``), one that refuses
sends (``refuse_send_in``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


def token_valid(token: str, secret: str) -> bool:
    try:
        header, payload, signature = token.split(".")
    except ValueError:
        return False
    expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    return hmac.compare_digest(expected, given)


@dataclass
class ChatServers:
    regions: Iterable[str]
    secret: str
    lose_in: set[str] = field(default_factory=set)
    duplicate_in: set[str] = field(default_factory=set)
    refuse_send_in: set[str] = field(default_factory=set)
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions = tuple(self.regions)
        self._members: dict[str, list[tuple[str, ServerConnection]]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._servers: list[Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ChatServers:
        self._thread.start()
        for region in self.regions:
            server = asyncio.run_coroutine_threadsafe(self._start(region), self._loop).result(10)
            self._servers.append(server)
            port = server.sockets[0].getsockname()[1]
            self.urls[region] = f"ws://127.0.0.1:{port}/prod"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
                await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self, region: str) -> Server:
        def authorize(connection: ServerConnection, request: Request) -> Response | None:
            token = (parse_qs(urlsplit(request.path).query).get("token") or [""])[0]
            if token_valid(token, self.secret):
                return None
            return Response(401, "Unauthorized", Headers(), b"")

        async def handle(connection: ServerConnection) -> None:
            await self._session(region, connection)

        return await serve(handle, "127.0.0.1", 0, process_request=authorize)

    async def _session(self, region: str, connection: ServerConnection) -> None:
        async for raw in connection:
            frame: dict[str, Any] = json.loads(raw)
            ref = frame.get("ref")
            room = frame.get("room")
            if frame.get("action") == "join":
                self._members.setdefault(str(room), []).append((region, connection))
                await connection.send(json.dumps({"type": "joined", "room": room, "ref": ref}))
            elif frame.get("action") == "send" and region in self.refuse_send_in:
                error = {"type": "error", "code": "internal", "message": "no", "ref": ref}
                await connection.send(json.dumps(error))
            elif frame.get("action") == "send":
                message_id = f"m{next(self._ids)}"
                await connection.send(
                    json.dumps({"type": "ack", "room": room, "id": message_id, "ref": ref})
                )
                message = {"type": "message", "room": room, "id": message_id, "body": frame["body"]}
                for member_region, member in list(self._members.get(str(room), [])):
                    if member_region in self.lose_in:
                        continue
                    copies = 2 if member_region in self.duplicate_in else 1
                    for _ in range(copies):
                        await member.send(json.dumps(message))
