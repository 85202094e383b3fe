"""SQS queues and Lambda event source mappings from the template, run by the real sandbox.

One sandbox per test (moto, one worker per function); a producer function behind a rule sends
the messages with boto3 through the queue URL in its environment, as the app's handlers do.
Every wait is a bounded poll of the sandbox's own state.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import boto3
from sandbox_templates import QUEUE_HANDLER_CODE, AssemblyFactory, free_port_block, queue_template

from sandbox.aws_local import FAKE_CREDENTIALS
from sandbox.event_sources import succeeded_records
from sandbox.function_pool import InvokeResult
from sandbox.runtime import Options, Sandbox
from sandbox.virtual import function_variable, seed_room, virtual_ids

REGION = "us-east-1"
DEADLINE = 45.0


def client(service: Any, endpoint: str) -> Any:
    return boto3.session.Session().client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


def run_sandbox(cdk_out: Path, tmp_path: Path, work: Callable[[Sandbox], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        options = Options(
            cdk_out=cdk_out,
            port_base=free_port_block(6),
            endpoints_file=tmp_path / "endpoints.json",
            state_dir=tmp_path / "state",
        )
        sandbox = Sandbox(options, echo=io.StringIO())
        try:
            await sandbox.start()
            return await work(sandbox)
        finally:
            await sandbox.stop()

    return asyncio.run(main())


async def produce(sandbox: Sandbox, queue: str, messages: list[dict[str, Any]]) -> None:
    events = client("events", f"http://127.0.0.1:{sandbox.regions[0].ports.events}")
    detail = json.dumps({"queue": queue, "messages": messages})
    answer = await asyncio.to_thread(
        events.put_events,
        Entries=[{"Source": "test", "DetailType": "produce", "Detail": detail,
                  "EventBusName": "test-bus"}],
    )  # fmt: skip
    assert answer["FailedEntryCount"] == 0


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def seen(out: Path, function: str) -> list[dict[str, Any]]:
    path = out / f"{function}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def peak_active(out: Path, function: str) -> int:
    path = out / f"{function}.active"
    return max((int(n) for n in path.read_text().split()), default=0) if path.exists() else 0


def test_batches_partial_failures_redelivery_and_dead_letters(
    make_assembly: AssemblyFactory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cdk_out = make_assembly({REGION: queue_template(str(out))}, code=QUEUE_HANDLER_CODE)
    messages: list[dict[str, Any]] = [{"id": f"ok-{n}"} for n in range(8)]
    messages += [
        {"id": "fail-once", "kind": "fail-once"},
        {"id": "always-fail", "kind": "always-fail"},
        {"id": "delayed", "delay": 1},
    ]

    async def work(sandbox: Sandbox) -> dict[str, Any]:
        await produce(sandbox, "WORK_QUEUE_URL", messages)

        async def settled() -> bool:
            depths = (await sandbox.queue_depths())[REGION]
            work_queue = depths["WorkQueue"]
            mapping = sandbox.stats()["regions"][REGION]["eventSourceMappings"]["WorkMapping"]
            return (
                depths["DeadLetters"]["messages"] == 1
                and work_queue["messages"] + work_queue["inFlight"] + work_queue["delayed"] == 0
                and mapping["inFlight"] == 0
            )

        await until(settled, "the work queue to drain into the function and the DLQ")
        endpoints = sandbox.endpoints()
        dlq_url = endpoints["queues"][REGION]["DeadLetters"]["url"]
        sqs = client("sqs", endpoints["dynamodb"])
        dead = await asyncio.to_thread(sqs.receive_message, QueueUrl=dlq_url, WaitTimeSeconds=1)
        table = function_variable(sandbox.options.cdk_out, REGION, "TABLE")
        written = await asyncio.to_thread(
            seed_room, table, "lobby", virtual_ids(30), endpoint_url=endpoints["dynamodb"],
            region=REGION,
        )  # fmt: skip
        dynamodb = client("dynamodb", endpoints["dynamodb"])
        members = await asyncio.to_thread(
            dynamodb.query,
            TableName=table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "ROOM#lobby"}},
        )
        return {
            "stats": sandbox.stats()["regions"][REGION],
            "endpoints": endpoints,
            "dead": dead["Messages"],
            "written": written,
            "members": members["Items"],
        }

    result = run_sandbox(cdk_out, tmp_path, work)
    records = seen(out, "Work")
    by_id: dict[str, list[int]] = {}
    for entry in records:
        by_id.setdefault(entry["id"], []).append(entry["received"])
    for n in range(8):
        assert by_id[f"ok-{n}"] == [1]  # succeeded: deleted, never redelivered
    assert by_id["delayed"] == [1]  # DelaySeconds from SendMessageBatch
    assert sorted(by_id["fail-once"]) == [1, 2]  # reported once, succeeded on redelivery
    assert sorted(by_id["always-fail"]) == [1, 2]  # maxReceiveCount 2, then the DLQ
    assert [json.loads(m["Body"])["id"] for m in result["dead"]] == ["always-fail"]

    mapping = result["stats"]["eventSourceMappings"]["WorkMapping"]
    assert mapping["records_succeeded"] == 10 and mapping["records_failed"] == 3
    assert mapping["records_deleted"] == 10 and mapping["invalid_responses"] == 0

    # The event Lambda builds, and the context's remaining time from the function's Timeout.
    first = next(e for e in records if e["id"] == "ok-0")
    record = first["record"]
    queue = result["endpoints"]["queues"][REGION]["WorkQueue"]
    assert record["eventSource"] == "aws:sqs" and record["awsRegion"] == REGION
    assert (
        record["eventSourceARN"]
        == queue["arn"]
        == (f"arn:aws:sqs:{REGION}:000000000000:chat-{REGION}-WorkQueue")
    )
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["messageId"] and record["receiptHandle"]
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["kind"]["stringValue"] == "ok"
    assert record["messageAttributes"]["kind"]["dataType"] == "String"
    assert 1000 < first["remainingMs"] <= 2000

    # The function's QUEUE_URL (Ref of the queue) is the queue at moto.
    assert (out / "producer.urls").read_text().split() == [queue["url"]]
    assert queue["url"].startswith(result["endpoints"]["dynamodb"] + "/000000000000/")

    # seed_room: memberships and META items, laid out as runtime.store.connection_store writes them.
    assert result["written"] == 90  # META, membership and user item of each of 30 users
    member = next(m for m in result["members"] if m["sk"]["S"] == "CONN#virtual-000007")
    user = next(m for m in result["members"] if m["sk"]["S"] == "USER#user-virtual-000007")
    assert user["c:virtual-000007"] == member["expiresAt"] and user["v"] == {"N": "1"}
    assert user["userId"] == member["userId"] and user["expiresAt"] == member["expiresAt"]
    assert len(result["members"]) == 61  # and the room's COUNT item (runtime.presence.roster)
    count = next(m for m in result["members"] if m["sk"]["S"] == "COUNT")
    assert count[f"n:{REGION}"] == {"N": "30"}
    assert member["connectionId"] == {"S": "virtual-000007"}
    assert {"userId", "joinedAt", "presenceAt", "expiresAt"} <= set(member)


def test_maximum_concurrency_and_reserved_concurrency(
    make_assembly: AssemblyFactory, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cdk_out = make_assembly({REGION: queue_template(str(out))}, code=QUEUE_HANDLER_CODE)

    async def work(sandbox: Sandbox) -> dict[str, Any]:
        slow = [{"id": f"slow-{n}", "sleep": 0.4} for n in range(12)]
        reserved = [{"id": f"reserved-{n}", "sleep": 0.4} for n in range(8)]
        await produce(sandbox, "SLOW_QUEUE_URL", slow)
        await produce(sandbox, "RESERVED_QUEUE_URL", reserved)
        # Direct invocations of the reserved function share its two slots with the mapping.
        worker = sandbox.regions[0].workers["Reserved"]
        direct = await asyncio.gather(
            *(worker.invoke({"id": f"direct-{n}", "sleep": 0.4}) for n in range(4))
        )
        assert all(result.ok for result in direct)

        expected_slow = {m["id"] for m in slow}
        expected_reserved = {m["id"] for m in reserved} | {f"direct-{n}" for n in range(4)}

        async def done() -> bool:
            mappings = sandbox.stats()["regions"][REGION]["eventSourceMappings"]
            return (
                {e["id"] for e in seen(out, "Slow")} == expected_slow
                and {e["id"] for e in seen(out, "Reserved")} == expected_reserved
                and mappings["SlowMapping"]["records_succeeded"] >= 12
                and mappings["ReservedMapping"]["records_succeeded"] >= 8
            )

        await until(done, "every slow and reserved message to be processed")
        return sandbox.stats()["regions"][REGION]

    stats = run_sandbox(cdk_out, tmp_path, work)
    assert 1 <= peak_active(out, "Slow") <= 3  # ScalingConfig.MaximumConcurrency 3
    assert stats["eventSourceMappings"]["SlowMapping"]["peakConcurrency"] <= 3
    assert peak_active(out, "Reserved") <= 2  # ReservedConcurrentExecutions 2, every source
    assert stats["functions"]["Reserved"]["peakConcurrency"] <= 2
    assert stats["eventSourceMappings"]["ReservedMapping"]["maximumConcurrency"] == 2


def ok(result: Any = None) -> InvokeResult:
    return InvokeResult(True, result=result)


def test_which_records_are_deleted() -> None:
    ids = ["a", "b", "c"]
    every = set(ids)
    assert succeeded_records(ok(), ids, True) == (every, True)
    assert succeeded_records(ok({}), ids, True) == (every, True)
    assert succeeded_records(ok({"batchItemFailures": []}), ids, True) == (every, True)
    partial = ok({"batchItemFailures": [{"itemIdentifier": "b"}]})
    assert succeeded_records(partial, ids, True) == ({"a", "c"}, True)
    # Without ReportBatchItemFailures the response is not read: the batch succeeded.
    assert succeeded_records(partial, ids, False) == (every, True)
    # An error or a timeout: nothing is deleted, everything comes back.
    failed = InvokeResult(False, error_type="Sandbox.Timeout", error_message="timed out")
    assert succeeded_records(failed, ids, True) == (set(), True)
    # A malformed report fails the whole batch, as in Lambda.
    for bad in (
        {"batchItemFailures": [{"itemIdentifier": "zzz"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"id": "a"}]},
        {"batchItemFailures": "a"},
        "not an object",
    ):
        assert succeeded_records(ok(bad), ids, True) == (set(), False)
