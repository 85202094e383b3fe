"""A tiny multi-region chat server for the smoke test's tests (127.0.0.1, its own thread).

Just enough of docs/protocol.md for ``tools.smoke``: ``join`` -> ``joined``,
``send`` -> ``ack`` plus a ``message`` frame to every member of the room in
every region, ``upload`` -> ``upload_slot`` and ``download`` -> ``download_url``
with the buckets of tests/smoke/storage.py. Tokens are checked with the shared
secret (401 otherwise). The faults a broken deployment shows are switches: a
region that never receives (``lose_in``), one that receives twice
(``duplicate_in``), one that refuses sends (``refuse_send_in``), one that
refuses downloads (``refuse_download_in``), one whose replica has other bytes
(``corrupt_replica_in``), one that never gets a replica (``never_replicate_to``),
slots that storage refuses (``slot_size_offset``). A region's replica arrives on
its ``replicate_after``-th ``download`` of the key (the earlier ones are answered
with the origin's copy, as while S3 Replication is behind).
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

from .storage import Buckets


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
    refuse_download_in: set[str] = field(default_factory=set)
    corrupt_replica_in: set[str] = field(default_factory=set)
    never_replicate_to: set[str] = field(default_factory=set)
    replicate_after: int = 2
    slot_size_offset: int = 0  # a slot for another size than asked: storage refuses the POST
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions = tuple(self.regions)
        self._members: dict[str, list[tuple[str, ServerConnection]]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._servers: list[Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.buckets = Buckets()
        self._downloads: dict[tuple[str, str], int] = {}  # (region, key) -> downloads asked

    def __enter__(self) -> ChatServers:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.buckets.start(), self._loop).result(10)
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
            await self.buckets.stop()

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
            elif frame.get("action") == "upload":
                await connection.send(json.dumps(self._slot(region, frame)))
            elif frame.get("action") == "download":
                await connection.send(json.dumps(self._download(region, frame)))
            elif frame.get("action") == "send" and not self._reference_stored(region, frame):
                error = {"type": "error", "code": "bad_request", "message": "no such object"}
                await connection.send(json.dumps({**error, "ref": ref}))
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

    def _slot(self, region: str, frame: dict[str, Any]) -> dict[str, Any]:
        key = f"rooms/{frame['room']}/{region}/smoke/{next(self._ids)}"
        url = self.buckets.slot(region, key, int(frame["size"]) + self.slot_size_offset)
        fields = {"key": key, "Content-Type": frame["contentType"]}
        return {"type": "upload_slot", "ref": frame.get("ref"), "key": key, "url": url,
                "fields": fields}  # fmt: skip

    def downloads_of(self, region: str, key: str) -> int:
        """How many times ``region`` was asked for ``key``'s download URL."""
        return self._downloads.get((region, key), 0)

    def _reference_stored(self, region: str, frame: dict[str, Any]) -> bool:
        body = frame.get("body")
        reference = body.get("attachment") if isinstance(body, dict) else None
        return reference is None or self.buckets.has(region, str(reference.get("key")))

    def _download(self, region: str, frame: dict[str, Any]) -> dict[str, Any]:
        ref, key = frame.get("ref"), str(frame.get("key"))
        if region in self.refuse_download_in:
            return {"type": "error", "code": "forbidden", "message": "not a member", "ref": ref}
        origin = key.split("/")[2]
        asked = self._downloads[region, key] = self._downloads.get((region, key), 0) + 1
        if (
            not self.buckets.has(region, key)
            and asked >= self.replicate_after
            and region not in self.never_replicate_to
        ):
            corrupt = region in self.corrupt_replica_in
            self.buckets.replicate(key, origin, region, corrupt=corrupt)
        serving = region if self.buckets.has(region, key) else origin
        return {"type": "download_url", "ref": ref, "key": key, "region": serving,
                "url": self.buckets.download_url(serving, key)}  # fmt: skip
