"""moto's WSGI app behind an aiohttp server, in moto's process (``sandbox.aws_local``).

Why not werkzeug's development server, as ``moto_server`` does: it parses every request in
Python, starts a thread per connection, and under the sandbox's load (a few hundred requests a
second from ~20 processes) its threads spend the interpreter lock on each other rather than on
DynamoDB (docs/sandbox.md, "Capacity"). aiohttp parses HTTP in C (llhttp), keeps connections
alive, and calls the app on its event loop, one request after another: moto's DynamoDB, Secrets
Manager and SSM answers take well under a millisecond to a few, and nothing else in this process
needs the interpreter meanwhile. Requests that may wait inside moto (SQS ``ReceiveMessage``
long-polls by sleeping) run on a small thread pool instead, so they never stall the loop.

The WSGI app is unchanged (moto's ``DomainDispatcherApplication``, wrapped by
``sandbox.calls.CountingApp``): moto stays the implementation of every service.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from sandbox.calls import service_of

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

# Services whose moto answers never wait: called on the event loop. Anything else (SQS's long
# polls above all) runs on the pool.
INLINE_SERVICES = frozenset({"dynamodb", "secretsmanager", "ssm"})
POOL_THREADS = 16
HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


class MotoFront:
    def __init__(self, app: WsgiApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="moto")

    def _environ(self, request: web.Request, body: bytes) -> dict[str, Any]:
        path, _, query = request.raw_path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": request.raw_path,
            "SERVER_NAME": self.host,
            "SERVER_PORT": str(self.port),
            "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = value
        return environ

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        """moto's answer; a ``HEAD`` keeps its ``Content-Length`` (S3's HeadObject reports the
        object's size there, with no body)."""
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], _: Any = None) -> Any:
            started["status"], started["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, start_response)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        dropped = (
            HOP_BY_HOP - {"content-length"} if environ["REQUEST_METHOD"] == "HEAD" else HOP_BY_HOP
        )
        headers = [(k, v) for k, v in started["headers"] if k.lower() not in dropped]
        return int(str(started["status"]).split(" ", 1)[0]), headers, body

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        environ = self._environ(request, body)
        if service_of(request.headers.get("Authorization", "")) in INLINE_SERVICES:
            status, headers, payload = self._call(environ)
        else:
            loop = asyncio.get_running_loop()
            status, headers, payload = await loop.run_in_executor(self._pool, self._call, environ)
        return web.Response(status=status, body=payload, headers=CIMultiDict(headers))

    async def serve(self, ready: Callable[[], None]) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port, reuse_address=True).start()
        ready()
        await asyncio.Event().wait()  # until the process exits
