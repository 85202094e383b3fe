"""The sharded fan-out: split, workers, retries, throttling, hand-off, the shared budget.

The real engine posts to the local ``@connections`` server (``mgmt``); moto
provides DynamoDB and the fan-out queue. ``drain`` plays the SQS event source
mapping: one job per invocation, failed jobs visible again, the rest deleted.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from multiregion_chat.runtime.delivery import broadcast, engine, fanout_queue, request_budget
from multiregion_chat.runtime.handlers import fanout_worker
from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.store import shard_progress
from tests.unit.conftest import REGION, TEST_ENV, Chat, FakeLambdaContext
from tests.unit.connections_server import GONE, THROTTLED, ConnectionsServer
from tests.unit.test_event_bus_message_handler import detail

ROOM = "big"
FRAME = json.dumps({"type": "message", "room": ROOM, "id": "m1", "body": "hi"})


class WorkerContext(FakeLambdaContext):
    def __init__(self, remaining_ms: int = 60_000) -> None:
        super().__init__()
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def queue_url(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    url = boto3.client("sqs", region_name=REGION).create_queue(QueueName="chat-test-fanout")[
        "QueueUrl"
    ]
    monkeypatch.setenv("FANOUT_QUEUE_URL", url)
    monkeypatch.setenv("FANOUT_SHARD_THRESHOLD", "10")
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "7")
    aws_clients.reset()
    return url


def shard(ids: list[str], shard_id: str = "m1:0") -> fanout_queue.ShardJob:
    return fanout_queue.ShardJob(
        room=ROOM, shard_id=shard_id, frame=FRAME, connection_ids=ids, attempt=0
    )


def seed_members(count: int, room: str = ROOM) -> list[str]:
    """Membership items as ``join`` writes them (no META: 410 cleanup uses the room hint)."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    ids = [f"conn{number:04d}=" for number in range(count)]
    for cid in ids:
        ddb.put_item(
            TableName=TEST_ENV["CONNECTIONS_TABLE"],
            Item={
                "pk": {"S": f"ROOM#{room}"},
                "sk": {"S": f"CONN#{cid}"},
                "connectionId": {"S": cid},
                "userId": {"S": f"user-{cid}"},
                "joinedAt": {"S": "2026-11-29T00:00:00.000Z"},
                "expiresAt": {"N": "9999999999"},
            },
        )
    return ids


def queued(url: str) -> list[dict[str, Any]]:
    """Every job on the queue (left there), by reading with a zero visibility timeout."""
    sqs = boto3.client("sqs", region_name=REGION)
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    for _ in range(100):
        response = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, AttributeNames=["All"]
        )
        if not response.get("Messages"):
            break
        for message in response["Messages"]:
            seen[message["MessageId"]] = json.loads(message["Body"])
            handles.append(message["ReceiptHandle"])
    for handle in handles:  # visible again for the next reader
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(seen.values())


def sqs_event(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:chat-test-fanout",
                "awsRegion": REGION,
            }
        ]
    }


def drain(
    url: str, context: WorkerContext | None = None, max_invocations: int = 200
) -> list[dict[str, Any]]:
    """Run the worker over the queue until it is empty; the handler's responses."""
    sqs = boto3.client("sqs", region_name=REGION)
    responses = []
    for _ in range(max_invocations):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30, AttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            return responses
        message = messages[0]
        response = fanout_worker.handler(sqs_event(message), context or WorkerContext())
        responses.append(response)
        if response["batchItemFailures"]:
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the queue did not drain")


def posts_per_id(mgmt: ConnectionsServer) -> Counter[str]:
    return Counter(record.connection_id for record in mgmt.posts() if record.status == 200)


# --- split --------------------------------------------------------------------------


def test_small_room_is_delivered_in_the_invocation(queue_url: str, mgmt: ConnectionsServer):
    ids = seed_members(10)
    result = broadcast.broadcast(ROOM, FRAME, job_id="m1")
    assert (result.members, result.delivered, result.shards) == (10, 10, 0)
    assert queued(queue_url) == []
    assert posts_per_id(mgmt) == Counter(ids)


def test_big_room_is_split_into_shards_covering_every_member_once(queue_url: str):
    ids = seed_members(30)
    result = broadcast.broadcast(ROOM, FRAME, job_id="m1")
    assert (result.members, result.delivered, result.shards, result.handed_on) == (30, 0, 5, 30)
    assert result.sharded
    jobs = queued(queue_url)
    assert sorted(job["shardId"] for job in jobs) == [f"{ROOM}/m1:{n}" for n in range(5)]
    assert all(job["frame"] == FRAME and job["kind"] == "shard" for job in jobs)
    assert all(len(job["connectionIds"]) <= 7 for job in jobs)
    assert sorted(cid for job in jobs for cid in job["connectionIds"]) == ids


def test_without_a_queue_a_big_room_is_delivered_in_the_invocation(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FANOUT_QUEUE_URL", "")
    runtime_settings.reset()
    ids = seed_members(12)
    assert broadcast.broadcast(ROOM, FRAME, job_id="m1").delivered == 12
    assert posts_per_id(mgmt) == Counter(ids)


# --- workers ------------------------------------------------------------------------


def test_workers_deliver_every_member_exactly_once(queue_url: str, mgmt: ConnectionsServer):
    ids = seed_members(30)
    broadcast.broadcast(ROOM, FRAME, job_id="m1")
    responses = drain(queue_url)
    assert len(responses) == 5
    assert all(response == {"batchItemFailures": []} for response in responses)
    assert posts_per_id(mgmt) == Counter(ids)
    assert {record.body.decode() for record in mgmt.posts()} == {FRAME}
    assert all(shard_progress.load(f"{ROOM}/m1:{n}").complete for n in range(5))


def test_a_job_delivered_twice_posts_once(queue_url: str, mgmt: ConnectionsServer):
    ids = seed_members(5)
    job = fanout_queue.ShardJob(
        room=ROOM, shard_id="m1:0", frame=FRAME, connection_ids=ids, attempt=0
    )
    fanout_queue.send_jobs([job, job])  # SQS delivers at least once
    drain(queue_url)
    assert posts_per_id(mgmt) == Counter(ids)


def test_gone_connections_are_cleaned_up_by_the_worker(queue_url: str, mgmt: ConnectionsServer):
    ids = seed_members(12)
    mgmt.script(ids[3], GONE)
    broadcast.broadcast(ROOM, FRAME, job_id="m1")
    drain(queue_url)
    assert posts_per_id(mgmt) == Counter(ids[:3] + ids[4:])
    remaining = {
        item["sk"]["S"]
        for item in boto3.client("dynamodb", region_name=REGION).query(
            TableName=TEST_ENV["CONNECTIONS_TABLE"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :conn)",
            ExpressionAttributeValues={":pk": {"S": f"ROOM#{ROOM}"}, ":conn": {"S": "CONN#"}},
        )["Items"]
    }
    assert f"CONN#{ids[3]}" not in remaining and len(remaining) == 11


def test_a_failed_shard_is_retried_without_posting_twice(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    """The worker dies half-way through a shard (after posting some): SQS
    redelivers the job and the retry posts only to the rest."""
    ids = seed_members(7)
    real_deliver = engine.deliver
    crashes = []

    def dies_half_way(room: str, data: bytes, **kwargs: Any) -> engine.FanoutResult:
        if not crashes:
            crashes.append(1)
            real_deliver(room, data, **{**kwargs, "connection_ids": kwargs["connection_ids"][:4]})
            raise RuntimeError("worker crashed")
        return real_deliver(room, data, **kwargs)

    monkeypatch.setattr(engine, "deliver", dies_half_way)
    fanout_queue.send_job(
        fanout_queue.ShardJob(
            room=ROOM, shard_id="m1:0", frame=FRAME, connection_ids=ids, attempt=0
        )
    )
    responses = drain(queue_url)
    assert responses[0]["batchItemFailures"], "the crashed job is reported as failed"
    assert responses[-1] == {"batchItemFailures": []}
    assert posts_per_id(mgmt) == Counter(ids)


def test_a_job_whose_progress_cannot_be_read_is_reported_failed(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    ids = seed_members(3)
    fanout_queue.send_job(
        fanout_queue.ShardJob(
            room=ROOM, shard_id="m1:0", frame=FRAME, connection_ids=ids, attempt=0
        )
    )
    sqs = boto3.client("sqs", region_name=REGION)
    message = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"][0]

    def broken(shard_id: str) -> shard_progress.ShardState:
        raise RuntimeError("DynamoDB unavailable")

    monkeypatch.setattr(shard_progress, "load", broken)
    response = fanout_worker.handler(sqs_event(message), WorkerContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert mgmt.posts() == []


def test_throttling_is_retried_and_never_drops_a_member(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    """API Gateway keeps answering 429 for one member past the engine's retries:
    the worker hands that member on (delayed) and a later job delivers it."""
    delays: list[int] = []
    real_send = fanout_queue.send_job

    def undelayed(job: Any, delay_seconds: int = 0) -> None:
        delays.append(delay_seconds)
        real_send(job, delay_seconds=0)  # moto honours DelaySeconds; the test does not wait

    monkeypatch.setattr(fanout_queue, "send_job", undelayed)
    ids = seed_members(12)
    mgmt.script(ids[0], *[THROTTLED] * (engine.POST_ATTEMPTS + 1))
    mgmt.script(ids[8], THROTTLED)
    broadcast.broadcast(ROOM, FRAME, job_id="m1")
    drain(queue_url)
    assert posts_per_id(mgmt) == Counter(ids)
    assert delays == [fanout_worker.THROTTLED_HANDOFF_DELAY_S]


def test_a_worker_out_of_time_hands_on_the_rest(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    ids = seed_members(12)
    # The engine's clock passes the deadline once a few posts have been answered.
    monkeypatch.setattr(engine, "clock", lambda: 0.0 if len(mgmt.posts()) < 3 else 1e9)
    fanout_queue.send_job(shard(ids))
    context = WorkerContext(remaining_ms=int(fanout_worker.HANDOFF_MARGIN_S * 1000) + 100_000)
    sqs = boto3.client("sqs", region_name=REGION)
    message = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"][0]
    assert fanout_worker.handler(sqs_event(message), context) == {"batchItemFailures": []}
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    first = posts_per_id(mgmt)
    assert 3 <= sum(first.values()) < len(ids)
    (handed,) = queued(queue_url)
    assert handed["shardId"] == "m1:0.1" and handed["attempt"] == 1
    assert sorted(handed["connectionIds"]) == sorted(set(ids) - set(first))

    monkeypatch.setattr(engine, "clock", lambda: 0.0)
    drain(queue_url, context)
    assert posts_per_id(mgmt) == Counter(ids)


def test_a_remainder_is_given_up_after_max_handoffs(
    queue_url: str,
    mgmt: ConnectionsServer,
    emitted_metrics: Callable[[], dict[str, float]],
):
    ids = seed_members(2)
    mgmt.script(ids[0], THROTTLED, then=THROTTLED)
    job = fanout_queue.ShardJob(
        room=ROOM,
        shard_id="m1:0",
        frame=FRAME,
        connection_ids=ids,
        attempt=fanout_worker.MAX_HANDOFFS,
    )
    counts = fanout_worker.handle_shard(job, deadline=engine.clock() + 60)
    assert counts["delivered"] == 1 and counts["failed"] == 1 and counts["handedOn"] == 0
    assert queued(queue_url) == []


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"kind": "unknown"}),
        json.dumps({"kind": "shard", "room": ROOM, "shardId": "x", "frame": FRAME}),
        json.dumps(
            {"kind": "shard", "room": ROOM, "shardId": "x", "frame": FRAME, "connectionIds": [1]}
        ),
        json.dumps([1, 2]),
    ],
)
def test_a_malformed_job_is_dropped_not_retried(queue_url: str, mgmt: ConnectionsServer, body: str):
    boto3.client("sqs", region_name=REGION).send_message(QueueUrl=queue_url, MessageBody=body)
    assert drain(queue_url) == [{"batchItemFailures": []}]
    assert mgmt.posts() == []


def test_the_bus_handler_reports_a_sharded_message(
    queue_url: str, chat: Chat, emitted_metrics: Callable[[], dict[str, float]]
):
    seed_members(15)
    summary = chat.deliver(detail(room=ROOM))
    assert summary["status"] == "sharded" and summary["shards"] == 3
    assert emitted_metrics()["FanoutShards"] == 3


# --- the queue ----------------------------------------------------------------------


def test_jobs_are_batched_within_the_sqs_limits(queue_url: str, monkeypatch: pytest.MonkeyPatch):
    calls: list[list[dict[str, Any]]] = []
    real = aws_clients.sqs().send_message_batch

    def recording(**kwargs: Any) -> Any:
        calls.append(kwargs["Entries"])
        return real(**kwargs)

    monkeypatch.setattr(aws_clients.sqs(), "send_message_batch", recording)
    big_frame = "x" * 60_000
    jobs = fanout_queue.shard_jobs(
        ROOM, big_frame, [f"c{n}" for n in range(25)], job_id="j", shard_size=1
    )
    assert fanout_queue.send_jobs(jobs) == 25
    assert all(len(entries) <= fanout_queue.MAX_BATCH_ENTRIES for entries in calls)
    assert all(
        sum(len(entry["MessageBody"]) for entry in entries) <= fanout_queue.MAX_BATCH_BYTES
        for entries in calls
    )
    assert len(queued(queue_url)) == 25


def test_refused_entries_are_retried_then_raise(queue_url: str, monkeypatch: pytest.MonkeyPatch):
    attempts: list[int] = []

    def refusing(**kwargs: Any) -> Any:
        attempts.append(len(kwargs["Entries"]))
        return {
            "Successful": [],
            "Failed": [
                {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"}
                for entry in kwargs["Entries"]
            ],
        }

    monkeypatch.setattr(aws_clients.sqs(), "send_message_batch", refusing)
    with pytest.raises(fanout_queue.QueueError):
        fanout_queue.send_job({"kind": "shard"})
    assert len(attempts) == fanout_queue.SEND_ATTEMPTS


# --- the shared budget --------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_workers_sharing_a_budget_never_exceed_it_in_any_window():
    clock = FakeClock()
    used: Counter[int] = Counter()

    def grant(window: int, wanted: int, per_window: int) -> int:
        before = used[window]
        used[window] += wanted
        return max(0, min(wanted, per_window - before))

    workers = [
        request_budget.SharedBudget(
            rate_per_second=1000, window_ms=100, grant=grant, clock=clock, sleep=clock.sleep
        )
        for _ in range(3)
    ]
    started: Counter[int] = Counter()

    async def run(limiter: request_budget.SharedBudget) -> None:
        for _ in range(150):
            await limiter.acquire()
            started[int(clock() / 0.1)] += 1

    async def main() -> None:
        await asyncio.gather(*(run(worker) for worker in workers))

    asyncio.run(main())
    assert sum(started.values()) == 450
    assert max(started.values()) <= 100  # 1000/s in 100 ms windows
    assert sum(worker.waits for worker in workers) > 0


def test_four_slices_cover_a_window():
    """250 requests per 50 ms window: slices of 63, not 62, so 4 ADDs take it all."""
    clock = FakeClock()
    used: Counter[int] = Counter()
    calls: list[int] = []

    def grant(window: int, wanted: int, per_window: int) -> int:
        calls.append(wanted)
        before = used[window]
        used[window] += wanted
        return max(0, min(wanted, per_window - before))

    limiter = request_budget.SharedBudget(
        rate_per_second=5000, window_ms=50, grant=grant, clock=clock, sleep=clock.sleep
    )

    async def main() -> None:
        for _ in range(250):
            await limiter.acquire()

    asyncio.run(main())
    assert (limiter.waits, limiter.granted) == (0, 250)
    assert calls == [63] * 4


def test_take_slice_counts_every_grant_in_dynamodb(aws: None):
    assert [request_budget.take_slice(7, 40, 100) for _ in range(4)] == [40, 40, 20, 0]
    assert request_budget.take_slice(8, 40, 100) == 40


def test_a_budgeted_fanout_reports_throttling_to_the_local_limiter(
    queue_url: str, mgmt: ConnectionsServer
):
    class Recording:
        def __init__(self) -> None:
            self.events: list[str] = []

        async def acquire(self) -> None:
            self.events.append("acquire")

        def throttled(self) -> None:
            self.events.append("throttled")

        def succeeded(self) -> None:
            self.events.append("succeeded")

    ids = seed_members(3)
    mgmt.script(ids[1], THROTTLED)
    local = Recording()
    limiter = request_budget.SharedBudget(rate_per_second=1000, local=local)
    result = engine.deliver(
        ROOM,
        FRAME.encode(),
        connection_ids=ids,
        limiter=limiter,
        on_gone=transitions.cleanup_gone,
    )
    assert result.delivered == 3
    assert local.events.count("throttled") == 1
    assert local.events.count("acquire") == 4


@pytest.fixture(autouse=True)
def _no_leftover_settings() -> Iterator[None]:
    yield
    runtime_settings.reset()


def test_a_room_over_the_threshold_is_sharded_even_below_one_shard(
    queue_url: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("FANOUT_SHARD_SIZE", "50")
    runtime_settings.reset()
    ids = seed_members(12)  # > threshold 10, < one shard of 50
    result = broadcast.broadcast(ROOM, FRAME, job_id="m1")
    assert (result.shards, result.delivered) == (1, 0)
    (job,) = queued(queue_url)
    assert sorted(job["connectionIds"]) == ids


def test_a_parent_retried_after_its_hand_off_leaves_the_rest_to_the_child(
    queue_url: str, mgmt: ConnectionsServer, monkeypatch: pytest.MonkeyPatch
):
    """The hand-off was queued, then marking the parent complete failed: the
    retried parent must not post to what the child job now owns."""
    ids = seed_members(12)
    monkeypatch.setattr(engine, "clock", lambda: 0.0 if len(mgmt.posts()) < 3 else 1e9)
    real_complete = shard_progress.mark_complete
    failures = []

    def fails_once(shard_id: str) -> None:
        if not failures:
            failures.append(shard_id)
            raise RuntimeError("DynamoDB unavailable")
        real_complete(shard_id)

    monkeypatch.setattr(shard_progress, "mark_complete", fails_once)
    fanout_queue.send_job(shard(ids))
    context = WorkerContext(remaining_ms=int(fanout_worker.HANDOFF_MARGIN_S * 1000) + 100_000)
    sqs = boto3.client("sqs", region_name=REGION)
    message = sqs.receive_message(QueueUrl=queue_url, AttributeNames=["All"])["Messages"][0]
    response = fanout_worker.handler(sqs_event(message), context)
    assert response["batchItemFailures"]  # the parent comes back
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    monkeypatch.setattr(engine, "clock", lambda: 0.0)
    drain(queue_url, context)
    assert posts_per_id(mgmt) == Counter(ids)


def test_a_failing_budget_store_hands_back_instead_of_hanging(queue_url: str):
    def broken(window: int, wanted: int, per_window: int) -> int:
        raise RuntimeError("ProvisionedThroughputExceededException")

    ids = seed_members(5)
    limiter = request_budget.SharedBudget(rate_per_second=1000, grant=broken)
    result = engine.deliver(
        ROOM,
        FRAME.encode(),
        connection_ids=ids,
        limiter=limiter,
        deadline=engine.clock() + 0.3,
        on_gone=transitions.cleanup_gone,
    )
    assert sorted(result.unsent) == ids and result.delivered == 0


def test_a_caller_giving_up_does_not_cancel_the_slice_others_wait_for():
    import threading

    release = threading.Event()

    def slow(window: int, wanted: int, per_window: int) -> int:
        release.wait(10)
        return wanted

    limiter = request_budget.SharedBudget(rate_per_second=1000, window_ms=60_000, grant=slow)

    async def main() -> list[str]:
        async def impatient() -> str:
            try:
                await asyncio.wait_for(limiter.acquire(), 0.05)
            except TimeoutError:
                return "gave up"
            return "acquired"

        async def patient() -> str:
            await limiter.acquire()
            return "acquired"

        waiting = [asyncio.create_task(impatient()), asyncio.create_task(patient())]
        await waiting[0]
        release.set()
        return list(await asyncio.gather(*waiting))

    assert asyncio.run(main()) == ["gave up", "acquired"]
