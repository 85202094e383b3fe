"""EventBridge, locally: PutEvents, the templates' rules (moto's EventPattern) and targets.

Semantics kept from AWS:

* an event goes to every enabled rule of its bus whose pattern matches it;
* a Lambda target is invoked asynchronously (PutEvents does not wait for the handler); a failed
  invocation is retried like Lambda's asynchronous invocation (EventInvokeConfig's retries, default
  twice, back-off shortened locally), then dead-lettered: logged and counted, never lost silently;
* an event-bus target receives the event through that region's own PutEvents logic, marked as
  having arrived from another bus; such an event is never forwarded to a bus again (AWS's
  one-hop limit for bus-to-bus delivery). The sandbox logs and counts every such drop, so a
  rule that only works because of that limit is visible;
* a forward that fails for a reason EventBridge retries (a link cut by the chaos controls) is
  retried following the target's ``RetryPolicy`` (``MaximumRetryAttempts``,
  ``MaximumEventAgeInSeconds``) with exponential back-off and jitter, every delay and the age
  limit multiplied by ``--retry-time-scale``; an event that exhausts them goes to the target's
  ``DeadLetterConfig`` queue as EventBridge writes it (the event as the body, ``RULE_ARN``,
  ``TARGET_ARN``, ``ERROR_CODE``, ``ERROR_MESSAGE``, ``EXHAUSTED_RETRY_CONDITION`` and
  ``RETRY_ATTEMPTS`` as message attributes);
* with ``--bus-latency-ms`` each rule delivery and each forward first waits a log-normal
  delay (sandbox.bus_latency), in its own task: delays overlap, none holds a delivery slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from moto.events.models import EventPattern

from sandbox.bus_latency import BusLatency
from sandbox.resolver import ACCOUNT_ID, PARTITION
from sandbox.template_model import RegionModel, RuleSpec, TargetSpec

log = logging.getLogger("sandbox.events")

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
LAMBDA_ASYNC_RETRIES = 2  # Lambda's default for asynchronous invocations
RETRY_DELAYS = (0.2, 0.5)  # AWS waits about 1 and 2 minutes; the sandbox does not

# EventBridge documents "exponential back off and jitter" for up to 24 h / 185 attempts, not
# the delays. This model (AWS seconds): retry n waits a random 50-100 % of min(2^(n-1), 600);
# 185 attempts then take about 22 h, so both defaults end a failing delivery near 24 h.
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 600.0
DEFAULT_RETRY_TIME_SCALE = 0.001  # 24 h of retries take 86 s in the sandbox


@dataclass(frozen=True)
class ForwardFailure:
    """Why a forward to another bus failed; ``code`` is EventBridge's DLQ ``ERROR_CODE``."""

    code: str
    message: str
    retryable: bool


InvokeFn = Callable[[str, Any], Awaitable[tuple[bool, str]]]
ForwardFn = Callable[[str, str, dict[str, Any], str], Awaitable[ForwardFailure | None]]
# (queue ARN, message body, message attributes) -> an error, or None once the queue has it
DeadLetterFn = Callable[[str, str, dict[str, str]], Awaitable[str | None]]


def retry_delay(retry: int, scale: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``retry`` (1, 2, ...), time-scaled."""
    ceiling = min(RETRY_FIRST_DELAY * 2 ** (retry - 1), RETRY_MAX_DELAY)
    return ceiling * (rng or random).uniform(0.5, 1.0) * scale


class PutEventsError(Exception):
    """A whole-request error of PutEvents (HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class CompiledRule:
    spec: RuleSpec
    pattern: EventPattern


def _matches(pattern: EventPattern, event: dict[str, Any]) -> bool:
    return bool(pattern.matches_event(event))  # type: ignore[arg-type]


def bus_arn(region: str, name: str) -> str:
    return f"arn:{PARTITION}:events:{region}:{ACCOUNT_ID}:event-bus/{name}"


def rule_arn(region: str, rule: RuleSpec) -> str:
    """A rule's ARN; a rule on a custom bus has the bus name in it, as in AWS."""
    path = rule.name if rule.bus_name == "default" else f"{rule.bus_name}/{rule.name}"
    return f"arn:{PARTITION}:events:{region}:{ACCOUNT_ID}:rule/{path}"


def compile_rules(model: RegionModel) -> list[CompiledRule]:
    return [
        CompiledRule(rule, EventPattern.load(json.dumps(rule.pattern)))
        for rule in model.rules
        if rule.enabled
    ]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_path(document: Any, path: str) -> Any:
    """The subset of JSONPath EventBridge's InputPath uses: ``$`` and ``$.a.b``."""
    if path in ("$", ""):
        return document
    if not path.startswith("$."):
        raise ValueError(f"unsupported InputPath {path!r}")
    value = document
    for part in path[2:].split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def target_input(target: TargetSpec, event: dict[str, Any]) -> Any:
    """What the target receives: the event, or its Input / InputPath / InputTransformer."""
    if target.input is not None:
        return json.loads(target.input)
    if target.input_path is not None:
        return json_path(event, target.input_path)
    if target.input_transformer is not None:
        paths = target.input_transformer.get("InputPathsMap") or {}
        text = str(target.input_transformer.get("InputTemplate", ""))
        for name, path in paths.items():
            value = json_path(event, str(path))
            rendered = value if isinstance(value, str) else json.dumps(value)
            text = text.replace(f"<{name}>", rendered)
        text = text.replace("<aws.events.event.json>", json.dumps(event))
        try:
            return json.loads(text)
        except ValueError:
            return text
    return event


class RegionBus:
    """One region's buses and rules."""

    def __init__(
        self,
        model: RegionModel,
        invoke: InvokeFn,
        forward: ForwardFn,
        max_concurrency: int = 32,
        dead_letter: DeadLetterFn | None = None,
        retry_time_scale: float = DEFAULT_RETRY_TIME_SCALE,
        latency: BusLatency | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.region = model.region
        self.buses = set(model.buses)
        self.rules = compile_rules(model)
        self._async_retries = dict(model.async_retries)
        self._invoke = invoke
        self._forward = forward
        self._dead_letter = dead_letter
        self.retry_time_scale = retry_time_scale
        self.latency = latency
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self.counters: Counter[str] = Counter()
        self._reported: set[str] = set()

    # ----------------------------------------------------------------- PutEvents

    def put_events(self, request: dict[str, Any]) -> dict[str, Any]:
        entries = request.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_ENTRIES:
            raise PutEventsError(
                "ValidationException", f"Entries must hold 1 to {MAX_ENTRIES} entries"
            )
        size = sum(len(json.dumps(entry)) for entry in entries)
        if size > MAX_REQUEST_BYTES:
            raise PutEventsError(
                "ValidationException",
                f"Total size of the entries in the request is over the limit ({size} bytes)",
            )
        results = [self._put_entry(entry) for entry in entries]
        failed = sum(1 for result in results if "ErrorCode" in result)
        self.counters["put_entries"] += len(entries)
        self.counters["put_failed"] += failed
        return {"FailedEntryCount": failed, "Entries": results}

    def _put_entry(self, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict):
            return {"ErrorCode": "InvalidArgument", "ErrorMessage": "entry is not an object"}
        for field in ("Source", "DetailType", "Detail"):
            if not entry.get(field):
                return {"ErrorCode": "InvalidArgument", "ErrorMessage": f"{field} is required"}
        try:
            detail = json.loads(entry["Detail"])
        except (TypeError, ValueError):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is not valid JSON"}
        if not isinstance(detail, dict):
            return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is not an object"}
        bus = str(entry.get("EventBusName") or "default")
        if bus.startswith("arn:"):
            prefix = bus_arn(self.region, "")
            if not bus.startswith(prefix):
                return {
                    "ErrorCode": "InvalidArgument",
                    "ErrorMessage": f"{bus} is not an event bus of {self.region}",
                }
            bus = bus[len(prefix) :]
        if bus not in self.buses:
            return {
                "ErrorCode": "ResourceNotFoundException",
                "ErrorMessage": f"Event bus {bus} does not exist.",
            }
        timestamp = entry.get("Time")
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": ACCOUNT_ID,
            "time": _iso(float(timestamp) if timestamp is not None else time.time()),
            "region": self.region,
            "resources": list(entry.get("Resources") or []),
            "detail": detail,
        }
        self.dispatch(bus, event, arrived_from=None)
        return {"EventId": event["id"]}

    # ----------------------------------------------------------------- rules and targets

    def dispatch(self, bus: str, event: dict[str, Any], arrived_from: str | None) -> None:
        """Apply the bus's rules to ``event``; deliveries run in the background."""
        if arrived_from is not None:
            self.counters["received_from_other_bus"] += 1
        for rule in self.rules:
            if rule.spec.bus_name != bus or not _matches(rule.pattern, event):
                continue
            self.counters["matched"] += 1
            self.counters[f"matched:{rule.spec.logical_id}"] += 1
            for target in rule.spec.targets:
                self._deliver(rule.spec, target, bus, event, arrived_from)

    def _deliver(
        self,
        rule: RuleSpec,
        target: TargetSpec,
        bus: str,
        event: dict[str, Any],
        arrived_from: str | None,
    ) -> None:
        label = f"rule {rule.logical_id} target {target.target_id}"
        if target.kind == "bus":
            if arrived_from is not None:
                self.counters["dropped_cross_bus"] += 1
                log.warning(
                    "%s: %s: dropped event %s (%s): it arrived from bus %s, and EventBridge "
                    "does not forward an event that came from another bus again",
                    self.region, label, event["id"], event.get("detail-type"), arrived_from,
                )  # fmt: skip
                return
            # Not in a slot: a forward waiting out its back-off must not hold up deliveries.
            self._spawn(
                self._forward_to_bus(rule, label, target, bus, event),
                slotted=False,
                delay=self._delay(),
            )
        elif target.kind == "lambda":
            assert target.function is not None
            try:
                payload = target_input(target, event)
            except ValueError as exc:
                self.counters["dead_lettered"] += 1
                log.error("%s: %s: cannot build input: %s", self.region, label, exc)
                return
            self._spawn(
                self._invoke_with_retries(label, target, payload, event["id"]), delay=self._delay()
            )
        else:
            self.counters["unsupported_target"] += 1
            log.info(
                "%s: %s: target %s not emulated; event dropped", self.region, label, target.arn
            )

    def _delay(self) -> float:
        """The emulated latency of one delivery or forward (--bus-latency-ms), in seconds."""
        if self.latency is None:
            return 0.0
        self.counters["latency_delayed"] += 1
        return self.latency.draw_seconds(self._rng)

    def _spawn(self, work: Awaitable[None], slotted: bool = True, delay: float = 0.0) -> None:
        async def run() -> None:
            # Each delivery waits in its own task, before taking a slot: delays overlap and
            # never hold up other deliveries. The task counts as in flight while it waits.
            if delay > 0:
                await asyncio.sleep(delay)
            if not slotted:
                await work
                return
            async with self._slots:
                await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward_to_bus(
        self, rule: RuleSpec, label: str, target: TargetSpec, bus: str, event: dict[str, Any]
    ) -> None:
        assert target.bus_region is not None and target.bus_name is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.max_age_seconds * self.retry_time_scale
        attempts = 0
        while True:
            attempts += 1
            async with self._slots:
                failure = await self._forward(
                    target.bus_region, target.bus_name, event, bus_arn(self.region, bus)
                )
            if failure is None:
                self.counters["forwarded"] += 1
                if attempts > 1:
                    self.counters["forwarded_after_retry"] += 1
                return
            if not failure.retryable:
                self._report_unforwardable(label, event, failure.message)
                return
            retry_at = loop.time() + retry_delay(attempts, self.retry_time_scale)
            if attempts > target.max_retries:
                condition = "MaximumRetryAttempts"
            elif retry_at > deadline:
                condition = "MaximumEventAgeInSeconds"
            else:
                self.counters["forward_retries"] += 1
                await asyncio.sleep(max(0.0, retry_at - loop.time()))
                continue
            await self._forward_dead_letter(
                rule, label, target, event, failure, condition, attempts
            )
            return

    def _report_unforwardable(self, label: str, event: dict[str, Any], error: str) -> None:
        self.counters["forward_failed"] += 1
        level = logging.DEBUG if error in self._reported else logging.WARNING
        self._reported.add(error)
        log.log(
            level,
            "%s: %s: event %s not forwarded: %s%s",
            self.region,
            label,
            event["id"],
            error,
            "" if level == logging.DEBUG else " (counted; reported once)",
        )

    async def _forward_dead_letter(
        self,
        rule: RuleSpec,
        label: str,
        target: TargetSpec,
        event: dict[str, Any],
        failure: ForwardFailure,
        condition: str,
        attempts: int,
    ) -> None:
        self.counters["dead_lettered"] += 1
        error: str | None = "the target has no DeadLetterConfig"
        if target.dead_letter_arn and self._dead_letter is not None:
            attributes = {
                "RULE_ARN": rule_arn(self.region, rule),
                "TARGET_ARN": target.arn,
                "ERROR_CODE": failure.code,
                "ERROR_MESSAGE": failure.message,
                "EXHAUSTED_RETRY_CONDITION": condition,
                "RETRY_ATTEMPTS": str(attempts - 1),
            }
            error = await self._dead_letter(target.dead_letter_arn, json.dumps(event), attributes)
        if error is None:
            self.counters["dead_letter_queued"] += 1
            log.warning(
                "%s: %s: event %s not forwarded after %d attempts (%s: %s); sent to %s",
                self.region, label, event["id"], attempts, condition, failure.message,
                target.dead_letter_arn,
            )  # fmt: skip
        else:
            self.counters["dead_letter_lost"] += 1
            log.error(
                "%s: %s: event %s not forwarded after %d attempts (%s: %s) and not dead-lettered: "
                "%s; it is lost", self.region, label, event["id"], attempts, condition,
                failure.message, error,
            )  # fmt: skip

    async def _invoke_with_retries(
        self, label: str, target: TargetSpec, payload: Any, event_id: str
    ) -> None:
        assert target.function is not None
        # Lambda's asynchronous invocation retries a failed function (EventInvokeConfig's
        # MaximumRetryAttempts, default 2); EventBridge's own RetryPolicy covers failures to
        # hand the event to Lambda, which do not happen locally.
        attempts = 1 + self._async_retries.get(target.function, LAMBDA_ASYNC_RETRIES)
        error = ""
        for attempt in range(attempts):
            if attempt:
                self.counters["retries"] += 1
                await asyncio.sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
            ok, error = await self._invoke(target.function, payload)
            if ok:
                self.counters["delivered"] += 1
                return
        self.counters["dead_lettered"] += 1
        where = f" to {target.dead_letter_arn}" if target.dead_letter_arn else ""
        log.error(
            "%s: %s: event %s failed %d times (%s); dead-lettered%s (logged, not stored)",
            self.region, label, event_id, attempts, error, where,
        )  # fmt: skip

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for deliveries in flight."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(0.0, deadline - time.monotonic()))

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)
