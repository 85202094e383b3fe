"""The local EventBridge: PutEvents, rule matching (moto's EventPattern), targets, the hop rule."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from sandbox import eventbus
from sandbox.assembly import load_stacks
from sandbox.bus_latency import BusLatency
from sandbox.eventbus import ForwardFailure, PutEventsError, RegionBus, target_input
from sandbox.template_model import RegionModel, RuleSpec, TargetSpec, build_models

CHAT = {"Source": "chat.chat", "DetailType": "chat.message", "EventBusName": "chat-bus"}


class Mesh:
    """Every region's RegionBus, wired together as the sandbox wires them."""

    def __init__(
        self, models: list[RegionModel], failures: int = 0, latency: BusLatency | None = None
    ) -> None:
        self.invocations: list[tuple[str, str, Any]] = []
        self.invoked_at: list[tuple[str, float]] = []  # (region, loop time)
        self.failures = failures
        self.buses: dict[str, RegionBus] = {}
        for model in models:
            self.buses[model.region] = RegionBus(
                model, self._invoker(model.region), self.forward, latency=latency
            )

    def _invoker(self, region: str) -> Any:
        async def invoke(function: str, payload: Any) -> tuple[bool, str]:
            if self.failures:
                self.failures -= 1
                return False, "ValueError: boom"
            self.invocations.append((region, function, payload))
            self.invoked_at.append((region, asyncio.get_running_loop().time()))
            return True, ""

        return invoke

    async def forward(
        self, region: str, bus: str, event: dict[str, Any], source: str
    ) -> ForwardFailure | None:
        if region not in self.buses:
            return ForwardFailure("RESOURCE_NOT_FOUND", f"region {region} not running", False)
        self.buses[region].dispatch(bus, dict(event), arrived_from=source)
        return None

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not any(b.in_flight for b in self.buses.values()):
                return


def entry(origin: str, **detail: Any) -> dict[str, Any]:
    return {**CHAT, "Detail": json.dumps({"originRegion": origin, "room": "r", **detail})}


def test_put_events_fans_out_across_regions_without_loops(chat_assembly: Path) -> None:
    async def scenario() -> Mesh:
        mesh = Mesh(build_models(load_stacks(chat_assembly), None))
        answer = mesh.buses["us-east-1"].put_events({"Entries": [entry("us-east-1")]})
        assert answer["FailedEntryCount"] == 0 and answer["Entries"][0]["EventId"]
        await mesh.settle()
        return mesh

    mesh = asyncio.run(scenario())
    regions = sorted(region for region, _, _ in mesh.invocations)
    assert regions == ["ap-northeast-1", "eu-west-1", "us-east-1"]
    event = mesh.invocations[0][2]
    assert event["source"] == "chat.chat" and event["detail-type"] == "chat.message"
    assert event["account"] == "000000000000" and event["region"] == "us-east-1"
    # The forwarding rules match originRegion == their own region only: nothing leans on
    # EventBridge's one-hop limit, so nothing is dropped.
    assert sum(b.counters["dropped_cross_bus"] for b in mesh.buses.values()) == 0
    assert mesh.buses["us-east-1"].counters["forwarded"] == 2


def test_a_rule_that_leans_on_the_hop_limit_is_counted(chat_assembly: Path) -> None:
    models = build_models(load_stacks(chat_assembly), None)
    for model in models:  # forwarding rules without the originRegion filter
        model.rules = [
            RuleSpec(
                r.logical_id, r.name, r.bus_name, {"source": ["chat.chat"]}, r.enabled, r.targets
            )
            for r in model.rules
        ]

    async def scenario() -> Mesh:
        mesh = Mesh(models)
        mesh.buses["eu-west-1"].put_events({"Entries": [entry("eu-west-1")]})
        await mesh.settle()
        return mesh

    mesh = asyncio.run(scenario())
    # Delivered once in each region; each of the 2 receiving regions drops its 2 re-forwards.
    assert len(mesh.invocations) == 3
    assert sum(b.counters["dropped_cross_bus"] for b in mesh.buses.values()) == 4


def test_put_events_validation(chat_assembly: Path) -> None:
    models = build_models(load_stacks(chat_assembly), ["us-east-1"])

    async def scenario() -> None:
        bus = Mesh(models).buses["us-east-1"]
        with pytest.raises(PutEventsError):
            bus.put_events({"Entries": []})
        with pytest.raises(PutEventsError):
            bus.put_events({"Entries": [entry("us-east-1")] * 11})
        with pytest.raises(PutEventsError, match="over the limit"):
            bus.put_events({"Entries": [entry("us-east-1", body="x" * 300_000)]})
        answer = bus.put_events(
            {
                "Entries": [
                    {**CHAT, "Detail": "not json"},
                    {**CHAT, "Detail": "[1]"},
                    {"Source": "s", "Detail": "{}"},
                    {**entry("us-east-1"), "EventBusName": "nope"},
                    {
                        **entry("us-east-1"),
                        "EventBusName": "arn:aws:events:us-east-1:000000000000:event-bus/chat-bus",
                    },
                ]
            }
        )
        codes = [e.get("ErrorCode") for e in answer["Entries"]]
        assert codes == [
            "MalformedDetail",
            "MalformedDetail",
            "InvalidArgument",
            "ResourceNotFoundException",
            None,
        ]
        assert answer["FailedEntryCount"] == 4

    asyncio.run(scenario())


def test_failed_invocations_are_retried_then_dead_lettered(
    chat_assembly: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(eventbus, "RETRY_DELAYS", (0.0, 0.0))
    models = build_models(load_stacks(chat_assembly), ["us-east-1"])

    async def scenario(failures: int) -> RegionBus:
        mesh = Mesh(models, failures=failures)
        bus = mesh.buses["us-east-1"]
        bus.put_events({"Entries": [entry("us-east-1")]})
        await mesh.settle()
        return bus

    recovered = asyncio.run(scenario(failures=2))
    assert recovered.counters["delivered"] == 1 and recovered.counters["retries"] == 2
    lost = asyncio.run(scenario(failures=3))
    assert lost.counters["dead_lettered"] == 1 and lost.counters["delivered"] == 0


def test_target_input_forms() -> None:
    event = {"id": "1", "detail": {"room": "r", "n": 2}}
    plain = TargetSpec("t", "arn", "lambda")
    assert target_input(plain, event) is event
    assert target_input(TargetSpec("t", "arn", "lambda", input='{"a":1}'), event) == {"a": 1}
    assert target_input(TargetSpec("t", "arn", "lambda", input_path="$.detail.room"), event) == "r"
    transformer = {
        "InputPathsMap": {"room": "$.detail.room", "n": "$.detail.n"},
        "InputTemplate": '{"where": "<room>", "count": <n>}',
    }
    assert target_input(TargetSpec("t", "arn", "lambda", input_transformer=transformer), event) == {
        "where": "r",
        "count": 2,
    }


def _failing_bus(
    chat_assembly: Path, letters: list[tuple[str, Any, dict[str, str]]], **limits: Any
) -> RegionBus:
    """us-east-1's bus whose forwards always fail as a cut link does; DLQ sends recorded."""
    model = build_models(load_stacks(chat_assembly), None)[0]

    async def forward(region: str, bus: str, event: dict[str, Any], source: str) -> Any:
        return ForwardFailure("CONNECTION_FAILURE", "the link is cut", True)

    async def dead_letter(arn: str, body: str, attributes: dict[str, str]) -> str | None:
        letters.append((arn, json.loads(body), attributes))
        return None

    async def invoke(function: str, payload: Any) -> tuple[bool, str]:
        return True, ""

    bus = RegionBus(model, invoke, forward, dead_letter=dead_letter, retry_time_scale=1e-6)
    for compiled in bus.rules:
        compiled.spec = dataclasses.replace(
            compiled.spec,
            targets=tuple(
                dataclasses.replace(t, dead_letter_arn="arn:aws:sqs:us-east-1:000000000000:dlq",
                                    **limits)
                for t in compiled.spec.targets
            ),
        )  # fmt: skip
    return bus


@pytest.mark.parametrize(
    ("limits", "condition", "retries"),
    [
        ({"max_retries": 2}, "MaximumRetryAttempts", "2"),
        ({"max_age_seconds": 0}, "MaximumEventAgeInSeconds", "0"),
    ],
)
def test_a_forward_that_keeps_failing_ends_in_the_targets_dlq(
    chat_assembly: Path, limits: dict[str, int], condition: str, retries: str
) -> None:
    letters: list[tuple[str, Any, dict[str, str]]] = []

    async def scenario() -> RegionBus:
        bus = _failing_bus(chat_assembly, letters, **limits)
        bus.put_events({"Entries": [entry("us-east-1")]})
        await bus.drain(30.0)
        return bus

    bus = asyncio.run(scenario())
    assert len(letters) == 2  # one per forwarding target (eu-west-1, ap-northeast-1)
    arn, event, attributes = letters[0]
    assert arn == "arn:aws:sqs:us-east-1:000000000000:dlq"
    assert event["detail"]["originRegion"] == "us-east-1" and event["source"] == "chat.chat"
    assert attributes["EXHAUSTED_RETRY_CONDITION"] == condition
    assert attributes["RETRY_ATTEMPTS"] == retries
    assert attributes["ERROR_CODE"] == "CONNECTION_FAILURE"
    assert attributes["RULE_ARN"].startswith("arn:aws:events:us-east-1:000000000000:rule/chat-bus/")
    assert {a["TARGET_ARN"] for _, _, a in letters} == {
        "arn:aws:events:eu-west-1:000000000000:event-bus/chat-bus",
        "arn:aws:events:ap-northeast-1:000000000000:event-bus/chat-bus",
    }
    assert bus.counters["dead_letter_queued"] == 2
    assert bus.counters["forward_retries"] == 2 * int(retries)


def test_retry_delays_grow_to_the_cap_with_jitter_and_scale() -> None:
    for retry in range(1, 200):
        ceiling = min(eventbus.RETRY_FIRST_DELAY * 2 ** (retry - 1), eventbus.RETRY_MAX_DELAY)
        delay = eventbus.retry_delay(retry, 0.001)
        assert ceiling * 0.0005 <= delay <= ceiling * 0.001


def test_bus_latency_delays_every_delivery_and_forward_without_serialising_them(
    chat_assembly: Path,
) -> None:
    """--bus-latency-ms with p50 = p99 = 300 ms: a local delivery waits one delay, a remote
    one a forward and a delivery (two); 20 events put at once all arrive within a few delays,
    not 20 of them one after the other."""
    delay = 0.3

    async def scenario() -> tuple[Mesh, float]:
        models = build_models(load_stacks(chat_assembly), None)
        mesh = Mesh(models, latency=BusLatency(delay * 1000, delay * 1000))
        started = asyncio.get_running_loop().time()
        for _ in range(20):
            mesh.buses["us-east-1"].put_events({"Entries": [entry("us-east-1")]})
        assert mesh.buses["us-east-1"].in_flight == 60  # waiting deliveries count as in flight
        while len(mesh.invocations) < 60:
            await asyncio.sleep(0.01)
            assert asyncio.get_running_loop().time() - started < 30 * delay, "serialised"
        return mesh, started

    mesh, started = asyncio.run(scenario())
    local = [at - started for region, at in mesh.invoked_at if region == "us-east-1"]
    remote = [at - started for region, at in mesh.invoked_at if region != "us-east-1"]
    assert len(local) == 20 and len(remote) == 40
    assert min(local) >= delay and min(remote) >= 2 * delay
    assert mesh.buses["us-east-1"].counters["latency_delayed"] == 20 + 40  # 20 local, 40 forwards
