"""The sandbox's own page at ``http://127.0.0.1:<port-base>/``: the chat web page
(multiregion_chat/clients/web), ``/endpoints.json`` (the endpoints file without the signing
secret) and a few ``/_sandbox/`` helpers: stats, connections, queue depths, dropping a
connection without ``$disconnect``, and (when the app has auth) a development token for the
web page (HS256 with the signing secret, or RS256 from the local identity provider with
``--oidc``, whose discovery document and JWKS are served under ``/oidc``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from multiregion_chat.clients.tokens import minter_from_endpoints
from sandbox.activity import calls_document, reset_calls
from sandbox.chaos import add_control_routes

if TYPE_CHECKING:
    from sandbox.runtime import Sandbox

WEB_ROOT = Path(__file__).resolve().parent.parent / "multiregion_chat" / "clients" / "web"
STATIC = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "attachments.js": "text/javascript",
    "style.css": "text/css",
}


def web_app(sandbox: Sandbox) -> web.Application:
    pages = _Pages(sandbox)
    app = web.Application()
    if sandbox.identity_provider is not None:
        sandbox.identity_provider.add_routes(app)
    app.router.add_get("/", pages.page)
    app.router.add_get("/endpoints.json", pages.endpoints)
    app.router.add_get("/_sandbox/stats", pages.stats)
    app.router.add_get("/_sandbox/connections", pages.connections)
    app.router.add_get("/_sandbox/queues", pages.queues)
    app.router.add_get("/_sandbox/calls", pages.calls)
    app.router.add_delete("/_sandbox/calls", pages.reset_calls)
    app.router.add_post("/_sandbox/regions/{region}/drop", pages.drop)
    app.router.add_get("/_sandbox/token", pages.token)
    add_control_routes(app, sandbox.chaos)
    app.router.add_get("/{name}", pages.page)
    return app


class _Pages:
    """The page's request handlers, over one sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    async def page(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        if name not in STATIC:
            raise web.HTTPNotFound()
        return web.FileResponse(
            WEB_ROOT / name, headers={"Content-Type": STATIC[name], "Cache-Control": "no-store"}
        )

    async def endpoints(self, _: web.Request) -> web.Response:
        document = self.sandbox.endpoints()
        document["auth"] = (
            document.pop("signingSecret", None) or document.pop("oidc", None)
        ) is not None
        return web.json_response(document, headers={"Cache-Control": "no-store"})

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(self.sandbox.stats())

    async def calls(self, _: web.Request) -> web.Response:
        return web.json_response(await calls_document(self.sandbox))

    async def reset_calls(self, _: web.Request) -> web.Response:
        await reset_calls(self.sandbox)
        return web.json_response(await calls_document(self.sandbox))

    async def queues(self, _: web.Request) -> web.Response:
        return web.json_response(await self.sandbox.queue_depths())

    async def connections(self, _: web.Request) -> web.Response:
        return web.json_response(
            {r.region: r.websocket.describe() if r.websocket else [] for r in self.sandbox.regions}
        )

    async def drop(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        connection_id = request.query.get("connectionId", "")
        for runtime in self.sandbox.regions:
            if runtime.region == region and runtime.websocket is not None:
                if await runtime.websocket.drop(connection_id):
                    return web.json_response({"dropped": connection_id})
                return web.json_response({"message": "no such connection"}, status=404)
        return web.json_response({"message": f"no region {region}"}, status=404)

    async def token(self, request: web.Request) -> web.Response:
        mint = minter_from_endpoints(self.sandbox.endpoints())  # the IdP's key or the secret
        if mint is None:
            return web.json_response({"message": "this app has no auth"}, status=404)
        sub = request.query.get("sub", "")
        if not 1 <= len(sub) <= 128:
            return web.json_response({"message": "sub must be 1-128 characters"}, status=400)
        rooms = request.query.get("rooms")
        value = mint(
            sub,
            name=request.query.get("name") or None,
            rooms=rooms.split(",") if rooms else None,
        )
        return web.json_response({"token": value})
