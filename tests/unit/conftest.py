"""Fixtures for the handler unit tests: moto-backed AWS, handler drivers, metrics.

The environment is set here, before any handler module is imported, because
Powertools reads its service name and metrics namespace when ``runtime.platform.observability``
is first imported. boto3 clients are built lazily by ``runtime.platform.aws_clients``; the
``aws`` fixture resets them inside ``mock_aws`` so no client outlives its mock.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

TEST_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "CONNECTIONS_TABLE": "chat-test-connections",
    "MESSAGES_TABLE": "chat-test-messages",
    "EVENT_BUS_NAME": "chat-test-chat-bus",
    "EVENT_SOURCE": "chat.chat",
    "CALLBACK_URL": "https://abc123.execute-api.us-east-1.amazonaws.com/test",
    "MAX_BODY_BYTES": "16384",
    "HISTORY_RETENTION_SECONDS": "86400",
    "CONNECTION_TTL_SECONDS": "10800",
    "FANOUT_CONCURRENCY": "4",
    "CHAT_REGIONS": "us-east-1,eu-west-1,ap-northeast-1,ap-south-1,us-west-2",
    "BUS_CLOCK_SKEW_SECONDS": "60",
    "POWERTOOLS_SERVICE_NAME": "chat-test",
    "POWERTOOLS_METRICS_NAMESPACE": "ChatTest",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
os.environ.update(TEST_ENV)
for _name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL") or n == "AWS_PROFILE"]:
    del os.environ[_name]

from moto import mock_aws  # noqa: E402

from multiregion_chat.infra.table_schema import (  # noqa: E402
    CONNECTIONS_TABLE,
    MESSAGES_TABLE,
    TTL_ATTRIBUTE,
)
from multiregion_chat.runtime.delivery import engine  # noqa: E402
from multiregion_chat.runtime.handlers import (  # noqa: E402
    client_message_handler,
    connection_handler,
    event_bus_message_handler,
    http_handler,
)
from multiregion_chat.runtime.platform import aws_clients, observability, retry  # noqa: E402
from multiregion_chat.runtime.presence import transitions  # noqa: E402
from multiregion_chat.runtime.protocol.frames import ACTIONS  # noqa: E402
from tests.unit.connections_server import ConnectionsServer  # noqa: E402

ACCOUNT = "123456789012"
REGION = TEST_ENV["AWS_REGION"]


@dataclass
class FakeLambdaContext:
    function_name: str = "chat-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chat-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


def create_tables(region: str = REGION) -> None:
    """Both tables exactly as the stacks build them (infra/table_schema.py)."""
    ddb = boto3.client("dynamodb", region_name=region)
    for name, schema in {
        TEST_ENV["CONNECTIONS_TABLE"]: CONNECTIONS_TABLE,
        TEST_ENV["MESSAGES_TABLE"]: MESSAGES_TABLE,
    }.items():
        keys = [schema.partition_key, schema.sort_key, *(key for _, key in schema.indexes)]
        indexes: dict[str, Any] = {}
        if schema.indexes:
            indexes["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index_name,
                    "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
                for index_name, key in schema.indexes
            ]
        ddb.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": key, "AttributeType": "S"} for key in dict.fromkeys(keys)
            ],
            KeySchema=[
                {"AttributeName": schema.partition_key, "KeyType": "HASH"},
                {"AttributeName": schema.sort_key, "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
            **indexes,
        )
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
        )


@pytest.fixture(scope="session")
def connections_server() -> Iterator[ConnectionsServer]:
    """The local ``@connections`` endpoint every unit test's CALLBACK_URL points at:
    it forwards accepted posts to moto (``frames_in``) and can be scripted."""
    server = ConnectionsServer(forward_to_moto=True).start()
    yield server
    server.stop()


@pytest.fixture
def mgmt(connections_server: ConnectionsServer) -> ConnectionsServer:
    """The local ``@connections`` server, reset for this test."""
    return connections_server


@pytest.fixture(autouse=True)
def _test_env(
    monkeypatch: pytest.MonkeyPatch, connections_server: ConnectionsServer
) -> Iterator[None]:
    """Fresh env, settings and metrics per test."""
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CALLBACK_URL", f"{connections_server.url}/test")
    connections_server.reset()
    engine.reset_credentials()
    # in case another test package imported the handlers before this env was set
    monkeypatch.setattr(
        observability.metrics, "namespace", TEST_ENV["POWERTOOLS_METRICS_NAMESPACE"]
    )
    monkeypatch.setattr(transitions, "_last_at", 0)
    aws_clients.reset()
    observability.metrics.clear_metrics()
    yield
    aws_clients.reset()
    observability.metrics.clear_metrics()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retries never really sleep; the delays asked for are recorded here, in order."""
    recorded: list[float] = []

    async def instant(delay: float) -> None:
        recorded.append(delay)

    monkeypatch.setattr(retry, "sleep", recorded.append)
    monkeypatch.setattr(engine, "async_sleep", instant)
    return recorded


@pytest.fixture
def aws() -> Iterator[None]:
    """moto for every AWS service, with both tables and the chat bus."""
    with mock_aws():
        aws_clients.reset()
        create_tables()
        boto3.client("events", region_name=REGION).create_event_bus(Name=TEST_ENV["EVENT_BUS_NAME"])
        yield
        aws_clients.reset()


@pytest.fixture(scope="module")
def module_aws() -> Iterator[None]:
    """Like ``aws`` but shared by a whole module (for tests that write little or nothing).

    A module using it must not also use ``aws``: moto mocks do not nest.
    """
    with mock_aws():
        aws_clients.reset()
        create_tables()
        boto3.client("events", region_name=REGION).create_event_bus(Name=TEST_ENV["EVENT_BUS_NAME"])
        yield
        aws_clients.reset()


@pytest.fixture
def context() -> FakeLambdaContext:
    return FakeLambdaContext()


def authorizer_context(
    user_id: str, name: str | None = None, rooms: list[str] | None = None
) -> dict[str, Any]:
    """``requestContext.authorizer`` of a connection whose token had these claims."""
    context: dict[str, Any] = {
        "userId": user_id,
        "rooms": json.dumps(rooms),
        "principalId": user_id,
        "integrationLatency": 0,
    }
    if name:
        context["name"] = name
    return context


class Chat:
    """Drives the handlers the way API Gateway and EventBridge invoke them."""

    def __init__(self, context: FakeLambdaContext) -> None:
        self.context = context

    def connect(
        self,
        connection_id: str,
        user_id: str | None = "alice",
        name: str | None = None,
        *,
        rooms: list[str] | None = None,
        query: dict[str, str] | None = None,
        authorizer: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``$connect`` as API Gateway sends it after the token authorizer allowed it.

        Unless ``authorizer`` is given, the context is the one
        ``runtime.handlers.authorizer.handler``
        produces for a token with ``sub=user_id``, ``name`` and ``rooms`` (None: every
        room); ``user_id=None`` sends no authorizer context at all.
        """
        if authorizer is None and user_id is not None:
            authorizer = authorizer_context(user_id, name, rooms)
        request_context: dict[str, Any] = {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "connectionId": connection_id,
            "requestId": f"req-{connection_id}",
            "stage": "test",
        }
        if authorizer is not None:
            request_context["authorizer"] = authorizer
        event = {"requestContext": request_context, "queryStringParameters": query or None}
        return connection_handler.handler(event, self.context)

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        event = {
            "requestContext": {
                "routeKey": "$disconnect",
                "eventType": "DISCONNECT",
                "connectionId": connection_id,
                "requestId": f"req-{connection_id}",
            }
        }
        return connection_handler.handler(event, self.context)

    def raw(self, connection_id: str, body: str | None, route: str = "$default") -> dict[str, Any]:
        """Send a raw text frame; returns the handler's full route response."""
        event = {
            "requestContext": {
                "routeKey": route,
                "eventType": "MESSAGE",
                "connectionId": connection_id,
                "requestId": "req-1",
                "stage": "test",
            },
            "body": body,
            "isBase64Encoded": False,
        }
        response = client_message_handler.handler(event, self.context)
        assert response["statusCode"] == 200
        return response

    def send(self, connection_id: str, frame: Any) -> dict[str, Any]:
        """Send a frame (a dict is JSON-encoded); returns the decoded reply frame."""
        if isinstance(frame, str):
            body, route = frame, "$default"
        else:
            body = json.dumps(frame)
            action = frame.get("action") if isinstance(frame, dict) else None
            route = action if action in ACTIONS else "$default"
        reply = json.loads(self.raw(connection_id, body, route)["body"])
        assert isinstance(reply, dict)
        return reply

    def deliver(
        self, detail: dict[str, Any], detail_type: str = "chat.message", source: str | None = None
    ) -> dict[str, Any]:
        event = {
            "version": "0",
            "id": "event-1",
            "detail-type": detail_type,
            "source": source or TEST_ENV["EVENT_SOURCE"],
            "account": ACCOUNT,
            "time": "2026-11-21T23:59:59Z",
            "region": REGION,
            "resources": [],
            "detail": detail,
        }
        return event_bus_message_handler.handler(event, self.context)

    def http(
        self,
        method: str,
        room: str | None = "lobby",
        *,
        query: dict[str, str] | None = None,
        body: str | None = None,
        is_base64: bool = False,
        user: str | None = "alice",
        name: str | None = None,
        rooms: list[str] | None = None,
        authorizer: dict[str, Any] | None = None,
        route_key: str | None = None,
        raw_path: str | None = None,
        context: Any = None,
    ) -> dict[str, Any]:
        """Invoke HttpHandler with an HTTP API payload 2.0 event; returns the response
        with ``json`` (the decoded body) added. The authorizer context is the one
        ``runtime.handlers.authorizer.handler`` gives a token for ``user``/``name``/``rooms`` unless
        ``authorizer`` is given; ``user=None`` sends none."""
        if authorizer is None and user is not None:
            authorizer = {
                k: v for k, v in authorizer_context(user, name, rooms).items() if k != "principalId"
            }
        path = raw_path or f"/rooms/{room}/messages"
        request_context: dict[str, Any] = {
            "accountId": ACCOUNT,
            "apiId": "http123",
            "domainName": "http123.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1"},
            "requestId": "http-req-1",
            "routeKey": route_key or f"{method} /rooms/{{room}}/messages",
            "stage": "$default",
        }
        if authorizer is not None:
            request_context["authorizer"] = {"lambda": authorizer}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": request_context["routeKey"],
            "rawPath": path,
            "rawQueryString": "&".join(f"{k}={v}" for k, v in (query or {}).items()),
            "headers": {"content-type": "application/json"},
            "requestContext": request_context,
            "isBase64Encoded": is_base64,
        }
        if query:
            event["queryStringParameters"] = query
        if room is not None and route_key is None:
            event["pathParameters"] = {"room": room}
        if body is not None:
            event["body"] = body
        response = http_handler.handler(event, context or self.context)
        assert isinstance(response, dict)
        assert response["headers"]["content-type"] == "application/json"
        return {**response, "json": json.loads(response["body"])}


@pytest.fixture
def chat(aws: None, context: FakeLambdaContext) -> Chat:
    return Chat(context)


@pytest.fixture
def chat_shared(module_aws: None, context: FakeLambdaContext) -> Chat:
    """A Chat driver on the module-wide moto instance."""
    return Chat(context)


@pytest.fixture
def emitted_metrics(capsys: pytest.CaptureFixture[str]) -> Callable[[], dict[str, float]]:
    """Sum of every EMF metric printed so far (by name)."""

    def read() -> dict[str, float]:
        totals: dict[str, float] = {}
        for line in capsys.readouterr().out.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or "_aws" not in record:
                continue
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    value = record[metric["Name"]]
                    values = value if isinstance(value, list) else [value]
                    totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(values)
        return totals

    return read


def set_store_clock(monkeypatch: pytest.MonkeyPatch, clock: Callable[[], int]) -> None:
    """Make the storage modules read the time (epoch s) from ``clock``: leases and
    expiries are computed in each of them and in their shared runtime.store.layout."""
    from multiregion_chat.runtime.store import connection_store, history_store, layout, room_store

    for module in (layout, connection_store, room_store, history_store):
        monkeypatch.setattr(module, "epoch_seconds", clock)


def _connection_items(connection_id: str) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(TEST_ENV["CONNECTIONS_TABLE"])
    items = table.scan()["Items"]
    return [
        i for i in items if i["pk"] == f"CONN#{connection_id}" or i["sk"] == f"CONN#{connection_id}"
    ]


def frames_in(region: str, connection_id: str) -> list[dict[str, Any]]:
    """Every frame moto's @connections recorded for ``connection_id`` in ``region``."""
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends

    backend = apigatewaymanagementapi_backends[ACCOUNT][region]
    if connection_id not in backend.connections:
        return []
    data = backend.connections[connection_id].data.decode("utf-8")
    decoder, frames, index = json.JSONDecoder(), [], 0
    while index < len(data):
        frame, index = decoder.raw_decode(data, index)
        frames.append(frame)
    return frames


def _posted_frames(connection_id: str) -> list[dict[str, Any]]:
    return frames_in(REGION, connection_id)


@pytest.fixture
def items_of(aws: None) -> Callable[[str], list[dict[str, Any]]]:
    """Every connections-table item (resource form) that belongs to a connection id."""
    return _connection_items


@pytest.fixture
def posted(aws: None) -> Callable[[str], list[dict[str, Any]]]:
    """The frames moto's @connections API received for a connection id, in order."""
    return _posted_frames


@pytest.fixture
def tables(aws: None) -> Any:
    """boto3 Table resources: ``tables.connections`` and ``tables.messages``."""
    resource = boto3.resource("dynamodb", region_name=REGION)

    class Tables:
        connections = resource.Table(TEST_ENV["CONNECTIONS_TABLE"])
        messages = resource.Table(TEST_ENV["MESSAGES_TABLE"])

    return Tables


@dataclass
class PublishedEvent:
    detail_type: str
    detail: dict[str, Any]
    source: str
    bus: str


@pytest.fixture
def published(aws: None, monkeypatch: pytest.MonkeyPatch) -> list[PublishedEvent]:
    """Every entry put on the bus (in order), recorded before moto accepts it."""
    recorded: list[PublishedEvent] = []
    events = aws_clients.events()
    real = events.put_events

    def recording(**kwargs: Any) -> Any:
        for entry in kwargs["Entries"]:
            recorded.append(
                PublishedEvent(
                    detail_type=entry["DetailType"],
                    detail=json.loads(entry["Detail"]),
                    source=entry["Source"],
                    bus=entry["EventBusName"],
                )
            )
        return real(**kwargs)

    monkeypatch.setattr(events, "put_events", recording)
    return recorded
