"""SQS event source mappings, locally: pollers that feed a queue's messages to a function.

One :class:`QueuePoller` per ``AWS::Lambda::EventSourceMapping`` does what Lambda's SQS poller
does, against the queue in moto:

* long-polls ``ReceiveMessage`` (the queue's own visibility timeout applies to what it receives)
  and gathers a batch: up to ``BatchSize`` records, for at most
  ``MaximumBatchingWindowInSeconds`` after the first (one receive of up to 10 when the window
  is 0, as Lambda requires a window for batches over 10);
* invokes the function with Lambda's SQS event (``Records`` with ``messageId``,
  ``receiptHandle``, ``body``, ``attributes``, ``messageAttributes``, ``md5OfBody``,
  ``eventSource``, ``eventSourceARN``, ``awsRegion``), at most ``MaximumConcurrency`` batches at
  once (``ScalingConfig``; else :data:`DEFAULT_MAX_CONCURRENCY`), and never more than the
  function's ``ReservedConcurrentExecutions``: a batch is received only when a slot is free, so
  no message waits invisible for a slot;
* deletes what succeeded: every record when the invocation returns (with
  ``ReportBatchItemFailures``: all but the ``batchItemFailures``, and none when that list is
  malformed or names a record not in the batch, as Lambda treats it as a failure of the whole
  batch); nothing when the invocation raised or timed out. What is not deleted reappears after
  the visibility timeout; moto's own redrive moves a message to the queue's DLQ when it would
  be received more than ``maxReceiveCount`` times.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandbox.aws_local import FAKE_CREDENTIALS, local_queue_url
from sandbox.function_pool import InvokeResult
from sandbox.template_model import EventSourceMappingSpec, QueueSpec

log = logging.getLogger("sandbox.sqs")

DEFAULT_MAX_CONCURRENCY = 8  # AWS scales to the account's concurrency; this machine cannot
MAX_RECEIVERS = 5  # Lambda starts five pollers per SQS mapping
POLL_WAIT_SECONDS = 2  # long-poll wait (Lambda's is 20; shorter so a stop is quick)
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # a synchronous invocation's payload limit
ERROR_BACKOFF_SECONDS = 0.5

# The counters of a mapping, always reported (0 until they happen).
COUNTERS = (
    "batches",
    "records_received",
    "records_succeeded",
    "records_failed",
    "records_deleted",
    "invocation_errors",
    "invalid_responses",
    "receive_errors",
    "delete_errors",
)

InvokeFn = Callable[[str, Any], Awaitable[InvokeResult]]


def lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records`` entry of Lambda's SQS event, from a ReceiveMessage message (boto3)."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [_b64(v) for v in value.get("BinaryListValues") or []],
        "dataType": value.get("DataType", "String"),
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = _b64(value["BinaryValue"])
    return converted


def _b64(value: bytes | str) -> str:
    return base64.b64encode(value if isinstance(value, bytes) else value.encode()).decode()


def succeeded_records(
    result: InvokeResult, message_ids: list[str], report_failures: bool
) -> tuple[set[str], bool]:
    """The message ids to delete after an invocation, and whether its response was valid."""
    if not result.ok:
        return set(), True
    everything = set(message_ids)
    payload = result.result
    if not report_failures or payload is None:
        return everything, True
    if not isinstance(payload, dict):
        return set(), False
    failures = payload.get("batchItemFailures")
    if not failures:  # absent, null or empty: the whole batch succeeded
        return everything, True
    if not isinstance(failures, list):
        return set(), False
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in everything:
            return set(), False  # Lambda fails the whole batch on a bad identifier
        failed.add(identifier)
    return everything - failed, True


class QueuePoller:
    """Polls one queue for one mapping and invokes its function (see the module docstring)."""

    def __init__(
        self,
        mapping: EventSourceMappingSpec,
        queue: QueueSpec,
        region: str,
        endpoint: str,
        invoke: InvokeFn,
        reserved_concurrency: int | None = None,
    ) -> None:
        self.mapping = mapping
        self.queue = queue
        self.region = region
        self._endpoint = endpoint
        self._invoke = invoke
        limit = mapping.maximum_concurrency or DEFAULT_MAX_CONCURRENCY
        if reserved_concurrency is not None:
            limit = min(limit, reserved_concurrency)
        self.concurrency = max(0, limit)
        self.counters: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._slots = asyncio.Semaphore(max(1, self.concurrency))
        # One ReceiveMessage at a time: moto's receive checks a message's visibility and
        # marks it received without a lock, so two concurrent receives (one per receiver)
        # can both get the same message, which SQS would not do within its visibility
        # timeout. Processing stays concurrent; only the (fast, or idle) receive waits.
        self._receiving = asyncio.Lock()
        self._receivers: list[asyncio.Task[None]] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._client: Any = None
        self.queue_url = local_queue_url(endpoint, queue)

    @property
    def label(self) -> str:
        mapping = self.mapping
        return f"{self.region} {mapping.logical_id} ({self.queue.name} -> {mapping.function})"

    async def start(self) -> None:
        if not self.mapping.enabled:
            log.info("%s: disabled (Enabled: false); not polling", self.label)
            return
        if self.concurrency == 0:
            log.warning("%s: the function's reserved concurrency is 0; not polling", self.label)
            return
        receivers = min(self.concurrency, MAX_RECEIVERS)
        self._executor = ThreadPoolExecutor(
            max_workers=receivers + 4, thread_name_prefix=f"sqs-{self.mapping.logical_id}"
        )
        self._client = await self._call(self._make_client, receivers + 4)
        self._receivers = [asyncio.create_task(self._receive_loop()) for _ in range(receivers)]

    def _make_client(self, pool: int) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "sqs",
            region_name=self.region,
            endpoint_url=self._endpoint,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
            config=Config(
                retries={"max_attempts": 1},
                read_timeout=POLL_WAIT_SECONDS + 10,
                connect_timeout=5,
                max_pool_connections=pool,
            ),
        )

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def stop(self) -> None:
        tasks = [*self._receivers, *self._batches]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._receivers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) until no batch is being processed; True when idle."""
        deadline = time.monotonic() + timeout
        while self._batches and time.monotonic() < deadline:
            await asyncio.wait(set(self._batches), timeout=deadline - time.monotonic())
        return not self._batches

    def stats(self) -> dict[str, Any]:
        return {
            "queue": self.queue.name,
            "function": self.mapping.function,
            "enabled": self.mapping.enabled,
            "batchSize": self.mapping.batch_size,
            "maximumConcurrency": self.concurrency,
            "reportBatchItemFailures": self.mapping.report_batch_item_failures,
            "inFlight": self.in_flight,
            "peakConcurrency": self.peak_in_flight,
            **{name: self.counters[name] for name in COUNTERS},
        }

    # ----------------------------------------------------------------- polling

    async def _receive_loop(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                messages = await self._gather_batch()
            except asyncio.CancelledError:
                self._slots.release()
                raise
            except Exception as exc:
                self._slots.release()
                self.counters["receive_errors"] += 1
                log.debug("%s: ReceiveMessage failed: %s", self.label, exc)
                await asyncio.sleep(ERROR_BACKOFF_SECONDS)
                continue
            if not messages:
                self._slots.release()
                continue
            task = asyncio.create_task(self._process(messages))
            self._batches.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    async def _receive(self, count: int, wait: int) -> list[dict[str, Any]]:
        async with self._receiving:
            answer = await self._call(
                self._client.receive_message,
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return list(answer.get("Messages") or [])

    async def _gather_batch(self) -> list[dict[str, Any]]:
        size = max(1, self.mapping.batch_size)
        messages = await self._receive(min(10, size), POLL_WAIT_SECONDS)
        window = self.mapping.batching_window_seconds
        if not messages or window <= 0:
            return messages
        deadline = time.monotonic() + window
        payload = sum(len(m.get("Body", "")) for m in messages)
        while len(messages) < size and payload < MAX_PAYLOAD_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = await self._receive(min(10, size - len(messages)), int(remaining))
            if not more and remaining < 1:
                await asyncio.sleep(min(remaining, 0.05))
            messages.extend(more)
            payload += sum(len(m.get("Body", "")) for m in more)
        return messages

    async def _process(self, messages: list[dict[str, Any]]) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            records = [lambda_record(m, self.queue.arn, self.region) for m in messages]
            self.counters["batches"] += 1
            self.counters["records_received"] += len(records)
            result = await self._invoke(self.mapping.function, {"Records": records})
            ids = [record["messageId"] for record in records]
            succeeded, valid = succeeded_records(
                result, ids, self.mapping.report_batch_item_failures
            )
            if not result.ok:
                self.counters["invocation_errors"] += 1
            if not valid:
                self.counters["invalid_responses"] += 1
                log.warning(
                    "%s: invalid batchItemFailures response %r: the whole batch failed",
                    self.label,
                    result.result,
                )
            self.counters["records_succeeded"] += len(succeeded)
            self.counters["records_failed"] += len(ids) - len(succeeded)
            handles = [
                (m["MessageId"], m["ReceiptHandle"])
                for m in messages
                if m["MessageId"] in succeeded
            ]
            await self._delete(handles)
        finally:
            self.in_flight -= 1

    async def _delete(self, handles: list[tuple[str, str]]) -> None:
        for start in range(0, len(handles), 10):
            chunk = handles[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": h} for i, (_, h) in enumerate(chunk)]
            try:
                answer = await self._call(
                    self._client.delete_message_batch, QueueUrl=self.queue_url, Entries=entries
                )
            except Exception as exc:
                self.counters["delete_errors"] += len(chunk)
                log.warning("%s: DeleteMessageBatch failed: %s", self.label, exc)
                continue
            failed = answer.get("Failed") or []
            self.counters["delete_errors"] += len(failed)
            self.counters["records_deleted"] += len(chunk) - len(failed)
            for failure in failed:
                log.warning("%s: could not delete a message: %s", self.label, failure)
