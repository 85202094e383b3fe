"""An API Gateway WebSocket API, locally, on the ``websockets`` library.

Per connection: an API Gateway-style connection id; at the handshake the ``$connect``
authorizer (when the template has one) and the ``$connect`` integration, whose non-2xx answer
refuses the handshake with that status; each frame routed by the route selection expression
(``$request.body.<field>``, else ``$default``) to its integration with an API Gateway-shaped
event; a route with a route response sends the integration result's ``body`` back on the
socket; ``$disconnect`` on close. The ``@connections`` API (sandbox.management) uses
``post``/``info``/``delete`` below.

Size limits, as API Gateway's WebSocket quotas state them ("WebSocket frame size 32 KB",
"Message payload size 128 KB"; a larger message or frame received closes the connection
with code 1009): a client frame over ``MAX_FRAME_BYTES`` or a message over
``MAX_MESSAGE_BYTES`` closes the connection with 1009; an ``@connections`` post over the
message limit is 413 (sandbox.management); a route response over it is not delivered and
the client gets API Gateway's "Internal server error" frame instead (AWS documents no
behaviour for this case; what matters is that the reply does not arrive).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import logging
import os
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from sandbox.function_pool import InvokeResult
from sandbox.resolver import ACCOUNT_ID, PARTITION, URL_SUFFIX
from sandbox.template_model import ApiSpec, AuthorizerSpec, RouteSpec

log = logging.getLogger("sandbox.websocket")


class _OneLineHandshakeFailures(logging.Filter):
    """websockets logs every failed opening handshake (a TCP probe, a port scan, a client
    that gives up) as an ERROR with a 30-line traceback: one DEBUG line is what it is worth."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "opening handshake failed":
            return True
        error = record.exc_info[1] if record.exc_info else None
        record.msg = "opening handshake failed: %s"
        record.args = (f"{type(error).__name__}: {error}" if error else "no reason",)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


# The websockets server's own logger: handshake failures become one debug line.
protocol_log = logging.getLogger("sandbox.websocket.protocol")
protocol_log.addFilter(_OneLineHandshakeFailures())

MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
MAX_FRAME_BYTES = 32 * 1024  # ... and its frame limit
IDLE_TIMEOUT_SECONDS = 600.0  # API Gateway closes idle connections after 10 minutes
MAX_DURATION_SECONDS = 7200.0  # ... and every connection after 2 hours
IN_FLIGHT_PER_CONNECTION = 16
INTEGRATION_TIMEOUT = 29.0  # API Gateway's integration timeout

InvokeFn = Callable[[str, Any, float], Awaitable[InvokeResult]]


class _FrameLimitedProtocol(ServerProtocol):
    """websockets checks one ``max_size`` per message; API Gateway also limits each frame.

    The parser allows the next frame ``max_size - <size so far>`` bytes, so a
    ``max_size`` of ``min(frame limit + size so far, message limit)`` gives
    every frame at most ``MAX_FRAME_BYTES`` and the message at most
    ``MAX_MESSAGE_BYTES``; over either, websockets closes with 1009.
    """

    @property
    def max_size(self) -> int:
        return min(MAX_FRAME_BYTES + (self.cur_size or 0), MAX_MESSAGE_BYTES)

    @max_size.setter
    def max_size(self, value: int | None) -> None:
        pass  # fixed by the limits above


class _GatewayConnection(ServerConnection):
    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # serve() builds a plain ServerProtocol; no option takes a subclass.
        protocol.__class__ = _FrameLimitedProtocol
        super().__init__(protocol, *args, **kwargs)


def new_connection_id() -> str:
    # Like API Gateway's: 16 characters of standard base64, '=' included (must be URL-encoded).
    return base64.b64encode(os.urandom(11)).decode()


def request_id() -> str:
    return base64.b64encode(os.urandom(12)).decode().rstrip("=").replace("/", "_")


def _ms(timestamp: float) -> int:
    return int(timestamp * 1000)


def _request_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def iso_ms(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Connection:
    connection_id: str
    connected_at: float
    source_ip: str
    user_agent: str
    query: dict[str, str]
    headers: dict[str, str]
    authorizer: dict[str, Any] | None = None
    last_active_at: float = 0.0
    ws: ServerConnection | None = None
    open: bool = False
    skip_disconnect: bool = False
    slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(IN_FLIGHT_PER_CONNECTION)
    )


class HandshakeRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ConnectLimit(Protocol):
    def admit(self) -> bool: ...


class WebSocketApi:
    def __init__(
        self,
        region: str,
        api: ApiSpec,
        invoke: InvokeFn,
        connect_limit: ConnectLimit | None = None,
    ) -> None:
        self.region = region
        self.api = api
        self._invoke = invoke
        # --connect-rate-limit: API Gateway's new-connections-per-second quota (429 over it)
        self.connect_limit = connect_limit
        self._address: tuple[str, int] | None = None
        self.domain_name = f"{api.api_id}.execute-api.{region}.{URL_SUFFIX}"
        self.connections: dict[str, Connection] = {}
        self._pending: weakref.WeakKeyDictionary[ServerConnection, Connection] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.counters: Counter[str] = Counter()
        field_path = api.route_selection_expression.removeprefix("$request.body.")
        self._selection_path = field_path.split(".")

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str, port: int) -> None:
        self._address = (host, port)
        await self._serve(host, port)
        self._sweeper = asyncio.create_task(self._sweep())

    async def _serve(self, host: str, port: int) -> None:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            create_connection=_GatewayConnection,
            ping_interval=None,  # API Gateway answers pings but sends none
            compression=None,
            server_header=None,
            logger=protocol_log,
        )

    async def go_down(self) -> int:
        """A regional outage: stop listening (connects are refused) and lose every connection.

        The connections end as a dead region's would: abruptly, without ``$disconnect`` (no
        integration runs in a region that is down). Returns how many were open.
        """
        if self._server is not None:
            self._server.close(close_connections=False)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        lost = list(self.connections.values())
        for connection in lost:
            connection.skip_disconnect = True
            connection.open = False
            if connection.ws is not None:
                connection.ws.transport.abort()
        self.connections.clear()
        self.counters["lost_to_outage"] += len(lost)
        return len(lost)

    async def go_up(self) -> None:
        """Listen again after :meth:`go_down`."""
        if self._server is None and self._address is not None:
            await self._serve(*self._address)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close(close_connections=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)

    @property
    def tasks_in_flight(self) -> int:
        """Frames and disconnects being handled (their integrations may not have started)."""
        return len(self._tasks)

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            now = time.time()
            for connection in list(self.connections.values()):
                idle = now - connection.last_active_at > IDLE_TIMEOUT_SECONDS
                old = now - connection.connected_at > MAX_DURATION_SECONDS
                if (idle or old) and connection.ws is not None:
                    reason = "Going away" if idle else "Connection duration exceeded"
                    await connection.ws.close(1001, reason)

    # ----------------------------------------------------------------- events

    def _context(self, connection: Connection, route_key: str, event_type: str) -> dict[str, Any]:
        now = time.time()
        context: dict[str, Any] = {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id(),
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.api.stage,
            "connectedAt": _ms(connection.connected_at),
            "requestTimeEpoch": _ms(now),
            "identity": {"sourceIp": connection.source_ip, "userAgent": connection.user_agent},
            "requestId": request_id(),
            "domainName": self.domain_name,
            "connectionId": connection.connection_id,
            "apiId": self.api.api_id,
        }
        if connection.authorizer is not None:
            context["authorizer"] = dict(connection.authorizer)
        return context

    def _connect_event(self, connection: Connection, raw_query: str) -> dict[str, Any]:
        event: dict[str, Any] = {
            "headers": dict(connection.headers),
            "multiValueHeaders": {k: [v] for k, v in connection.headers.items()},
            "requestContext": self._context(connection, "$connect", "CONNECT"),
            "isBase64Encoded": False,
        }
        pairs = parse_qsl(raw_query, keep_blank_values=True)
        if pairs:
            multi: dict[str, list[str]] = {}
            for key, value in pairs:
                multi.setdefault(key, []).append(value)
            event["queryStringParameters"] = {k: v[-1] for k, v in multi.items()}
            event["multiValueQueryStringParameters"] = multi
        return event

    def method_arn(self, route_key: str) -> str:
        return (
            f"arn:{PARTITION}:execute-api:{self.region}:{ACCOUNT_ID}:"
            f"{self.api.api_id}/{self.api.stage}/{route_key}"
        )

    # ----------------------------------------------------------------- handshake

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self.connect_limit is not None and not self.connect_limit.admit():
            # API Gateway refuses connects over the account's new-connections quota at the
            # handshake, before the authorizer or $connect run.
            self.counters["connect_throttled"] += 1
            return ws.respond(429, json.dumps({"message": "Too Many Requests"}) + "\n")
        split = urlsplit(request.path)
        if split.path.rstrip("/") != f"/{self.api.stage}":
            self.counters["refused"] += 1
            return ws.respond(403, json.dumps({"message": "Forbidden"}) + "\n")
        address = ws.remote_address
        source_ip = str(address[0]) if address else "127.0.0.1"
        headers = {name: value for name, value in request.headers.raw_items()}
        headers["Host"] = self.domain_name
        headers["X-Forwarded-For"] = source_ip
        headers["X-Forwarded-Port"] = "443"
        headers["X-Forwarded-Proto"] = "https"
        now = time.time()
        connection = Connection(
            connection_id=new_connection_id(),
            connected_at=now,
            last_active_at=now,
            source_ip=source_ip,
            user_agent=request.headers.get("User-Agent", ""),
            query={k: v for k, v in parse_qsl(split.query, keep_blank_values=True)},
            headers=headers,
        )
        try:
            event = self._connect_event(connection, split.query)
            route = self.api.routes.get("$connect")
            if route is not None and route.authorizer is not None:
                connection.authorizer = await self._authorize(route.authorizer, event)
                event["requestContext"]["authorizer"] = dict(connection.authorizer)
            if route is not None:
                await self._connect(route, event)
        except HandshakeRefused as refused:
            self.counters["refused"] += 1
            log.info("%s: $connect refused (%d): %s", self.region, refused.status, refused.message)
            body = json.dumps({"message": refused.message}) + "\n"
            return ws.respond(refused.status, body)
        self._pending[ws] = connection
        return None

    async def _connect(self, route: RouteSpec, event: dict[str, Any]) -> None:
        result = await self._invoke(route.function, event, INTEGRATION_TIMEOUT)
        if not result.ok:
            raise HandshakeRefused(500, "Internal server error")
        status = 200
        if isinstance(result.result, dict) and "statusCode" in result.result:
            try:
                status = int(result.result["statusCode"])
            except (TypeError, ValueError):
                raise HandshakeRefused(500, "Internal server error") from None
        if not 200 <= status < 300:
            body = result.result.get("body") if isinstance(result.result, dict) else None
            raise HandshakeRefused(status, str(body or "Forbidden"))

    async def _authorize(self, authorizer: AuthorizerSpec, event: dict[str, Any]) -> dict[str, Any]:
        if authorizer.kind != "REQUEST" or not authorizer.function:
            return {}
        for source in authorizer.identity_sources:
            if _identity_value(source, event) in (None, ""):
                raise HandshakeRefused(401, "Unauthorized")
        auth_event = {
            "type": "REQUEST",
            "methodArn": self.method_arn("$connect"),
            "headers": event["headers"],
            "multiValueHeaders": event["multiValueHeaders"],
            "queryStringParameters": event.get("queryStringParameters") or {},
            "multiValueQueryStringParameters": event.get("multiValueQueryStringParameters") or {},
            "stageVariables": {},
            "requestContext": event["requestContext"],
        }
        result = await self._invoke(authorizer.function, auth_event, INTEGRATION_TIMEOUT)
        if not result.ok:
            if (result.error_message or "").strip() == "Unauthorized":
                raise HandshakeRefused(401, "Unauthorized")
            raise HandshakeRefused(500, "Internal server error")
        return authorizer_context(result.result, self.method_arn("$connect"))

    # ----------------------------------------------------------------- messages

    async def _handle(self, ws: ServerConnection) -> None:
        connection = self._pending.pop(ws, None)
        if connection is None:  # pragma: no cover - process_request always registers
            return
        connection.ws = ws
        connection.open = True
        self.connections[connection.connection_id] = connection
        self.counters["connected"] += 1
        try:
            async for message in ws:
                connection.last_active_at = time.time()
                self.counters["frames_in"] += 1
                await connection.slots.acquire()
                self._spawn(self._on_frame(connection, message))
        except ConnectionClosed:
            pass
        finally:
            connection.open = False
            self.connections.pop(connection.connection_id, None)
            self.counters["disconnected"] += 1
            if not connection.skip_disconnect:
                self._spawn(self._disconnect(connection, ws))

    def select_route(self, message: str | bytes) -> str | None:
        """The route key of a frame (None: no route, no $default)."""
        key: Any = None
        if isinstance(message, str):
            try:
                value: Any = json.loads(message)
            except (ValueError, RecursionError):  # a hostile deep frame goes to $default
                value = None
            for part in self._selection_path:
                value = value.get(part) if isinstance(value, dict) else None
            key = value
        if isinstance(key, str) and key in self.api.routes and not key.startswith("$"):
            return key
        return "$default" if "$default" in self.api.routes else None

    async def _on_frame(self, connection: Connection, message: str | bytes) -> None:
        try:
            await self._route_frame(connection, message)
        finally:
            connection.slots.release()

    async def _route_frame(self, connection: Connection, message: str | bytes) -> None:
        route_key = self.select_route(message)
        context = self._context(connection, route_key or "$default", "MESSAGE")
        context["messageId"] = request_id()
        if route_key is None:
            self.counters["no_route"] += 1
            await self._reply(connection, self._gateway_error("Forbidden", context))
            return
        route = self.api.routes[route_key]
        binary = isinstance(message, bytes)
        event = {
            "requestContext": context,
            "body": base64.b64encode(message).decode() if isinstance(message, bytes) else message,
            "isBase64Encoded": binary,
        }
        self.counters[f"route:{route_key}"] += 1
        result = await self._invoke(route.function, event, INTEGRATION_TIMEOUT)
        if not result.ok:
            await self._reply(connection, self._gateway_error("Internal server error", context))
            return
        if route.return_response:
            body = result.result.get("body") if isinstance(result.result, dict) else None
            if body is not None:
                text = body if isinstance(body, str) else json.dumps(body)
                if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
                    self.counters["oversized_route_responses"] += 1
                    log.warning("route response of %d bytes not delivered", len(text))
                    text = self._gateway_error("Internal server error", context)
                await self._reply(connection, text)

    def _gateway_error(self, message: str, context: dict[str, Any]) -> str:
        return json.dumps(
            {
                "message": message,
                "connectionId": context["connectionId"],
                "requestId": context["requestId"],
            }
        )

    async def _reply(self, connection: Connection, text: str) -> None:
        if connection.ws is None or not connection.open:
            return
        with contextlib.suppress(ConnectionClosed):
            await connection.ws.send(text)
            self.counters["frames_out"] += 1

    async def _disconnect(self, connection: Connection, ws: ServerConnection) -> None:
        route = self.api.routes.get("$disconnect")
        if route is None:
            return
        code = ws.close_code if ws.close_code is not None else 1006
        context = self._context(connection, "$disconnect", "DISCONNECT")
        context["disconnectStatusCode"] = code
        context["disconnectReason"] = ws.close_reason or ""
        event = {
            "headers": {"Host": self.domain_name, "X-Forwarded-For": connection.source_ip},
            "multiValueHeaders": {
                "Host": [self.domain_name],
                "X-Forwarded-For": [connection.source_ip],
            },
            "requestContext": context,
            "isBase64Encoded": False,
        }
        await self._invoke(route.function, event, INTEGRATION_TIMEOUT)

    # ----------------------------------------------------------------- @connections

    async def post(self, connection_id: str, data: bytes) -> bool:
        """Send ``data`` to the connection; False when it is unknown or closed (410)."""
        connection = self.connections.get(connection_id)
        if connection is None or not connection.open or connection.ws is None:
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            payload: str | bytes = data
        else:
            payload = text
        try:
            await connection.ws.send(payload)
        except ConnectionClosed:
            return False
        connection.last_active_at = time.time()
        self.counters["frames_out"] += 1
        return True

    def info(self, connection_id: str) -> Connection | None:
        connection = self.connections.get(connection_id)
        return connection if connection is not None and connection.open else None

    async def delete(self, connection_id: str) -> bool:
        connection = self.info(connection_id)
        if connection is None or connection.ws is None:
            return False
        await connection.ws.close(1000, "")
        return True

    async def drop(self, connection_id: str) -> bool:
        """Lose the connection as a vanished client would, without ``$disconnect``.

        API Gateway delivers ``$disconnect`` on a best-effort basis; this lets a test (or a
        person) exercise the 410 Gone clean-up path that covers the missed ones.
        """
        connection = self.info(connection_id)
        if connection is None or connection.ws is None:
            return False
        connection.skip_disconnect = True
        connection.open = False
        self.connections.pop(connection_id, None)
        connection.ws.transport.abort()
        return True

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "connectionId": c.connection_id,
                "connectedAt": iso_ms(c.connected_at),
                "lastActiveAt": iso_ms(c.last_active_at),
                "sourceIp": c.source_ip,
                "query": c.query,
                "authorizer": c.authorizer,
            }
            for c in self.connections.values()
        ]


def _identity_value(source: str, event: dict[str, Any]) -> str | None:
    lowered = source.lower()
    for prefix in ("route.request.querystring.", "$request.querystring."):
        if lowered.startswith(prefix):
            return (event.get("queryStringParameters") or {}).get(source[len(prefix) :])
    for prefix in ("route.request.header.", "$request.header."):
        if lowered.startswith(prefix):
            wanted = source[len(prefix) :].lower()
            for name, value in (event.get("headers") or {}).items():
                if name.lower() == wanted:
                    return str(value)
            return None
    return "present"  # stage variables, context: not checked locally


def authorizer_context(result: Any, method_arn: str) -> dict[str, Any]:
    """Apply a REQUEST authorizer's IAM policy answer as API Gateway does."""
    if not isinstance(result, dict) or "policyDocument" not in result:
        raise HandshakeRefused(500, "Internal server error")
    statements = (result.get("policyDocument") or {}).get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    allowed = False
    for statement in statements:
        actions = statement.get("Action") or []
        resources = statement.get("Resource") or []
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in actions):
            continue
        if not any(fnmatch.fnmatchcase(method_arn, r) for r in resources):
            continue
        if statement.get("Effect") == "Deny":
            raise HandshakeRefused(403, "Forbidden")
        if statement.get("Effect") == "Allow":
            allowed = True
    if not allowed:
        raise HandshakeRefused(403, "Forbidden")
    context = result.get("context") or {}
    if not isinstance(context, dict) or any(
        not isinstance(value, str | int | float | bool) for value in context.values()
    ):
        # API Gateway refuses authorizer context values that are objects or arrays.
        log.error("authorizer context has non-primitive values: %r", context)
        raise HandshakeRefused(500, "Internal server error")
    answer: dict[str, Any] = dict(context)
    answer["principalId"] = result.get("principalId", "")
    answer["integrationLatency"] = 0
    return answer
