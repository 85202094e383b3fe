"""The local WebSocket API against a scripted integration (no workers, no app handlers)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sandbox_templates import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sandbox.function_pool import InvokeResult
from sandbox.template_model import ApiSpec, AuthorizerSpec, RouteSpec
from sandbox.websocket_api import HandshakeRefused, WebSocketApi, authorizer_context

Script = Callable[[str, dict[str, Any]], InvokeResult]


def api_spec(keys: list[str], authorizer: AuthorizerSpec | None = None) -> ApiSpec:
    api = ApiSpec(
        logical_id="Api",
        api_id="abcdefghij",
        name="chat",
        protocol="WEBSOCKET",
        stage="prod",
        aws_endpoint="wss://abcdefghij.execute-api.eu-west-1.amazonaws.com",
        route_selection_expression="$request.body.action",
    )
    for key in keys:
        api.routes[key] = RouteSpec(
            route_key=key,
            logical_id=f"Route{key}",
            function="Fn",
            integration="Integration",
            return_response=not key.startswith("$") or key == "$default",
            authorizer=authorizer if key == "$connect" else None,
        )
    return api


async def run_with(
    api: ApiSpec, script: Script, scenario: Callable[[str, WebSocketApi], Awaitable[None]]
) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def invoke(function: str, event: Any, timeout: float | None = None) -> InvokeResult:
        calls.append((function, event))
        return script(function, event)

    server = WebSocketApi("eu-west-1", api, invoke)
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        await scenario(f"ws://127.0.0.1:{port}", server)
        await asyncio.sleep(0.05)
    finally:
        await server.stop()
    return calls


def echo(function: str, event: dict[str, Any]) -> InvokeResult:
    context = event.get("requestContext", {})
    if context.get("eventType") != "MESSAGE":
        return InvokeResult(True, {"statusCode": 200})
    return InvokeResult(
        True,
        {
            "statusCode": 200,
            "body": json.dumps(
                {
                    "route": context["routeKey"],
                    "body": event["body"],
                    "b64": event["isBase64Encoded"],
                }
            ),
        },
    )


def test_connect_route_and_disconnect_events() -> None:
    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod?userId=alice&x=1&x=2") as ws:
            await ws.send(json.dumps({"action": "send", "n": 1}))
            assert json.loads(await ws.recv())["route"] == "send"
            await ws.send(json.dumps({"action": "nope"}))
            assert json.loads(await ws.recv())["route"] == "$default"
            await ws.send("not json")
            assert json.loads(await ws.recv()) == {
                "route": "$default",
                "body": "not json",
                "b64": False,
            }
            await ws.send(b"\x00\x01")
            reply = json.loads(await ws.recv())
            assert reply["b64"] and base64.b64decode(reply["body"]) == b"\x00\x01"
            assert len(server.connections) == 1

    calls = asyncio.run(
        run_with(api_spec(["$connect", "$disconnect", "$default", "send"]), echo, scenario)
    )
    kinds = [event["requestContext"]["eventType"] for _, event in calls]
    assert kinds == ["CONNECT", "MESSAGE", "MESSAGE", "MESSAGE", "MESSAGE", "DISCONNECT"]
    connect_event = calls[0][1]
    context = connect_event["requestContext"]
    assert connect_event["queryStringParameters"] == {"userId": "alice", "x": "2"}
    assert connect_event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert context["routeKey"] == "$connect" and context["stage"] == "prod"
    assert context["apiId"] == "abcdefghij"
    assert context["domainName"] == "abcdefghij.execute-api.eu-west-1.amazonaws.com"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["requestTimeEpoch"], int)
    connection_ids = {event["requestContext"]["connectionId"] for _, event in calls}
    assert len(connection_ids) == 1
    (connection_id,) = connection_ids
    assert len(connection_id) == 16 and connection_id.endswith("=")
    disconnect = calls[-1][1]["requestContext"]
    assert disconnect["routeKey"] == "$disconnect" and disconnect["disconnectStatusCode"] == 1000


def test_connect_status_refuses_the_handshake() -> None:
    def refuse(function: str, event: dict[str, Any]) -> InvokeResult:
        return InvokeResult(True, {"statusCode": 400})

    async def scenario(url: str, server: WebSocketApi) -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{url}/prod"):
                pass
        assert refused.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as wrong_stage:
            async with connect(f"{url}/dev"):
                pass
        assert wrong_stage.value.response.status_code == 403

    asyncio.run(run_with(api_spec(["$connect", "$default"]), refuse, scenario))


def test_integration_failure_and_missing_route_answer_like_api_gateway() -> None:
    def broken(function: str, event: dict[str, Any]) -> InvokeResult:
        if event["requestContext"]["eventType"] == "MESSAGE":
            return InvokeResult(False, error_type="ValueError", error_message="boom")
        return InvokeResult(True, {"statusCode": 200})

    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod") as ws:
            await ws.send(json.dumps({"action": "send"}))
            reply = json.loads(await ws.recv())
            assert reply["message"] == "Internal server error" and reply["connectionId"]
            await ws.send(json.dumps({"action": "other"}))  # no such route, no $default
            assert json.loads(await ws.recv())["message"] == "Forbidden"

    asyncio.run(run_with(api_spec(["send"]), broken, scenario))


def test_message_over_128_kib_closes_with_1009() -> None:
    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod", max_size=None) as ws:
            await ws.send("x" * (128 * 1024 + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    asyncio.run(run_with(api_spec(["$default"]), echo, scenario))


def test_frames_over_32_kib_close_with_1009_and_fragments_under_it_pass() -> None:
    """API Gateway: frames of at most 32 KB, messages of at most 128 KB (in fragments)."""

    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod", max_size=None) as ws:
            await ws.send("y" * (32 * 1024))  # exactly one full frame
            assert json.loads(await ws.recv())["body"] == "y" * (32 * 1024)
            fragments = ["z" * (30 * 1024)] * 4  # 120 KiB in four frames
            await ws.send(fragments)
            assert len(json.loads(await ws.recv())["body"]) == 120 * 1024
            await ws.send("x" * (32 * 1024 + 1))  # one frame over the limit
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        async with connect(f"{url}/prod", max_size=None) as ws:
            await ws.send(["z" * (30 * 1024)] * 5)  # 150 KiB in frames under 32 KiB
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

    asyncio.run(run_with(api_spec(["$default"]), echo, scenario))


def test_a_route_response_over_128_kib_is_not_delivered() -> None:
    def big_reply(function: str, event: dict[str, Any]) -> InvokeResult:
        if event["requestContext"]["eventType"] != "MESSAGE":
            return InvokeResult(True, {"statusCode": 200})
        size = int(json.loads(event["body"])["size"])
        return InvokeResult(True, {"statusCode": 200, "body": "r" * size})

    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod", max_size=None) as ws:
            await ws.send(json.dumps({"size": 128 * 1024}))
            assert await ws.recv() == "r" * (128 * 1024)
            await ws.send(json.dumps({"size": 128 * 1024 + 1}))
            reply = json.loads(await ws.recv())
            assert reply["message"] == "Internal server error"
            assert server.counters["oversized_route_responses"] == 1

    asyncio.run(run_with(api_spec(["$default"]), big_reply, scenario))


def test_post_info_delete_and_drop() -> None:
    async def scenario(url: str, server: WebSocketApi) -> None:
        async with connect(f"{url}/prod") as ws, connect(f"{url}/prod") as other:
            await asyncio.sleep(0.05)
            first, second = list(server.connections)
            assert await server.post(first, b'{"hello":1}') or await server.post(second, b"")
            assert not await server.post("unknown", b"x")
            assert server.info(first) is not None
            assert await server.drop(second)
            assert server.info(second) is None and not await server.post(second, b"x")
            assert await server.delete(first)
            del ws, other

    calls = asyncio.run(run_with(api_spec(["$connect", "$disconnect"]), echo, scenario))
    kinds = [event["requestContext"]["eventType"] for _, event in calls]
    # The deleted connection gets its $disconnect; the dropped one (a vanished client) not.
    assert kinds.count("DISCONNECT") == 1


def test_authorizer_allows_denies_and_needs_its_identity_source() -> None:
    authorizer = AuthorizerSpec("Auth", "AuthFn", "REQUEST", ("route.request.querystring.token",))

    def script(function: str, event: dict[str, Any]) -> InvokeResult:
        if function == "AuthFn":
            token = event["queryStringParameters"]["token"]
            if token == "bad":
                return InvokeResult(False, error_type="Exception", error_message="Unauthorized")
            effect = "Allow" if token == "good" else "Deny"
            return InvokeResult(
                True,
                {
                    "principalId": "alice",
                    "policyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Action": "execute-api:Invoke",
                                "Effect": effect,
                                "Resource": event["methodArn"],
                            }
                        ],
                    },
                    "context": {"userId": "alice", "name": "Alice"},
                },
            )
        return InvokeResult(True, {"statusCode": 200})

    async def scenario(url: str, server: WebSocketApi) -> None:
        for token, status in (("", 401), ("bad", 401), ("deny", 403)):
            suffix = f"?token={token}" if token else ""
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{url}/prod{suffix}"):
                    pass
            assert refused.value.response.status_code == status, token
        async with connect(f"{url}/prod?token=good"):
            pass

    calls = asyncio.run(run_with(api_spec(["$connect"], authorizer), script, scenario))
    auth_calls = [event for function, event in calls if function == "AuthFn"]
    assert len(auth_calls) == 3  # no call without the identity source
    assert auth_calls[0]["methodArn"].endswith("abcdefghij/prod/$connect")
    connects = [event for function, event in calls if function == "Fn"]
    assert len(connects) == 1
    assert connects[0]["requestContext"]["authorizer"]["userId"] == "alice"
    assert connects[0]["requestContext"]["authorizer"]["principalId"] == "alice"


def test_authorizer_context_must_be_flat() -> None:
    answer = {
        "principalId": "u",
        "context": {"rooms": ["a"]},
        "policyDocument": {
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"}]
        },
    }
    with pytest.raises(HandshakeRefused) as refused:
        authorizer_context(answer, "arn:aws:execute-api:r:a:id/prod/$connect")
    assert refused.value.status == 500


def test_a_tcp_probe_is_one_debug_line_not_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A port probe (connect, close, no handshake) used to print a 30-line ERROR traceback."""
    caplog.set_level(logging.DEBUG, logger="sandbox.websocket.protocol")

    def failed_handshakes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "opening handshake failed" in r.getMessage()]

    async def scenario(url: str, server: WebSocketApi) -> None:
        host, port = url.removeprefix("ws://").split(":")
        for _ in range(2):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await writer.wait_closed()
        for _ in range(500):  # bounded: until the server has seen both probes
            if len(failed_handshakes()) >= 2:
                break
            await asyncio.sleep(0.01)

    asyncio.run(run_with(api_spec(["$default"]), echo, scenario))
    records = failed_handshakes()
    assert len(records) == 2
    for record in records:
        assert record.levelno == logging.DEBUG and record.exc_info is None
        assert "\n" not in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_handshake_failures_are_silent_above_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("sandbox.websocket.protocol").setLevel(logging.INFO)
    try:

        async def scenario(url: str, server: WebSocketApi) -> None:
            host, port = url.removeprefix("ws://").split(":")
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await writer.wait_closed()
            # A real connection afterwards proves the server went on (and saw the probe).
            async with connect(url + "/prod") as ws:
                await ws.send(json.dumps({"action": "x"}))
                await ws.recv()

        asyncio.run(run_with(api_spec(["$default"]), echo, scenario))
    finally:
        logging.getLogger("sandbox.websocket.protocol").setLevel(logging.NOTSET)
    assert not [r for r in caplog.records if "handshake" in r.getMessage()]
