"""EventBusMessageHandler: history write (dedup), fan-out, 410 cleanup, retries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import event_bus_message_handler
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber

from chat import clients, fanout, ids, store
from chat.protocol import compact_json

CALLBACK = "https://abc123.execute-api.us-east-1.amazonaws.com/test"


def detail(
    room: str = "lobby", body: Any = None, origin: str = "us-east-1", **extra: Any
) -> dict[str, Any]:
    message_id = ids.new_id()
    out = {
        "originRegion": origin,
        "room": room,
        "id": message_id,
        "sender": {"userId": "alice", "name": "Alice", "region": origin},
        "body": {"text": "hi"} if body is None else body,
        "sentAt": ids.iso_from_ms(ids.id_timestamp_ms(message_id)),
    }
    out.update(extra)
    return out


def join(chat: Any, cid: str, room: str = "lobby", user: str | None = None) -> None:
    chat.connect(cid, user or f"user-{cid}")
    assert chat.send(cid, {"action": "join", "room": room})["type"] == "joined"


@pytest.fixture
def stubbed_api(aws: None) -> Iterator[Stubber]:
    with Stubber(clients.management_api()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_delivers_message_frame_to_every_member(chat: Any, posted: Any, tables: Any) -> None:
    for cid in ("c1", "c2", "c3"):
        join(chat, cid)
    join(chat, "c-other", room="other")
    d = detail(body={"text": "hé", "n": [1, None]})
    result = chat.deliver(d)
    assert result == {"status": "delivered", "delivered": 3, "gone": 0, "failed": 0}
    expected = {"type": "message", **{k: v for k, v in d.items() if k != "originRegion"}}
    for cid in ("c1", "c2", "c3"):
        assert posted(cid) == [expected]
    assert posted("c-other") == []
    item = tables.messages.get_item(Key={"room": "lobby", "id": d["id"]})["Item"]
    assert item["body"] == '{"text":"hé","n":[1,null]}'
    assert item["sender"] == {"userId": "alice", "name": "Alice", "region": "us-east-1"}
    assert item["originRegion"] == "us-east-1"
    assert item["sentAt"] == d["sentAt"]
    assert int(item["expiresAt"]) >= ids.epoch_seconds() + 86400 - 5


def test_forwarded_event_from_another_region(chat: Any, posted: Any, tables: Any) -> None:
    join(chat, "c1")
    d = detail(origin="eu-west-1")
    assert chat.deliver(d)["delivered"] == 1
    assert posted("c1")[0]["sender"]["region"] == "eu-west-1"
    item = tables.messages.get_item(Key={"room": "lobby", "id": d["id"]})["Item"]
    assert item["originRegion"] == "eu-west-1"


def test_duplicate_event_is_delivered_once(chat: Any, posted: Any, emitted_metrics: Any) -> None:
    join(chat, "c1")
    d = detail()
    emitted_metrics()
    assert chat.deliver(d)["status"] == "delivered"
    assert chat.deliver(d) == {"status": "duplicate"}
    assert len(posted("c1")) == 1
    totals = emitted_metrics()
    assert totals["DuplicateEvents"] == 1
    assert totals["DeliveredMessages"] == 1


def test_empty_room_still_stores_history(chat: Any, tables: Any) -> None:
    d = detail(room="empty")
    assert chat.deliver(d)["delivered"] == 0
    assert "Item" in tables.messages.get_item(Key={"room": "empty", "id": d["id"]})


def test_gone_connection_records_are_deleted(
    chat: Any, stubbed_api: Stubber, items_of: Any, emitted_metrics: Any
) -> None:
    join(chat, "c1")
    chat.send("c1", {"action": "join", "room": "second"})
    assert len(items_of("c1")) == 3
    stubbed_api.add_client_error("post_to_connection", "GoneException", http_status_code=410)
    emitted_metrics()
    assert chat.deliver(detail())["gone"] == 1
    assert items_of("c1") == []
    totals = emitted_metrics()
    assert totals["GoneConnections"] == 1
    assert "DeliveredMessages" not in totals


def test_gone_orphan_membership_is_deleted(chat: Any, stubbed_api: Stubber, tables: Any) -> None:
    tables.connections.put_item(
        Item={"pk": "ROOM#lobby", "sk": "CONN#orphan", "connectionId": "orphan", "userId": "x"}
    )
    stubbed_api.add_client_error("post_to_connection", "GoneException", http_status_code=410)
    assert chat.deliver(detail())["gone"] == 1
    assert tables.connections.scan()["Items"] == []


def test_throttling_is_retried_with_backoff(
    chat: Any, stubbed_api: Stubber, sleeps: list[float], emitted_metrics: Any
) -> None:
    join(chat, "c1")
    d = detail(body="fixed")
    data = compact_json({"type": "message", **{k: v for k, v in d.items() if k != "originRegion"}})
    stubbed_api.add_client_error(
        "post_to_connection", "LimitExceededException", http_status_code=429
    )
    stubbed_api.add_client_error(
        "post_to_connection", "TooManyRequestsException", http_status_code=429
    )
    stubbed_api.add_response(
        "post_to_connection", {}, {"ConnectionId": "c1", "Data": data.encode()}
    )
    emitted_metrics()
    assert chat.deliver(d)["delivered"] == 1
    assert len(sleeps) == 2
    assert all(0 <= s <= 1.0 for s in sleeps)
    totals = emitted_metrics()
    assert totals["DeliveryRetries"] == 2 and totals["DeliveredMessages"] == 1


def test_persistent_throttling_is_bounded_and_counted_failed(
    chat: Any, stubbed_api: Stubber, sleeps: list[float], items_of: Any, emitted_metrics: Any
) -> None:
    join(chat, "c1")
    for _ in range(fanout.POST_ATTEMPTS):
        stubbed_api.add_client_error(
            "post_to_connection", "LimitExceededException", http_status_code=429
        )
    emitted_metrics()
    assert chat.deliver(detail())["failed"] == 1
    assert len(sleeps) == fanout.POST_ATTEMPTS - 1
    # exponential envelope: each delay is bounded by base * 2**(n-1)
    for n, delay in enumerate(sleeps, start=1):
        assert delay <= 0.05 * 2 ** (n - 1)
    assert len(items_of("c1")) == 2  # a failure is not a disconnect
    assert emitted_metrics()["FailedDeliveries"] == 1


def test_other_errors_fail_without_retry(
    chat: Any, stubbed_api: Stubber, sleeps: list[float], items_of: Any
) -> None:
    join(chat, "c1")
    stubbed_api.add_client_error("post_to_connection", "ForbiddenException", http_status_code=403)
    assert chat.deliver(detail())["failed"] == 1
    assert sleeps == []
    assert len(items_of("c1")) == 2


class FakeManagementApi:
    """Thread-safe stand-in for the @connections client with per-connection scripts."""

    def __init__(self, scripts: dict[str, list[BaseException | None]]) -> None:
        self.scripts = scripts
        self.calls: dict[str, int] = {}
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict[str, Any]:
        with self.lock:
            self.calls[ConnectionId] = self.calls.get(ConnectionId, 0) + 1
            self.threads.add(threading.current_thread().name)
            script = self.scripts.get(ConnectionId, [])
            outcome = script.pop(0) if script else None
        if outcome is not None:
            raise outcome
        return {}


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


def test_many_members_paged_and_concurrent_with_mixed_outcomes(
    chat: Any, monkeypatch: pytest.MonkeyPatch, items_of: Any, emitted_metrics: Any
) -> None:
    members = [f"c{i:02d}" for i in range(23)]
    for cid in members:
        join(chat, cid)
    scripts: dict[str, list[BaseException | None]] = {
        "c00": [client_error("GoneException", 410)],
        "c01": [client_error("GoneException", 410)],
        "c02": [client_error("ThrottlingException", 429), None],
        "c03": [EndpointConnectionError(endpoint_url=CALLBACK), None],
        "c04": [client_error("InternalServerErrorException", 500)],
        "c05": [ReadTimeoutError(endpoint_url=CALLBACK)],
    }
    fake = FakeManagementApi(scripts)
    monkeypatch.setattr(clients, "management_api", lambda: fake)
    monkeypatch.setattr(store, "FANOUT_PAGE_SIZE", 5)
    ddb = clients.dynamodb()
    real_query = ddb.query
    fanout_queries: list[dict[str, Any]] = []

    def counting_query(**kwargs: Any) -> Any:
        if kwargs.get("ProjectionExpression") == "connectionId":
            fanout_queries.append(kwargs)
        return real_query(**kwargs)

    monkeypatch.setattr(ddb, "query", counting_query)
    emitted_metrics()
    result = chat.deliver(detail())
    assert result == {"status": "delivered", "delivered": 19, "gone": 2, "failed": 2}
    assert len(fanout_queries) == 5  # 23 members, 5 per page
    assert all(q["Limit"] == 5 for q in fanout_queries)
    assert set(fake.calls) == set(members)
    assert fake.calls["c02"] == fake.calls["c03"] == 2 and fake.calls["c05"] == 1
    assert items_of("c00") == [] and items_of("c01") == []
    assert len(fake.threads) > 1  # posted from the pool
    totals = emitted_metrics()
    assert totals["DeliveredMessages"] == 19
    assert totals["GoneConnections"] == 2
    assert totals["FailedDeliveries"] == 2
    assert totals["DeliveryRetries"] == 2


def test_failed_cleanup_does_not_stop_the_fanout(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cid in ("c1", "c2"):
        join(chat, cid)
    fake = FakeManagementApi({"c1": [client_error("GoneException", 410)]})
    monkeypatch.setattr(clients, "management_api", lambda: fake)

    def broken_cleanup(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("dynamodb down")

    monkeypatch.setattr(store, "delete_connection_records", broken_cleanup)
    assert chat.deliver(detail()) == {"status": "delivered", "delivered": 1, "gone": 1, "failed": 0}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "text",
        {},
        {"room": "lobby"},
        {**detail(), "room": "bad room"},
        {**detail(), "id": "not-an-id"},
        {**detail(), "sender": "alice"},
        {**detail(), "sender": {"name": "x", "region": "us-east-1"}},
        {**detail(), "sender": {"userId": "a", "region": ""}},
        {**detail(), "sender": {"userId": "a", "name": 5, "region": "r"}},
        {**detail(), "originRegion": 5},
        {**detail(), "sentAt": None},
        {k: v for k, v in detail().items() if k != "body"},
        {**detail(), "body": "\ud800"},
    ],
)
def test_malformed_events_are_dropped_without_raising(
    chat: Any, bad: Any, tables: Any, emitted_metrics: Any
) -> None:
    emitted_metrics()
    assert chat.deliver(bad) == {"status": "malformed"}
    assert tables.messages.scan()["Items"] == []
    assert emitted_metrics()["MalformedEvents"] == 1


def test_other_detail_types_and_non_events_are_ignored(
    chat: Any, context: Any, emitted_metrics: Any
) -> None:
    emitted_metrics()
    assert chat.deliver(detail(), detail_type="chat.other") == {"status": "ignored"}
    assert event_bus_message_handler.handler({}, context) == {"status": "ignored"}
    assert event_bus_message_handler.handler([], context) == {"status": "ignored"}  # type: ignore[arg-type]
    assert emitted_metrics()["IgnoredEvents"] == 3


def test_history_write_failure_raises_for_eventbridge_retry(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_put(*args: Any, **kwargs: Any) -> bool:
        raise client_error("ProvisionedThroughputExceededException", 400)

    monkeypatch.setattr(store, "put_message", failing_put)
    with pytest.raises(ClientError):
        chat.deliver(detail())


def test_member_query_failure_after_write_is_not_raised(
    chat: Any, monkeypatch: pytest.MonkeyPatch, tables: Any, emitted_metrics: Any
) -> None:
    def broken_pages(*args: Any, **kwargs: Any) -> Iterator[list[str]]:
        raise client_error("InternalServerError", 500)

    monkeypatch.setattr(store, "iter_room_connection_ids", broken_pages)
    d = detail()
    emitted_metrics()
    assert chat.deliver(d) == {"status": "fanout_error"}
    assert "Item" in tables.messages.get_item(Key={"room": "lobby", "id": d["id"]})
    assert emitted_metrics()["FanoutErrors"] == 1


def test_management_client_configuration(aws: None) -> None:
    client = clients.management_api()
    assert client.meta.endpoint_url == CALLBACK
    assert client.meta.config.max_pool_connections == 4  # FANOUT_CONCURRENCY
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert clients.management_api() is client  # once per container
    clients.reset()
    assert clients.management_api() is not client


def test_endpoint_override_is_honoured(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", "http://127.0.0.1:4567")
    clients.reset()
    assert clients.dynamodb().meta.endpoint_url == "http://127.0.0.1:4566"
    assert clients.events().meta.endpoint_url == "http://127.0.0.1:4567"
    clients.reset()
