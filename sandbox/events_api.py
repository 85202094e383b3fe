"""One region's EventBridge endpoint (``AWS_ENDPOINT_URL_EVENTBRIDGE``): PutEvents only."""

from __future__ import annotations

import json

from aiohttp import web

from sandbox.eventbus import PutEventsError, RegionBus

CONTENT_TYPE = "application/x-amz-json-1.1"


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=CONTENT_TYPE)


def events_app(bus: RegionBus) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        if request.method != "POST" or not target.startswith("AWSEvents."):
            return _json(400, {"__type": "UnknownOperationException", "message": "not EventBridge"})
        operation = target.split(".", 1)[1]
        if operation != "PutEvents":
            return _json(
                400,
                {
                    "__type": "UnknownOperationException",
                    "message": f"the sandbox emulates PutEvents only, not {operation}",
                },
            )
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _json(400, {"__type": "SerializationException", "message": "bad JSON"})
        try:
            return _json(200, bus.put_events(body))
        except PutEventsError as error:
            return _json(400, {"__type": error.code, "message": error.message})

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
