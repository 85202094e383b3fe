"""Client budgets (issue 8): request rates, the room cap, long-poll leases.

Time is never waited for: the rate limiter's and the leases' clocks are
replaced by values computed when each test runs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from botocore.stub import Stubber

from multiregion_chat.runtime.delivery import long_poll
from multiregion_chat.runtime.handlers import client_message_handler
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.quota import client_budget
from multiregion_chat.runtime.quota.client_budget import Bucket
from multiregion_chat.runtime.store import connection_store

from .conftest import authorizer_context


@pytest.fixture
def frozen_ms(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rate limiter's clock (epoch ms), set from the real one and moved by the test."""
    now = [int(time.time() * 1000)]
    monkeypatch.setattr(client_budget, "clock_ms", lambda: now[0])
    return now


def frame_from(chat: Any, connection_id: str, user: str, frame: dict[str, Any]) -> dict[str, Any]:
    """A client frame with the ``$connect`` authorizer context API Gateway passes along."""
    event = {
        "requestContext": {
            "routeKey": frame.get("action", "$default"),
            "eventType": "MESSAGE",
            "connectionId": connection_id,
            "requestId": "req-1",
            "stage": "test",
            "authorizer": authorizer_context(user),
        },
        "body": json.dumps(frame),
        "isBase64Encoded": False,
    }
    reply = json.loads(client_message_handler.handler(event, chat.context)["body"])
    assert isinstance(reply, dict)
    return reply


# --- the bucket arithmetic ------------------------------------------------------------------


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = Bucket(rate=10, burst=3)
    now = int(time.time() * 1000)
    tat: int | None = None
    for _ in range(3):
        tat, wait = bucket.take(tat, now)
        assert wait == 0
    refused, wait = bucket.take(tat, now)
    assert refused == tat and wait == 100  # one interval at 10/s
    tat, wait = bucket.take(tat, now + wait)
    assert wait == 0
    # a long pause refills the bucket, but never beyond its burst
    later = now + 60_000
    tat = None if tat is None else tat
    for _ in range(3):
        tat, wait = bucket.take(tat, later)
        assert wait == 0
    assert bucket.take(tat, later)[1] > 0


# --- WebSocket frames -----------------------------------------------------------------------


def test_frames_over_the_connection_budget_are_refused_and_the_connection_stays(
    chat: Any, tables: Any, frozen_ms: list[int], published: list[Any], monkeypatch: Any
) -> None:
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "5")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    assert frame_from(chat, "c1", "alice", {"action": "join", "room": "lobby"})["type"] == "joined"
    acks = [
        frame_from(
            chat, "c1", "alice", {"action": "send", "room": "lobby", "body": n, "ref": str(n)}
        )
        for n in range(6)
    ]
    assert [a["type"] for a in acks[:4]] == ["ack"] * 4  # 5 with the join
    refused = acks[4]
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "rate_limited", "4")
    assert refused["retryAfterMs"] == 100  # 10/s by default
    assert acks[5]["code"] == "rate_limited"
    messages = [e for e in published if e.detail_type == "chat.message"]
    assert [e.detail["body"] for e in messages] == [0, 1, 2, 3]  # nothing published over budget
    # the connection stays: after the hint, it may send again
    frozen_ms[0] += refused["retryAfterMs"]
    reply = frame_from(chat, "c1", "alice", {"action": "send", "room": "lobby", "body": "again"})
    assert reply["type"] == "ack"


def test_invalid_frames_and_pings_count_too(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "2")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    assert frame_from(chat, "c1", "alice", {"action": "nope"})["code"] == "unknown_action"
    assert frame_from(chat, "c1", "alice", {"action": "ping"})["type"] == "pong"
    assert frame_from(chat, "c1", "alice", {"action": "nope"})["code"] == "rate_limited"
    assert frame_from(chat, "c1", "alice", {"action": "ping"})["code"] == "rate_limited"


def test_the_user_budget_spans_connections_and_http(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    monkeypatch.setenv("USER_BURST_LIMIT", "4")
    runtime_settings.reset()
    for connection_id in ("c1", "c2"):
        chat.connect(connection_id, "alice")
    assert frame_from(chat, "c1", "alice", {"action": "ping"})["type"] == "pong"
    assert frame_from(chat, "c2", "alice", {"action": "ping"})["type"] == "pong"
    assert chat.http("GET", user="alice")["statusCode"] == 200
    assert chat.http("POST", user="alice", body='{"body": 1}')["statusCode"] == 202
    # all four of alice's requests are spent, whichever way they came
    assert frame_from(chat, "c2", "alice", {"action": "ping"})["code"] == "rate_limited"
    refused = chat.http("GET", user="alice")
    assert refused["statusCode"] == 429
    assert refused["json"]["code"] == "rate_limited"
    assert refused["json"]["retryAfterMs"] == 50  # 20/s by default
    assert refused["headers"]["retry-after"] == "1"
    # another user is not affected
    chat.connect("c3", "bob")
    assert frame_from(chat, "c3", "bob", {"action": "ping"})["type"] == "pong"


def test_concurrent_frames_never_exceed_the_budget(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    """Threads stand for containers: the conditional write lets exactly ``burst`` through."""
    monkeypatch.setenv("USER_BURST_LIMIT", "7")
    runtime_settings.reset()
    results: list[bool] = []
    lock = threading.Lock()
    # DynamoDB applies each request to an item atomically; moto does not lock, so
    # each call is made atomic here. Reads and writes of different threads still
    # interleave freely between calls, which is the race the condition must catch.
    ddb = aws_clients.dynamodb()
    api_lock = threading.Lock()
    for name in ("get_item", "update_item"):
        real_call = getattr(ddb, name)

        def atomic(real_call: Any = real_call, **kwargs: Any) -> Any:
            with api_lock:
                return real_call(**kwargs)

        monkeypatch.setattr(ddb, name, atomic)

    def charge() -> None:
        decision = client_budget.charge("alice")
        with lock:
            results.append(decision.allowed)

    threads = [threading.Thread(target=charge) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 20
    assert results.count(True) <= 7  # lost races count as refused, never as extra
    frozen_ms[0] += 60_000  # the bucket refilled
    assert sum(client_budget.charge("alice").allowed for _ in range(10)) == 7


def test_a_lost_race_reads_again(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    """Another container wrote between our read and our write: the condition fails, we
    read again, and each request is spent exactly once."""
    ddb = aws_clients.dynamodb()
    assert client_budget.charge("alice").allowed
    key = {"pk": {"S": "RATE#alice"}, "sk": {"S": "RATE"}}
    stale = ddb.get_item(TableName=runtime_settings.get_settings().connections_table, Key=key)
    assert client_budget.charge("alice").allowed  # the other container's request
    real_get = ddb.get_item
    replies = [stale]
    monkeypatch.setattr(ddb, "get_item", lambda **kw: replies.pop() if replies else real_get(**kw))
    assert client_budget.charge("alice").allowed
    assert replies == []  # the stale read was used, and lost
    item = tables.connections.get_item(Key={"pk": "RATE#alice", "sk": "RATE"})["Item"]
    assert int(item["u"]) == frozen_ms[0] + 3 * 50  # three requests at 20/s


def test_idle_connection_entries_are_pruned(chat: Any, tables: Any, frozen_ms: list[int]) -> None:
    for connection_id in ("a", "b", "c"):
        assert client_budget.charge("alice", connection_id).allowed
    frozen_ms[0] += 10_000
    assert client_budget.charge("alice", "d").allowed
    item = tables.connections.get_item(Key={"pk": "RATE#alice", "sk": "RATE"})["Item"]
    assert sorted(k for k in item if k.startswith("c:")) == ["c:d"]
    assert int(item["expiresAt"]) > frozen_ms[0] // 1000


def test_the_limiter_fails_open_when_dynamodb_does(
    chat: Any, frozen_ms: list[int], emitted_metrics: Any
) -> None:
    with Stubber(aws_clients.dynamodb()) as stub:
        stub.add_client_error("get_item", "ProvisionedThroughputExceededException")
        assert client_budget.charge("alice", "c1").allowed


def test_a_refused_frame_writes_nothing(chat: Any, tables: Any, frozen_ms: list[int]) -> None:
    for _ in range(client_budget.user_bucket().burst):
        assert client_budget.charge("alice").allowed
    with Stubber(aws_clients.dynamodb()) as stub:
        item = tables.connections.get_item(Key={"pk": "RATE#alice", "sk": "RATE"})["Item"]
        stub.add_response(
            "get_item", {"Item": {"u": {"N": str(item["u"])}, "pk": {"S": "RATE#alice"}}}
        )
        decision = client_budget.charge("alice")  # a put/update would fail the stubber
        stub.assert_no_pending_responses()
    assert not decision.allowed


# --- rooms per connection -------------------------------------------------------------------


def test_join_beyond_the_room_cap_is_refused_and_memberships_stay(
    chat: Any, tables: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("MAX_ROOMS_PER_CONNECTION", "3")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    for room in ("r1", "r2", "r3"):
        assert chat.send("c1", {"action": "join", "room": room})["type"] == "joined"
    refused = chat.send("c1", {"action": "join", "room": "r4", "ref": "x"})
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "too_many_rooms", "x")
    assert "at most 3 rooms" in refused["message"]
    # re-joining a room it is in is fine; the others still work
    assert chat.send("c1", {"action": "join", "room": "r2"})["type"] == "joined"
    assert chat.send("c1", {"action": "send", "room": "r3", "body": "hi"})["type"] == "ack"
    assert chat.send("c1", {"action": "send", "room": "r4", "body": "hi"})["code"] == "not_member"
    # leaving makes room again
    assert chat.send("c1", {"action": "leave", "room": "r1"})["type"] == "left"
    assert chat.send("c1", {"action": "join", "room": "r4"})["type"] == "joined"


# --- long-poll leases -----------------------------------------------------------------------


@pytest.fixture
def lease_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [time.time()]
    monkeypatch.setattr(long_poll, "clock", lambda: now[0])
    return now


def test_leases_cap_concurrent_polls_and_a_crashed_one_expires(
    chat: Any, tables: Any, lease_clock: list[float], monkeypatch: Any
) -> None:
    monkeypatch.setenv("MAX_LONG_POLLS_PER_USER", "2")
    runtime_settings.reset()
    first = long_poll.acquire("alice", 21.5)
    second = long_poll.acquire("alice", 21.5)
    assert first is not None and second is not None and first.slot != second.slot
    assert long_poll.acquire("alice", 21.5) is None  # the cap
    assert long_poll.acquire("bob", 21.5) is not None  # per user
    long_poll.release(first)
    third = long_poll.acquire("alice", 21.5)
    assert third is not None and third.slot == first.slot
    # `second` and `third` crash without releasing: once their leases run out, the
    # slots are free again (the condition does not wait for DynamoDB's TTL)
    lease_clock[0] += 21.5 + 2
    assert long_poll.acquire("alice", 21.5) is not None
    assert long_poll.acquire("alice", 21.5) is not None
    # the crashed poll's late release does not free the slot its successor holds
    long_poll.release(second)
    assert long_poll.acquire("alice", 21.5) is None


def test_a_long_poll_over_the_cap_is_429_and_releases_its_lease(
    chat: Any, tables: Any, lease_clock: list[float], monkeypatch: Any
) -> None:
    from multiregion_chat.runtime.handlers import http_handler

    monkeypatch.setenv("MAX_LONG_POLLS_PER_USER", "2")
    runtime_settings.reset()
    monkeypatch.setattr(http_handler, "sleep", lambda seconds: None)
    held = [long_poll.acquire("alice", 21.5), long_poll.acquire("alice", 21.5)]
    refused = chat.http("GET", query={"wait": "20"})
    assert refused["statusCode"] == 429
    assert refused["json"]["code"] == "rate_limited"
    assert "long polls" in refused["json"]["message"]
    assert refused["headers"]["retry-after"] == "1"
    assert chat.http("GET", query={"wait": "0"})["statusCode"] == 200  # no lease needed
    for lease in held:
        assert lease is not None
        long_poll.release(lease)
    # a poll that ends (here: with nothing) gives its lease back
    clock = [1000.0]
    monkeypatch.setattr(http_handler, "monotonic", lambda: clock[0])
    monkeypatch.setattr(http_handler, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    for _ in range(3):
        assert chat.http("GET", query={"wait": "20"})["statusCode"] == 200
    items = tables.connections.scan()["Items"]
    assert [i for i in items if i["pk"].startswith("POLL#")] == []


def test_the_http_client_waits_as_a_429_tells() -> None:
    from multiregion_chat.clients.http_client import retry_after_seconds

    assert retry_after_seconds({"code": "rate_limited", "retryAfterMs": 2500}) == 2.5
    assert retry_after_seconds({"retryAfterMs": 50}) == 1.0  # never spins
    assert retry_after_seconds({"retryAfterMs": 10**9}) == 30.0
    assert retry_after_seconds({"retryAfterMs": True}) == 1.0
    assert retry_after_seconds("Too Many Requests") == 1.0


def test_the_room_cap_holds_on_the_write_when_joins_race(chat: Any, tables: Any) -> None:
    """Two joins of one connection that both passed the early check: the META write's
    condition lets only the one that fits in."""
    chat.connect("c1", "alice")
    for room in ("r1", "r2"):
        connection_store.join_room("c1", room, max_rooms=3)
    connection_store.join_room("c1", "r3", max_rooms=3)  # the racing join that won
    with pytest.raises(connection_store.RoomCapReachedError):
        connection_store.join_room("c1", "r4", max_rooms=3)  # read 2 rooms, writes after r3
    connection_store.join_room("c1", "r2", max_rooms=3)  # re-joining is always allowed
    with pytest.raises(connection_store.UnknownConnectionError):
        connection_store.join_room("ghost", "r1", max_rooms=3)
    meta = tables.connections.get_item(Key={"pk": "CONN#c1", "sk": "META"})["Item"]
    assert meta["rooms"] == {"r1", "r2", "r3"}


def test_an_over_budget_numbered_send_never_reaches_the_sequence(
    chat: Any, tables: Any, frozen_ms: list[int], items_of: Any, monkeypatch: Any
) -> None:
    """Charged before it is read (issue 18, item 2): an invalid numbered send over budget
    neither waits for its turn nor records a rejection, and a valid one writes no SEQ."""
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "1")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    assert frame_from(chat, "c1", "alice", {"action": "ping"})["type"] == "pong"
    turns: list[Any] = []
    sequence_store = client_message_handler.sequence_store
    monkeypatch.setattr(sequence_store, "reject", lambda *a, **k: turns.append(a))
    monkeypatch.setattr(sequence_store, "accept", lambda *a, **k: turns.append(a))
    bad = {"action": "send", "seq": 1000, "room": "bad room!", "body": 1, "ref": "b"}
    reply = frame_from(chat, "c1", "alice", bad)
    assert (reply["code"], reply["ref"]) == ("rate_limited", "b")
    reply = frame_from(chat, "c1", "alice", {"action": "send", "seq": 1, "room": "r", "body": 1})
    assert reply["code"] == "rate_limited"
    assert turns == []
    assert not [item for item in items_of("c1") if item["sk"] == "SEQ"]


def test_a_frame_is_decoded_once(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    """A numbered send reads its ``seq`` from the one decode, also when it is refused."""
    chat.connect("c1", "alice")
    assert frame_from(chat, "c1", "alice", {"action": "join", "room": "lobby"})["type"] == "joined"
    decodes: list[Any] = []
    real = client_message_handler.frames.decode_payload

    def counting(*args: Any, **kwargs: Any) -> Any:
        decodes.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(client_message_handler.frames, "decode_payload", counting)
    monkeypatch.setattr("multiregion_chat.runtime.protocol.frames.decode_payload", counting)
    ack = frame_from(chat, "c1", "alice", {"action": "send", "seq": 1, "room": "lobby", "body": 1})
    assert (ack["type"], ack["seq"]) == ("ack", 1)
    refused = frame_from(chat, "c1", "alice", {"action": "send", "seq": 2, "room": "lobby"})
    assert refused["code"] == "bad_request"
    assert len(decodes) == 2


def test_an_oversized_frame_is_charged_and_refused_unread(
    chat: Any, tables: Any, frozen_ms: list[int], monkeypatch: Any
) -> None:
    monkeypatch.setenv("CONNECTION_BURST_LIMIT", "1")
    runtime_settings.reset()
    chat.connect("c1", "alice")
    huge = {"action": "send", "room": "lobby", "body": "x" * 200_000, "ref": "h"}
    reply = frame_from(chat, "c1", "alice", huge)
    assert reply["code"] == "too_large" and "ref" not in reply  # never read, so no ref
    assert frame_from(chat, "c1", "alice", {"action": "ping"})["code"] == "rate_limited"
