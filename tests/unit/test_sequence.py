"""Numbered sends (``seq``): order, retries, gaps, refusals, clock skew
(runtime.store.sequence_store)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from multiregion_chat.runtime.platform import aws_clients, bus
from multiregion_chat.runtime.protocol import ids
from multiregion_chat.runtime.store import sequence_store

Published = list[dict[str, Any]]


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Published:
    """Every ``chat.message`` put on the bus, in the order the puts happened."""
    recorded: Published = []
    lock = threading.Lock()

    def record(detail_type: str, detail: dict[str, Any]) -> None:
        with lock:
            if detail_type == bus.MESSAGE_DETAIL_TYPE:
                recorded.append(detail)

    monkeypatch.setattr(bus, "publish", record)
    return recorded


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The sequence's waits on a fake clock: sleeping advances it, nothing really sleeps."""
    now = [0.0]

    def advance(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(sequence_store, "monotonic", lambda: now[0])
    monkeypatch.setattr(sequence_store, "sleep", advance)
    return now


@pytest.fixture
def member(chat: Any) -> str:
    chat.connect("c1", "alice", "Alice")
    assert chat.send("c1", {"action": "join", "room": "lobby"})["type"] == "joined"
    return "c1"


def send(chat: Any, connection: str, seq: Any, text: str, **extra: Any) -> dict[str, Any]:
    frame = {"action": "send", "room": "lobby", "body": text, "seq": seq, "ref": f"r{seq}"}
    return dict(chat.send(connection, {**frame, **extra}))


def test_numbered_sends_are_acked_with_their_seq_and_rising_ids(
    chat: Any, member: str, published: Published
) -> None:
    acks = [send(chat, member, seq, f"m{seq}") for seq in (1, 2, 3)]
    assert [a["type"] for a in acks] == ["ack"] * 3
    assert [a["seq"] for a in acks] == [1, 2, 3]
    assert [a["ref"] for a in acks] == ["r1", "r2", "r3"]
    message_ids = [a["id"] for a in acks]
    assert message_ids == sorted(message_ids) and len(set(message_ids)) == 3
    assert [p["body"] for p in published] == ["m1", "m2", "m3"]
    assert [p["id"] for p in published] == message_ids


def test_a_seq_that_comes_early_waits_then_reports_the_gap(
    chat: Any, member: str, published: Published, clock: list[float]
) -> None:
    reply = send(chat, member, 3, "m3")
    assert reply["type"] == "error" and reply["code"] == "sequence_gap"
    assert reply["expected"] == 1 and reply["ref"] == "r3"
    assert clock[0] * 1000 >= 3000  # waited SEQUENCE_WAIT_MS (the default), then gave up
    assert published == []
    # The connection is fine: the sender resends from the expected seq, in order.
    assert [send(chat, member, seq, f"m{seq}")["type"] for seq in (1, 2, 3)] == ["ack"] * 3
    assert [p["body"] for p in published] == ["m1", "m2", "m3"]


def test_the_gap_wait_is_a_setting(
    chat: Any, member: str, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEQUENCE_WAIT_MS", "0")
    aws_clients.reset()
    reply = send(chat, member, 2, "m2")
    assert reply["code"] == "sequence_gap" and clock[0] == 0


def test_a_retried_frame_gets_the_same_ack_and_is_published_once(
    chat: Any, member: str, published: Published
) -> None:
    first = send(chat, member, 1, "once")
    again = send(chat, member, 1, "once")
    assert again == first
    assert [p["body"] for p in published] == ["once"]
    assert send(chat, member, 2, "next")["type"] == "ack"


def test_a_publish_failure_keeps_the_seq_and_its_id_for_the_retry(
    chat: Any,
    member: str,
    published: Published,
    monkeypatch: pytest.MonkeyPatch,
    clock: list[float],
) -> None:
    recorded = bus.publish
    failures = [1]
    attempted: list[str] = []

    def flaky(detail_type: str, detail: dict[str, Any]) -> None:
        attempted.append(detail["id"])
        if failures:
            failures.pop()
            raise bus.PublishError("bus down")
        recorded(detail_type, detail)

    monkeypatch.setattr(bus, "publish", flaky)
    refused = send(chat, member, 1, "m1")
    assert refused["type"] == "error" and refused["code"] == "internal"
    retried = send(chat, member, 1, "m1")
    assert retried["type"] == "ack"
    assert clock == [0.0]  # the failed claim is taken over at once, not waited out
    assert attempted == [retried["id"], retried["id"]]  # the retry published the claimed id
    assert [p["id"] for p in published] == [retried["id"]]
    assert send(chat, member, 2, "m2")["type"] == "ack"


def test_a_refused_seq_takes_its_place_so_later_seqs_do_not_stall(
    chat: Any, member: str, published: Published, clock: list[float]
) -> None:
    outside = send(chat, member, 1, "m1", room="elsewhere")
    assert outside["code"] == "not_member"
    too_big = send(chat, member, 2, "x" * 20_000)
    assert too_big["code"] == "too_large" and too_big["ref"] == "r2"
    assert send(chat, member, 3, "m3")["type"] == "ack"
    assert clock[0] == 0  # nobody waited: the refusals were final
    assert send(chat, member, 1, "m1", room="elsewhere")["code"] == "not_member"  # replayed
    assert [p["body"] for p in published] == ["m3"]


def test_bad_seq_values_are_bad_requests_and_the_connection_stays(
    chat: Any, member: str, published: Published
) -> None:
    for bad in (0, -1, 1.5, "1", True, 2**53):
        reply = send(chat, member, bad, "m")
        assert reply["code"] == "bad_request" and "seq" in reply["message"], bad
    assert send(chat, member, 1, "m1")["type"] == "ack"
    assert [p["body"] for p in published] == ["m1"]


def test_frames_without_seq_keep_todays_behaviour(
    chat: Any, member: str, published: Published
) -> None:
    ack = chat.send(member, {"action": "send", "room": "lobby", "body": "plain", "seq": None})
    assert ack["type"] == "ack" and "seq" not in ack
    assert send(chat, member, 1, "numbered")["type"] == "ack"


def test_each_connection_has_its_own_sequence(chat: Any, member: str, published: Published) -> None:
    chat.connect("c2", "alice", "Alice")
    chat.send("c2", {"action": "join", "room": "lobby"})
    assert send(chat, "c2", 1, "other connection")["type"] == "ack"
    assert send(chat, member, 1, "first connection")["type"] == "ack"


def test_ids_follow_seq_order_across_containers_with_skewed_clocks(
    chat: Any, member: str, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seq 1 accepted by a container whose clock is 10 s ahead, seq 2 by one on time."""
    real_now = ids.now_ms()

    def container(offset_ms: int) -> None:  # a fresh process: no monotonic state of its own
        monkeypatch.setattr(ids, "_last_ms", -1)
        monkeypatch.setattr(ids, "now_ms", lambda: real_now + offset_ms)

    container(10_000)
    first = send(chat, member, 1, "ahead")["id"]
    container(0)
    second = send(chat, member, 2, "on time")["id"]
    assert second > first
    assert ids.id_timestamp_ms(second) == ids.id_timestamp_ms(first)  # just above it


def test_new_id_after_is_above_its_floor() -> None:
    floor = ids.new_id(ids.now_ms() + 60_000)
    assert ids.new_id_after(floor) > floor
    top = ids.id_timestamp_ms(floor)
    full = ids._encode(top, 10) + "Z" * 16  # the last id of its millisecond
    assert ids.id_timestamp_ms(ids.new_id_after(full)) == top + 1
    assert ids.new_id_after(None) > floor[:0]


class _SerialDynamoDB:
    """The DynamoDB client with one call at a time: DynamoDB applies the writes of one item one
    after another (conditions included); moto's in-process backend does not lock."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def serial(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return serial


def test_concurrent_out_of_order_invocations_are_published_in_seq_order(
    chat: Any, member: str, published: Published, monkeypatch: pytest.MonkeyPatch, posted: Any
) -> None:
    """API Gateway's view: every frame invoked at once, in any order, some of them twice."""
    monkeypatch.setenv("SEQUENCE_WAIT_MS", "120000")  # generous: no test depends on speed
    chat.connect("c-bob", "bob")
    chat.send("c-bob", {"action": "join", "room": "lobby"})
    aws_clients.reset()
    serial = _SerialDynamoDB(aws_clients.dynamodb())
    monkeypatch.setattr(sequence_store.aws_clients, "dynamodb", lambda: serial)
    count = 12
    frames = [*range(1, count + 1), 4, 9]  # two frames invoked twice
    random.Random(11).shuffle(frames)
    start = threading.Barrier(len(frames))
    replies: dict[int, list[dict[str, Any]]] = {}
    lock = threading.Lock()

    def invoke(seq: int) -> None:
        start.wait(timeout=60)
        reply = send(chat, member, seq, f"a{seq}")
        with lock:
            replies.setdefault(seq, []).append(reply)

    threads = [threading.Thread(target=invoke, args=(seq,)) for seq in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    by_seq = {seq: {json.dumps(r, sort_keys=True) for r in got} for seq, got in replies.items()}
    assert all(len(answers) == 1 for answers in by_seq.values())  # a retry: the same ack
    acks = [replies[seq][0] for seq in range(1, count + 1)]
    assert all(a["type"] == "ack" for a in acks), acks
    message_ids = [a["id"] for a in acks]
    assert message_ids == sorted(message_ids)
    # Published in send order. A frame invoked twice may be published twice, with the same id
    # (history keeps it once); nothing else is.
    first_bodies = {p["id"]: p["body"] for p in reversed(published)}
    assert list(dict.fromkeys(p["id"] for p in published)) == message_ids
    assert [first_bodies[i] for i in message_ids] == [f"a{s}" for s in range(1, count + 1)]
    assert len(published) <= count + 2
    # The same-region fast path posts inside each send's turn: a member of the sender's
    # region receives every message once, in the sender's order (issue 17).
    assert [f["body"] for f in posted("c-bob")] == [f"a{s}" for s in range(1, count + 1)]


def test_the_ack_window_forgets_old_seqs(
    chat: Any, member: str, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sequence_store, "ACK_WINDOW", 2)
    for seq in range(1, 5):
        assert send(chat, member, seq, f"m{seq}")["type"] == "ack"
    assert send(chat, member, 3, "m3")["type"] == "ack"  # still remembered
    stale = send(chat, member, 1, "m1")
    assert stale["code"] == "bad_request" and "next seq is 5" in stale["message"]
    assert len(published) == 4


# --- HTTP: clientId + seq -------------------------------------------------------------------


def post(chat: Any, body: dict[str, Any], user: str = "alice") -> dict[str, Any]:
    return dict(chat.http("POST", "lobby", body=json.dumps(body), user=user))


def test_http_posts_numbered_by_a_client_are_accepted_in_order(
    chat: Any, published: Published, clock: list[float]
) -> None:
    early = post(chat, {"body": "p2", "clientId": "cli-1", "seq": 2})
    assert early["statusCode"] == 409 and early["json"]["code"] == "sequence_gap"
    assert early["json"]["expected"] == 1
    first = post(chat, {"body": "p1", "clientId": "cli-1", "seq": 1})
    assert first["statusCode"] == 202 and first["json"]["seq"] == 1
    again = post(chat, {"body": "p1", "clientId": "cli-1", "seq": 1})
    assert again["json"] == first["json"]  # a retried POST: the same id, published once
    second = post(chat, {"body": "p2", "clientId": "cli-1", "seq": 2})
    assert second["statusCode"] == 202 and second["json"]["id"] > first["json"]["id"]
    # Another user's client with the same clientId has its own sequence.
    bobs = post(chat, {"body": "b1", "clientId": "cli-1", "seq": 1}, user="bob")
    assert bobs["statusCode"] == 202
    assert [p["body"] for p in published] == ["p1", "p2", "b1"]


def test_http_numbering_errors(chat: Any, published: Published, clock: list[float]) -> None:
    half = post(chat, {"body": "x", "seq": 1})
    assert half["statusCode"] == 400 and "go together" in half["json"]["message"]
    bad = post(chat, {"body": "x", "clientId": "no spaces", "seq": 1})
    assert bad["statusCode"] == 400 and "clientId" in bad["json"]["message"]
    too_big = post(chat, {"body": "x" * 20_000, "clientId": "c", "seq": 1})
    assert too_big["statusCode"] == 413
    assert post(chat, {"body": "ok", "clientId": "c", "seq": 2})["statusCode"] == 202
    assert [p["body"] for p in published] == ["ok"]


def test_the_wait_lasts_while_the_sends_ahead_make_progress(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SEQUENCE_WAIT_MS bounds a stall, not a queue: seq 10 behind 9 sends that each take 2 s
    (under the 3 s bound) is accepted; the invocation's budget still caps the whole wait."""

    def advancing(pk: str) -> Any:
        return sequence_store._State(last=int(clock[0] // 2))  # one more final every 2 s

    monkeypatch.setattr(sequence_store, "_read", advancing)
    assert sequence_store._turn("CONN#x", 10, None, None).last == 9
    assert clock[0] >= 18
    clock[0] = 0.0
    with pytest.raises(sequence_store.SequenceGap) as gap:
        sequence_store._turn("CONN#x", 10, "r", budget_s=5.0)
    assert clock[0] == pytest.approx(5.0) and gap.value.expected == 3


def test_budget_seconds_is_the_invocations_time_left_minus_a_margin() -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 9_000

    assert sequence_store.budget_seconds(Context()) == 7.0
    assert sequence_store.budget_seconds(object()) is None


def test_a_claimed_seq_is_refused_for_another_message(
    chat: Any, member: str, published: Published, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18, item 5: the claim is bound to the room and body, so one id never names
    two messages (nor two rooms, where the shards' progress items would collide)."""
    chat.send(member, {"action": "join", "room": "other"})
    recorded = bus.publish
    failures = [1]

    def flaky(detail_type: str, detail: dict[str, Any]) -> None:
        if failures:
            failures.pop()
            raise bus.PublishError("bus down")
        recorded(detail_type, detail)

    monkeypatch.setattr(bus, "publish", flaky)
    assert send(chat, member, 1, "m1")["code"] == "internal"  # claimed, not published
    for other in (send(chat, member, 1, "changed"), send(chat, member, 1, "m1", room="other")):
        assert (other["code"], other["ref"]) == ("bad_request", "r1")
    assert published == []
    retried = send(chat, member, 1, "m1")
    assert retried["type"] == "ack"
    assert [(p["room"], p["body"], p["id"]) for p in published] == [("lobby", "m1", retried["id"])]


def test_an_acked_seq_answers_its_ack_only_for_its_own_message(
    chat: Any, member: str, published: Published
) -> None:
    first = send(chat, member, 1, "m1")
    assert send(chat, member, 1, "m1")["id"] == first["id"]  # a retry: the same ack
    reused = send(chat, member, 1, "another")
    assert reused["code"] == "bad_request" and "seq 1" in reused["message"]
    assert [p["body"] for p in published] == ["m1"]


def test_a_duplicate_waits_out_a_claim_that_is_still_being_published(
    chat: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API Gateway invoking a frame twice: the second invocation finds the first one's claim
    while it still publishes (and posts locally). It answers the first one's ack once that
    is final, publishing nothing: committing at once would let ``seq + 1`` publish, and post
    to this region's members, before the first invocation's posts."""
    key = sequence_store.connection_key("c-dup")
    duplicate_waits = threading.Event()
    first_is_final = threading.Event()
    duplicate_done = threading.Event()

    def wait_for_the_first(_seconds: float) -> None:  # only the duplicate ever waits here
        duplicate_waits.set()
        assert first_is_final.wait(timeout=120)

    monkeypatch.setattr(sequence_store, "sleep", wait_for_the_first)
    publishes: list[tuple[str, str]] = []
    answers: dict[str, str] = {}

    def duplicate() -> None:
        def publish(message_id: str) -> None:
            publishes.append(("duplicate", message_id))

        answers["duplicate"] = sequence_store.accept(key, 1, publish, digest="d")
        duplicate_done.set()

    def first_publish(message_id: str) -> None:
        publishes.append(("first", message_id))
        threading.Thread(target=duplicate, daemon=True).start()
        # Either the duplicate waits (the fix) or it publishes and returns at once (the race).
        while not (duplicate_waits.wait(timeout=0.01) or duplicate_done.is_set()):
            pass

    answers["first"] = sequence_store.accept(key, 1, first_publish, digest="d")
    first_is_final.set()
    assert duplicate_done.wait(timeout=120)
    assert answers["duplicate"] == answers["first"]
    assert publishes == [("first", answers["first"])]
