"""A stand-in for API Gateway's ``@connections`` endpoint, in its own process (fan-out bench).

Every ``POST .../@connections/<id>`` is answered 200 after ``--latency-ms`` (API Gateway's own
latency), and counted, so the bench can check that each member got exactly one post. It does
no SigV4 check and keeps no connections: it exists so that the delivering process pays the
whole client side (signing, HTTP, outcome handling) while the server's CPU is spent elsewhere.

``python -m bench.mgmt_server --latency-ms 20`` prints ``port <n>`` on stdout once it listens
(on 127.0.0.1) and serves until stdin closes or it gets SIGTERM/SIGINT.
``GET /_stats`` answers ``{"posts", "distinct", "duplicates"}``; ``POST /_reset`` zeroes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import Counter

from aiohttp import web

MARKER = "/@connections/"


class Stats:
    """Posts per connection id (a duplicate is a second post to one id)."""

    def __init__(self) -> None:
        self.by_id: Counter[str] = Counter()

    def as_dict(self) -> dict[str, int]:
        posts = sum(self.by_id.values())
        return {"posts": posts, "distinct": len(self.by_id), "duplicates": posts - len(self.by_id)}


def make_app(latency_ms: float) -> web.Application:
    stats = Stats()
    delay = max(0.0, latency_ms) / 1000.0

    async def connections(request: web.Request) -> web.Response:
        _, marker, connection_id = request.path.partition(MARKER)
        if not marker or request.method != "POST":
            return web.Response(status=403)
        await request.read()
        if delay:
            await asyncio.sleep(delay)
        stats.by_id[connection_id] += 1
        return web.Response(status=200)

    async def get_stats(_: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    async def reset(_: web.Request) -> web.Response:
        stats.by_id.clear()
        return web.json_response(stats.as_dict())

    app = web.Application()
    app.router.add_get("/_stats", get_stats)
    app.router.add_post("/_reset", reset)
    app.router.add_route("*", "/{tail:.*}", connections)
    return app


async def serve(latency_ms: float, port: int) -> None:
    runner = web.AppRunner(make_app(latency_ms), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    (port,) = {address[1] for address in runner.addresses}
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # stdin closing (the bench exited or crashed) also stops the server: no orphan process.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mgmt_server")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.latency_ms, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
