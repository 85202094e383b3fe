"""Smoke tests of the benchmark code (python -m bench): the model, the table, the JSON keys,
the e2e tally and one tiny real fan-out run. No sandbox: those parts run in `make bench`."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench import e2e, latency, report
from bench.fanout import measure_fanout
from bench.fanout_model import Parameters, predict, presence_rps, simulate

# --- model -----------------------------------------------------------------------------------


def test_small_room_is_delivered_in_process() -> None:
    found = simulate(Parameters(members=1000, rate_per_worker=1000, shard_threshold=2000))
    assert found.shards == 0 and found.workers_used == 1
    # handler start + one page of 1,000 ids (a round trip + 200 KB at 30 ms/MB) + posting
    page_s = 0.005 + 0.030 * 1000 * 200 / (1024 * 1024)
    assert found.predicted_wall_s == pytest.approx(0.02 + page_s + 1.0)


def test_sharded_room_is_capped_by_the_budget_and_never_beats_the_bound() -> None:
    p = Parameters(members=50_000, rate_per_worker=2000, budget=5000, warm_workers=1000)
    found = simulate(p)
    assert found.shards == 50  # pages of one shard's ids: 50 shards of 1,000
    assert found.predicted_wall_s >= 50_000 / 5000  # the budget, not the workers, bounds it
    assert found.predicted_wall_s < 50_000 / 5000 * 1.1
    assert found.ratio_vs_bound == pytest.approx(found.predicted_wall_s / 5.0)


def test_more_workers_or_budget_is_never_slower() -> None:
    slow = simulate(Parameters(members=20_000, rate_per_worker=500, max_concurrency=4))
    fast = simulate(Parameters(members=20_000, rate_per_worker=500, max_concurrency=20))
    assert fast.predicted_wall_s < slow.predicted_wall_s
    assert slow.workers_used == 4


def test_cold_workers_cost_their_start() -> None:
    warm = predict(20_000, 1500)
    assert warm["predicted_cold_wall_s"] > warm["predicted_wall_s"]
    assert warm["bound_s"] == 2.0


def test_presence_formulas() -> None:
    # docs/architecture.md: live presence costs 2cN^2/60 posts/s (10,000 members, 1 %: 33,000)
    live = presence_rps(Parameters(members=10_000, presence_mode="live"))
    assert live == pytest.approx(2 * 0.01 * 10_000**2 / 60 + 10_000 * 0.01 / 60 * 2)
    quiet = presence_rps(Parameters(members=10_000))  # auto: above presenceLiveMaxMembers
    assert quiet == pytest.approx(10_000 * 0.01 / 60 * 2)
    batched = presence_rps(Parameters(members=10_000, presence_mode="batched"))
    assert batched == pytest.approx(10_000 / 5.0 + quiet, rel=1e-3)  # every window changed


def test_presence_that_eats_the_quota_is_an_error() -> None:
    with pytest.raises(ValueError, match="presence"):
        simulate(Parameters(members=10_000, presence_mode="live", presence_live_max_members=0))


# --- report ----------------------------------------------------------------------------------


def test_aggregate_takes_median_min_max_per_key_and_nests() -> None:
    runs = [
        {"a": 1, "b": 2.0, "n": {"x": 10}, "s": "first"},
        {"a": 3, "b": float("nan"), "n": {"x": 30}, "s": "second"},
        {"a": 2, "b": 4.0, "n": {"x": 20}, "s": "third"},
    ]
    medians, spread = report.aggregate(runs)
    assert medians == {"a": 2, "b": 3.0, "n": {"x": 20}, "s": "first"}
    assert spread == {"a": [1, 3], "b": [2.0, 4.0], "n": {"x": [10, 30]}}


def test_table_shows_rows_targets_and_parts_not_run() -> None:
    results = {"fanout": {"deliveries_per_s": 1712.4, "cpu_ms_per_delivery": 0.41}}
    spread = {"fanout": {"deliveries_per_s": [1600.0, 1800.0], "cpu_ms_per_delivery": [0.4, 0.5]}}
    table = report.format_table(results, spread, {"e2e": "no sandbox"}, {"fanout": 3})
    lines = table.splitlines()
    assert lines[0].split() == ["part", "figure", "median", "min", "max", "runs", "target"]
    (row,) = [line for line in lines if "deliveries/s" in line]
    assert "1,712" in row and "1,600" in row and "1,800" in row and ">= 1500" in row
    assert any("e2e" in line and "not run: no sandbox" in line for line in lines)
    assert report.fmt(float("nan")) == "nan" and report.fmt(None) == "-"


def test_json_has_the_issue_keys_for_the_model(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    status = bench_main.main(["--parts", "model", "--quick", "--json", str(out)])
    assert status == 0
    document = json.loads(out.read_text())
    for size in ("20000", "100000"):
        assert {"predicted_wall_s", "bound_s", "presence_rps"} <= set(document["model"][size])
    assert document["errors"] == {}
    assert document["meta"]["machine"]["cpus"]


def test_a_part_that_cannot_run_is_reported_and_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = bench_main.main(["--parts", "e2e", "--quick", "--cdk-out", str(tmp_path)])
    assert status == 1
    assert "not run: no synthesized app" in capsys.readouterr().out


def test_a_failing_sandbox_part_keeps_the_others_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import soak
    from tests.e2e import harness

    class FakeSandbox:
        stopped = False

        def __init__(self, *args: Any) -> None:
            pass

        def start(self) -> FakeSandbox:
            return self

        def stop(self) -> None:
            FakeSandbox.stopped = True

    async def measured(*args: Any) -> dict[str, Any]:
        return {"lost": 0, "messages": 10}

    async def failing(*args: Any) -> dict[str, Any]:
        raise RuntimeError("the soak lost its sandbox")

    monkeypatch.setattr(harness, "SandboxProcess", FakeSandbox)
    monkeypatch.setattr(bench_main, "_synthesized", lambda args: tmp_path)
    monkeypatch.setattr(e2e, "measure_e2e", measured)
    monkeypatch.setattr(soak, "run_soak", failing)
    args = bench_main.parse_args(["--parts", "e2e,soak", "--quick", "--e2e-runs", "2"])
    document = bench_main.run(args, lambda line: None)
    assert document["e2e"] == {"lost": 0, "messages": 10}
    assert document["meta"]["runs"] == {"e2e": 2}
    assert document["errors"] == {"soak": "RuntimeError: the soak lost its sandbox"}
    assert FakeSandbox.stopped


# --- e2e tally -------------------------------------------------------------------------------


class FakeClient:
    def __init__(self, arrivals: list[tuple[float, str]]) -> None:
        self.arrivals = arrivals


def test_tally_counts_lost_duplicated_and_cross_region_latency() -> None:
    room = e2e.Room("r")
    near = FakeClient([(1.010, "m0"), (1.020, "m1")])
    far = FakeClient([(1.050, "m0"), (1.060, "m0"), (9.0, "stray")])  # m1 lost
    room.members = [("us-east-1", near), ("eu-west-1", far)]  # type: ignore[list-item]
    sent = {"m0": (1.0, "us-east-1", room), "m1": (1.0, "us-east-1", room)}
    found = e2e.tally([room], sent, send_s=1.0)
    assert found["lost"] == 1
    assert found["duplicated"] == 2  # m0 twice, and a body never sent
    assert found["p50_ms"] == pytest.approx(50.0)
    assert found["same_region_p50_ms"] == pytest.approx(15.0)


def test_latency_tally_splits_paths_leaves_the_sender_out_and_times_acks() -> None:
    room = e2e.Room("r")
    sender = FakeClient([(1.005, "m0"), (2.005, "m1")])
    near = FakeClient([(1.030, "m0"), (2.040, "m1"), (2.041, "m1")])  # m1 twice
    far = FakeClient([(1.400, "m0"), (9.0, "stray")])  # m1 lost
    room.members = [  # type: ignore[list-item]
        ("us-east-1", sender),
        ("us-east-1", near),
        ("eu-west-1", far),
    ]
    sent = {"m0": (1.0, "us-east-1", room), "m1": (2.0, "us-east-1", room)}
    senders: dict[str, Any] = {"m0": sender, "m1": sender}
    found = latency.tally([room], sent, senders, acks={"m0": 0.050})
    assert found["same_region_p50_ms"] == pytest.approx(30.0)  # not the sender's 5 ms
    assert found["same_region_p99_ms"] == pytest.approx(40.0)
    assert found["cross_region_p50_ms"] == pytest.approx(400.0)
    assert found["ack_p99_ms"] == pytest.approx(50.0)
    assert (found["unacked"], found["lost"], found["duplicated"]) == (1, 1, 2)


def test_latency_compare_gives_the_targets_figures() -> None:
    on = {"ack_p99_ms": 120.0, "cross_region_p99_ms": 900.0, "lost": 0, "duplicated": 1}
    off = {"ack_p99_ms": 100.0, "cross_region_p99_ms": 1000.0, "lost": 2, "duplicated": 0}
    row = latency.compare(on, off)
    assert row["ack_p99_growth_ms"] == pytest.approx(20.0)
    assert row["cross_region_p99_ratio"] == pytest.approx(0.9)
    assert (row["lost"], row["duplicated"]) == (2, 1)
    table = report.format_table({"latency": row}, {}, {}, {"latency": 1})
    assert "latency: ack p99 growth (on - off) (ms)" in table and "<= 30" in table


def test_latency_bus_delay_is_the_models_eventbridge_hop() -> None:
    assert latency.bus_latency_option() == ("--bus-latency-ms", "148,387")


def test_every_e2e_room_has_members_in_every_region() -> None:
    regions = ("a", "b", "c")
    rooms: dict[int, set[str]] = {}
    for number in range(300):
        rooms.setdefault(e2e.room_of(number, 10, 30), set()).add(regions[number % 3])
    assert len(rooms) == 30 and all(found == set(regions) for found in rooms.values())


def test_percentile_is_nearest_rank() -> None:
    ordered = [float(n) for n in range(1, 101)]
    assert e2e.percentile(ordered, 0.99) == 99.0
    assert e2e.percentile(ordered, 0.5) == 50.0
    assert math.isnan(e2e.percentile([], 0.5))


# --- one tiny real fan-out -------------------------------------------------------------------


def test_fanout_bench_runs_end_to_end_with_every_post_once() -> None:
    started = time.monotonic()
    found: dict[str, Any] = measure_fanout(members=30, sequential_members=5, latency_ms=1.0)
    assert {"deliveries_per_s", "ratio_vs_sequential", "cpu_ms_per_delivery"} <= set(found)
    assert found["delivered"] == 30 and found["duplicates"] == 0
    assert time.monotonic() - started < 120


def test_cold_start_rows_are_one_per_handler_beside_the_1_3x_target() -> None:
    results = {
        "cold_start": {
            "boto3_ms": 100.0,
            "ratio_vs_boto3": {"authorizer": 1.21, "client_message_handler": 1.34},
            "worst_ratio_vs_boto3": 1.34,
            "deferred_loaded_at_init": 0,
        }
    }
    lines = report.format_table(results, {}, {}, {"cold_start": 5}).splitlines()
    (authorizer,) = [line for line in lines if "init vs boto3: authorizer" in line]
    (client,) = [line for line in lines if "init vs boto3: client_message_handler" in line]
    assert "1.21" in authorizer and "<= 1.3" in authorizer
    assert "1.34" in client and "<= 1.3" in client
    assert any("worst handler init vs boto3 (x)" in line and "<= 1.3" in line for line in lines)
    assert any("deferred modules loaded at init" in line and "= 0" in line for line in lines)


def test_soak_tally_counts_redelivered_frames_and_never_below_zero() -> None:
    from collections import Counter
    from types import SimpleNamespace

    from bench import soak

    session = SimpleNamespace(
        acked={"a#1": "m1", "a#2": "m2", "a#3": "m3"},
        # m1 and m2 came live (m2 twice), m3 only from history on resume
        shown=[("m1", "a#1"), ("m2", "a#2"), ("m3", "a#3")],
        message_frames=Counter({"m1": 1, "m2": 2}),
        shown_by_frame={"m1", "m2"},
        sink=SimpleNamespace(lines=[]),
    )
    client = SimpleNamespace(
        user="a", region="us-east-1", room="r", session=session, home_url="ws://home", lines_sent=3
    )
    found = soak.tally([client], seconds=1.0)  # type: ignore[list-item]
    assert (found["lost"], found["duplicated"], found["redelivered"]) == (0, 0, 1)


def test_soak_counts_a_live_frame_after_the_history_copy_as_redelivered() -> None:
    """m3 is shown from history (a resume), then its live frame arrives: that frame showed
    nothing, as the second frame of m1 did not."""
    from types import SimpleNamespace

    from bench import soak
    from multiregion_chat.clients.options import ClientOptions

    session = soak.SoakSession("r", ClientOptions())

    def message(mid: str, body: str) -> dict[str, Any]:
        return {"type": "message", "room": "r", "id": mid, "body": body, "sender": "a"}

    session.show([message("m3", "a#3")])  # from history
    session.receive_frame(message("m1", "a#1"))  # shown live
    session.receive_frame(message("m3", "a#3"))  # live, after the history copy
    session.receive_frame(message("m1", "a#1"))  # again
    session.held["r"] = []
    session.receive_frame(message("m5", "a#5"))  # held during a join, then shown: not again
    session.show(session.held.pop("r"))
    session.acked = {"a#1": "m1", "a#3": "m3", "a#5": "m5"}
    client = SimpleNamespace(
        user="a", region="us-east-1", room="r", session=session, home_url="ws://home", lines_sent=3
    )
    found = soak.tally([client], seconds=1.0)  # type: ignore[list-item]
    assert (found["lost"], found["duplicated"], found["redelivered"]) == (0, 0, 2)
