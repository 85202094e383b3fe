"""A local ``@connections`` endpoint for the fan-out tests (127.0.0.1, its own thread).

It records every request and answers per connection id from a script
(:meth:`ConnectionsServer.script`), or the next requests whatever their id
(:meth:`ConnectionsServer.queue`, like botocore's Stubber). Unscripted posts
get the default answer (200). With ``forward_to_moto`` a 2xx POST is also
handed to moto's in-process ``apigatewaymanagementapi`` backend of the region
named in the request's SigV4 credential scope, so tests that read what moto
recorded (``frames_in``) keep working with the HTTP fan-out engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiohttp import web

ACCOUNT = "123456789012"
MARKER = "/@connections/"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/execute-api/aws4_request")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    error_type: str | None = None
    delay_s: float = 0.0
    body: str | None = None


OK = Answer()
GONE = Answer(410, "GoneException")
THROTTLED = Answer(429, "LimitExceededException")
FORBIDDEN = Answer(403, "ForbiddenException")
SERVER_ERROR = Answer(500, "InternalServerErrorException")


@dataclass
class Recorded:
    method: str
    path: str
    connection_id: str
    headers: dict[str, str]
    body: bytes
    region: str | None
    status: int = 0


@dataclass
class _Script:
    answers: list[Answer]
    then: Answer | None = None


@dataclass
class ConnectionsServer:
    forward_to_moto: bool = False
    latency_s: float = 0.0
    default: Answer = OK
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, _Script] = {}
        self._queue: list[Answer] = []
        self._ready = threading.Event()
        self._gate = 0
        self._arrived = 0
        self._open: asyncio.Event | None = None
        self.max_in_flight = 0
        self._in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- control ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, connection_id: str, *answers: Answer, then: Answer | None = None) -> None:
        """Answer ``connection_id``'s next posts with ``answers``, then with ``then``."""
        with self._lock:
            self._scripts[connection_id] = _Script(list(answers), then)

    def queue(self, *answers: Answer) -> None:
        """Answer the next requests (any connection) with these, in order."""
        with self._lock:
            self._queue.extend(answers)

    def hold_until(self, in_flight: int) -> None:
        """Answer nothing until ``in_flight`` requests have arrived (proves concurrency;
        a generous timeout releases them anyway so a broken client fails, not hangs)."""
        with self._lock:
            self._gate, self._arrived = in_flight, 0

    def reset(self) -> None:
        with self._lock:
            self._gate = self._arrived = self.max_in_flight = self._in_flight = 0
            self._open = None
            self._scripts.clear()
            self._queue.clear()
            self.requests.clear()
            self.default = OK
            self.latency_s = 0.0

    def posts(self, connection_id: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "POST" and connection_id in (None, r.connection_id)
            ]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def pending(self) -> list[Answer]:
        with self._lock:
            return list(self._queue)

    # --- serving ------------------------------------------------------------------

    def _answer_for(self, connection_id: str) -> Answer:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
            script = self._scripts.get(connection_id)
            if script is not None:
                if script.answers:
                    return script.answers.pop(0)
                if script.then is not None:
                    return script.then
            return self.default

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path.split("?", 1)[0]
        _, marker, encoded = raw.partition(MARKER)
        body = await request.read()
        scope = _SCOPE.search(request.headers.get("Authorization", ""))
        record = Recorded(
            method=request.method,
            path=raw,
            connection_id=unquote(encoded) if marker else "",
            headers=dict(request.headers),
            body=body,
            region=scope.group(1) if scope else None,
        )
        with self._lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._arrived += 1
            gate, arrived = self._gate, self._arrived
        try:
            if gate:
                await self._wait_gate(gate, arrived)
            return await self._respond(record, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _wait_gate(self, gate: int, arrived: int) -> None:
        if self._open is None:
            self._open = asyncio.Event()
        if arrived >= gate:
            self._open.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._open.wait(), 10)

    async def _respond(self, record: Recorded, body: bytes) -> web.StreamResponse:
        answer = self._answer_for(record.connection_id)
        record.status = answer.status
        delay = answer.delay_s or self.latency_s
        if delay:
            await asyncio.sleep(delay)
        if 200 <= answer.status < 300:
            if self.forward_to_moto and record.method == "POST" and record.region:
                _moto_post(record.region, record.connection_id, body)
            return web.Response(status=answer.status)
        headers = {"x-amzn-ErrorType": answer.error_type} if answer.error_type else {}
        text = answer.body if answer.body is not None else json.dumps({"message": "error"})
        return web.Response(
            status=answer.status, text=text, content_type="application/json", headers=headers
        )

    def start(self) -> ConnectionsServer:
        thread = threading.Thread(target=self._serve, name="connections-server", daemon=True)
        thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local @connections server did not start")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._runner = runner
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def _moto_post(region: str, connection_id: str, data: bytes) -> None:
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    apigatewaymanagementapi_backends[ACCOUNT][region].post_to_connection(data, connection_id)


def ids_of(records: Iterable[Recorded]) -> list[str]:
    return [r.connection_id for r in records]
