"""The ``@connections`` management API of one region's WebSocket API.

``POST|GET|DELETE [/<stage>]/@connections/<connectionId>`` with API Gateway's answers: 200 (POST),
the connection's info (GET), 204 (DELETE); 410 ``GoneException`` for an unknown or closed
connection, 413 ``PayloadTooLargeException`` over 128 KiB, 403 for another stage. boto3's
``apigatewaymanagementapi`` client with ``endpoint_url=<callback URL>`` (which ends in the
stage) sends exactly these paths. ``latency_ms`` delays every call (for benchmarks).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from urllib.parse import unquote

from aiohttp import web

from sandbox.websocket_api import MAX_MESSAGE_BYTES, WebSocketApi, iso_ms

MARKER = "/@connections/"


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"message": message}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": kind},
    )


class ManagementApi:
    def __init__(self, api: WebSocketApi, latency_ms: float = 0.0) -> None:
        self.api = api
        self.latency = max(0.0, latency_ms) / 1000.0
        self.counters: Counter[str] = Counter()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * MAX_MESSAGE_BYTES)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.latency:
            await asyncio.sleep(self.latency)
        raw = request.raw_path.split("?", 1)[0]
        prefix, marker, encoded_id = raw.partition(MARKER)
        if not marker or prefix.rstrip("/") not in ("", f"/{self.api.api.stage}"):
            self.counters["forbidden"] += 1
            return _error(403, "ForbiddenException", "Forbidden")
        connection_id = unquote(encoded_id)
        method = request.method
        if method == "POST":
            data = await request.read()
            if len(data) > MAX_MESSAGE_BYTES:
                self.counters["post_too_large"] += 1
                return _error(413, "PayloadTooLargeException", "Request entity too large")
            if await self.api.post(connection_id, data):
                self.counters["post_ok"] += 1
                return web.Response(status=200)
            self.counters["post_gone"] += 1
            return _error(410, "GoneException", f"Connection {connection_id} is gone")
        if method == "GET":
            connection = self.api.info(connection_id)
            if connection is None:
                self.counters["get_gone"] += 1
                return _error(410, "GoneException", f"Connection {connection_id} is gone")
            self.counters["get_ok"] += 1
            return web.json_response(
                {
                    "connectedAt": iso_ms(connection.connected_at),
                    "identity": {
                        "sourceIp": connection.source_ip,
                        "userAgent": connection.user_agent,
                    },
                    "lastActiveAt": iso_ms(connection.last_active_at),
                }
            )
        if method == "DELETE":
            if await self.api.delete(connection_id):
                self.counters["delete_ok"] += 1
                return web.Response(status=204)
            self.counters["delete_gone"] += 1
            return _error(410, "GoneException", f"Connection {connection_id} is gone")
        return _error(405, "MethodNotAllowedException", f"{method} is not allowed")
