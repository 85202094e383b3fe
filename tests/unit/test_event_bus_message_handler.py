"""EventBusMessageHandler: history write (dedup), fan-out, 410 cleanup, retries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from multiregion_chat.runtime.auth import token_expiry
from multiregion_chat.runtime.delivery import engine
from multiregion_chat.runtime.handlers import event_bus_message_handler
from multiregion_chat.runtime.platform import aws_clients
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.protocol.json_codec import compact_json
from multiregion_chat.runtime.store import connection_store, history_store, room_store
from tests.unit.connections_server import (
    FORBIDDEN,
    GONE,
    SERVER_ERROR,
    THROTTLED,
    Answer,
    ConnectionsServer,
)


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


def nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def clock_behind(monkeypatch: pytest.MonkeyPatch, behind_ms: int) -> None:
    """The handler's clock ``behind_ms`` behind: events minted now are in its future.

    (Minting ids in the future instead would move this process's id generator,
    which never goes back, for every later test.)"""
    real_now = ids.now_ms
    monkeypatch.setattr(event_bus_message_handler, "now_ms", lambda: real_now() - behind_ms)


def test_events_within_the_clock_skew_and_deep_bodies_up_to_the_limit_are_delivered(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock_behind(monkeypatch, 30_000)  # BUS_CLOCK_SKEW_SECONDS is 60
    assert chat.deliver(detail())["status"] == "delivered"
    assert chat.deliver(detail(body=nested(31)))["status"] == "delivered"
    assert chat.deliver(detail(origin="eu-west-1"))["status"] == "delivered"
    assert len(tables.messages.scan()["Items"]) == 3


def test_events_from_the_future_are_dropped(
    chat: Any, tables: Any, monkeypatch: pytest.MonkeyPatch, emitted_metrics: Any
) -> None:
    # A forged id far ahead would sort after every genuine message (``after``
    # cursors would skip them); a forged presence ``at`` would make the user's
    # genuine later "left" stale forever.
    clock_behind(monkeypatch, 90_000)
    emitted_metrics()
    assert chat.deliver(detail()) == {"status": "malformed"}
    presence = {
        "originRegion": "eu-west-1",
        "room": "lobby",
        "event": "joined",
        "member": {"userId": "mallory", "region": "eu-west-1"},
        "at": ids.now_ms(),
    }
    assert chat.deliver(presence, "chat.presence") == {"status": "malformed"}
    assert emitted_metrics()["MalformedEvents"] == 2
    assert tables.messages.scan()["Items"] == []


def join(chat: Any, cid: str, room: str = "lobby", user: str | None = None) -> None:
    chat.connect(cid, user or f"user-{cid}")
    assert chat.send(cid, {"action": "join", "room": room})["type"] == "joined"


def test_delivers_message_frame_to_every_member(chat: Any, posted: Any, tables: Any) -> None:
    for cid in ("c1", "c2", "c3"):
        join(chat, cid)
    join(chat, "c-other", room="other")
    d = detail(body={"text": "hé", "n": [1, None]})
    result = chat.deliver(d)
    assert {k: result[k] for k in ("status", "delivered", "gone", "failed")} == {
        "status": "delivered",
        "delivered": 3,
        "gone": 0,
        "failed": 0,
    }
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


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PostToConnection",
    )


def test_gone_connection_records_are_deleted(
    chat: Any, mgmt: ConnectionsServer, items_of: Any, emitted_metrics: Any
) -> None:
    join(chat, "c1")
    chat.send("c1", {"action": "join", "room": "second"})
    assert len(items_of("c1")) == 3
    mgmt.queue(GONE)
    emitted_metrics()
    assert chat.deliver(detail())["gone"] == 1
    assert items_of("c1") == []
    totals = emitted_metrics()
    assert totals["GoneConnections"] == 1
    assert "DeliveredMessages" not in totals


def test_gone_orphan_membership_is_deleted(chat: Any, mgmt: ConnectionsServer, tables: Any) -> None:
    tables.connections.put_item(
        Item={"pk": "ROOM#lobby", "sk": "CONN#orphan", "connectionId": "orphan", "userId": "x"}
    )
    mgmt.queue(GONE)
    assert chat.deliver(detail())["gone"] == 1
    assert tables.connections.scan()["Items"] == []


def test_throttling_is_retried_with_backoff(
    chat: Any, mgmt: ConnectionsServer, sleeps: list[float], emitted_metrics: Any
) -> None:
    join(chat, "c1")
    d = detail(body="fixed")
    data = compact_json({"type": "message", **{k: v for k, v in d.items() if k != "originRegion"}})
    mgmt.script("c1", THROTTLED, Answer(429, "TooManyRequestsException"))
    emitted_metrics()
    assert chat.deliver(d)["delivered"] == 1
    assert len(sleeps) == 2
    assert all(0 <= s <= 1.0 for s in sleeps)
    posts = mgmt.posts("c1")
    assert [p.status for p in posts[-3:]] == [429, 429, 200]
    assert posts[-1].body == data.encode()
    totals = emitted_metrics()
    assert totals["DeliveryRetries"] == 2 and totals["DeliveredMessages"] == 1


def test_persistent_throttling_is_bounded_and_counted_failed(
    chat: Any, mgmt: ConnectionsServer, sleeps: list[float], items_of: Any, emitted_metrics: Any
) -> None:
    join(chat, "c1")
    mgmt.script("c1", then=THROTTLED)
    emitted_metrics()
    assert chat.deliver(detail())["failed"] == 1
    assert len(mgmt.posts("c1")) == engine.POST_ATTEMPTS
    assert len(sleeps) == engine.POST_ATTEMPTS - 1
    # exponential envelope: each delay is bounded by base * 2**(n-1)
    for n, delay in enumerate(sleeps, start=1):
        assert delay <= 0.05 * 2 ** (n - 1)
    assert len(items_of("c1")) == 2  # a failure is not a disconnect
    assert emitted_metrics()["FailedDeliveries"] == 1


def test_other_errors_fail_without_retry(
    chat: Any, mgmt: ConnectionsServer, sleeps: list[float], items_of: Any
) -> None:
    join(chat, "c1")
    mgmt.queue(FORBIDDEN)
    assert chat.deliver(detail())["failed"] == 1
    assert sleeps == []
    assert len(items_of("c1")) == 2


def test_many_members_paged_and_concurrent_with_mixed_outcomes(
    chat: Any,
    mgmt: ConnectionsServer,
    monkeypatch: pytest.MonkeyPatch,
    items_of: Any,
    emitted_metrics: Any,
) -> None:
    members = [f"c{i:02d}" for i in range(23)]
    for cid in members:
        join(chat, cid)
    mgmt.reset()
    mgmt.script("c00", GONE)
    mgmt.script("c01", GONE)
    mgmt.script("c02", Answer(429, "ThrottlingException"))
    mgmt.script("c03", Answer(400, "LimitExceededException:http://internal"))
    mgmt.script("c04", SERVER_ERROR)
    mgmt.script("c05", Answer(400, "BadRequestException"))
    monkeypatch.setattr(room_store, "FANOUT_PAGE_SIZE", 5)
    ddb = aws_clients.dynamodb()
    real_query = ddb.query
    fanout_queries: list[dict[str, Any]] = []

    def counting_query(**kwargs: Any) -> Any:
        if kwargs.get("ProjectionExpression") == "connectionId, tokenExpiresAt":
            fanout_queries.append(kwargs)
        return real_query(**kwargs)

    monkeypatch.setattr(ddb, "query", counting_query)
    emitted_metrics()
    result = engine.deliver(
        "lobby",
        b"{}",
        pages=token_expiry.live_connection_ids("lobby"),
        on_gone=transitions.cleanup_gone,
        concurrency=4,
    )
    assert (result.delivered, result.gone, result.failed) == (19, 2, 2)
    assert sorted(result.failed_ids) == ["c04", "c05"]
    assert len(fanout_queries) == 5  # 23 members, 5 per page
    assert all(q["Limit"] == 5 for q in fanout_queries)
    calls = Counter(p.connection_id for p in mgmt.posts())
    assert set(calls) == set(members)
    assert calls["c02"] == calls["c03"] == 2 and calls["c05"] == 1
    assert result.retries == 2 and result.throttled == 2
    assert items_of("c00") == [] and items_of("c01") == []


def test_handler_counts_outcomes_as_metrics(
    chat: Any, mgmt: ConnectionsServer, emitted_metrics: Any
) -> None:
    for cid in ("c1", "c2", "c3", "c4"):
        join(chat, cid)
    mgmt.script("c1", GONE)
    mgmt.script("c2", THROTTLED)
    mgmt.script("c3", SERVER_ERROR)
    emitted_metrics()
    assert chat.deliver(detail())["delivered"] == 2
    totals = emitted_metrics()
    assert totals["DeliveredMessages"] == 2
    assert totals["GoneConnections"] == 1
    assert totals["FailedDeliveries"] == 1
    assert totals["DeliveryRetries"] == 1


def test_members_are_posted_to_concurrently(chat: Any, mgmt: ConnectionsServer) -> None:
    for cid in ("c1", "c2", "c3"):
        join(chat, cid)
    mgmt.reset()
    mgmt.hold_until(3)  # no answer until all three posts are in flight at once
    assert chat.deliver(detail())["delivered"] == 3
    assert mgmt.max_in_flight == 3


def test_failed_cleanup_does_not_stop_the_fanout(
    chat: Any, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cid in ("c1", "c2"):
        join(chat, cid)
    mgmt.script("c1", GONE)

    def broken_cleanup(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("dynamodb down")

    monkeypatch.setattr(connection_store, "delete_connection_records", broken_cleanup)
    result = chat.deliver(detail())
    assert (result["delivered"], result["gone"], result["failed"]) == (1, 1, 0)


@pytest.mark.parametrize(
    "bad",
    [
        # Callables: every detail (and its id's time) is built when the test runs.
        lambda: None,
        lambda: "text",
        lambda: {},
        lambda: {"room": "lobby"},
        lambda: {**detail(), "room": "bad room"},
        lambda: {**detail(), "id": "not-an-id"},
        lambda: {**detail(), "sender": "alice"},
        lambda: {**detail(), "sender": {"name": "x", "region": "us-east-1"}},
        lambda: {**detail(), "sender": {"userId": "a", "region": ""}},
        lambda: {**detail(), "sender": {"userId": "a", "name": 5, "region": "us-east-1"}},
        lambda: {**detail(), "originRegion": 5},
        lambda: {**detail(), "sentAt": None},
        lambda: {k: v for k, v in detail().items() if k != "body"},
        lambda: {**detail(), "body": "\ud800"},
        # Forged origins and identities (issue 8): like a client frame or a token.
        lambda: detail(origin="xx-nowhere-1"),  # not a configured region
        lambda: {**detail(), "originRegion": "eu-west-1"},  # sender.region differs
        lambda: {**detail(), "sender": {"userId": "a" * 129, "region": "us-east-1"}},
        lambda: {**detail(), "sender": {"userId": "al\nice", "region": "us-east-1"}},
        lambda: {**detail(), "sender": {"userId": "a", "name": "\x1b[31m", "region": "us-east-1"}},
        lambda: {**detail(), "sender": {"userId": "a", "name": "n" * 65, "region": "us-east-1"}},
        lambda: {**detail(), "body": float("inf")},
        lambda: {**detail(), "body": float("nan")},
        lambda: {**detail(), "body": nested(32)},  # the frame's depth limit, plus one
    ],
)
def test_malformed_events_are_dropped_without_raising(
    chat: Any, bad: Callable[[], Any], tables: Any, emitted_metrics: Any
) -> None:
    emitted_metrics()
    assert chat.deliver(bad()) == {"status": "malformed"}
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

    monkeypatch.setattr(history_store, "put_message", failing_put)
    with pytest.raises(ClientError):
        chat.deliver(detail())


def test_member_query_failure_after_write_is_not_raised(
    chat: Any, monkeypatch: pytest.MonkeyPatch, tables: Any, emitted_metrics: Any
) -> None:
    def broken_pages(*args: Any, **kwargs: Any) -> Iterator[list[str]]:
        raise client_error("InternalServerError", 500)

    monkeypatch.setattr(room_store, "iter_room_connections", broken_pages)
    d = detail()
    emitted_metrics()
    assert chat.deliver(d) == {"status": "fanout_error"}
    assert "Item" in tables.messages.get_item(Key={"room": "lobby", "id": d["id"]})
    assert emitted_metrics()["FanoutErrors"] == 1


def test_endpoint_override_is_honoured(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", "http://127.0.0.1:4567")
    aws_clients.reset()
    assert aws_clients.dynamodb().meta.endpoint_url == "http://127.0.0.1:4566"
    assert aws_clients.events().meta.endpoint_url == "http://127.0.0.1:4567"
    aws_clients.reset()
