"""bench/latency_model.py: log-normal hops fitted to (p50, p99), paths summed by draws."""

from __future__ import annotations

import dataclasses
import random
import statistics

from bench import latency_model as model


def test_a_hop_reproduces_its_p50_and_p99() -> None:
    hop = model.HOPS["eventbridge_lambda"]
    rng = random.Random(1)
    draws = sorted(hop.draw(rng) for _ in range(40000))
    assert abs(statistics.median(draws) - hop.p50_ms) < 0.03 * hop.p50_ms
    assert abs(draws[int(0.99 * len(draws))] - hop.p99_ms) < 0.06 * hop.p99_ms


def test_paths_sum_draws_not_percentiles() -> None:
    """The median of a sum of skewed hops is above the sum of their medians, its p99 well
    below the sum of their p99s (every hop at its worst at once)."""
    hops = ["apigw_ws_lambda", "lambda_warm", "dynamodb_read", "dynamodb_write"]
    hops += ["eventbridge_lambda", "lambda_warm", "dynamodb_write", "dynamodb_query"]
    hops += ["connections_post"]
    found = model.predict(model.PATHS["today"])
    assert found["delivery_p50_ms"] >= sum(model.HOPS[name].p50_ms for name in hops)
    assert found["delivery_p99_ms"] < 0.8 * sum(model.HOPS[name].p99_ms for name in hops)
    assert found == model.predict(model.PATHS["today"])  # a fixed seed: reproducible


def test_the_fast_path_skips_the_bus_and_its_ack_waits_for_every_local_post() -> None:
    today = model.predict(model.PATHS["today"])
    fast_1 = model.predict(model.PATHS["fast path"], members=1)
    fast_10 = model.predict(model.PATHS["fast path"], members=10)
    assert fast_10["delivery_p99_ms"] < today["delivery_p50_ms"]
    assert fast_10["ack_p99_ms"] > fast_1["ack_p99_ms"] > today["ack_p99_ms"]
    assert abs(fast_10["delivery_p50_ms"] - fast_1["delivery_p50_ms"]) <= 3  # other draws


def test_only_the_paths_that_use_a_hop_move_with_it() -> None:
    slower = dict(model.HOPS)
    slower["eventbridge_lambda"] = dataclasses.replace(
        slower["eventbridge_lambda"], p50_ms=300, p99_ms=800
    )
    before = {name: model.predict(path) for name, path in model.PATHS.items()}
    after = {name: model.predict(path, hops=slower) for name, path in model.PATHS.items()}
    assert after["today"]["delivery_p50_ms"] > before["today"]["delivery_p50_ms"] + 100
    assert after["fast path"] == before["fast path"]


def test_remote_delivery_grows_with_the_round_trip_and_every_pair_is_tabled() -> None:
    near = {**model.HOPS, "network": model.one_way_hop(("us-east-1", "eu-west-1"))}
    far = {**model.HOPS, "network": model.one_way_hop(("us-east-1", "ap-southeast-2"))}
    remote = model._remote
    assert model.predict(remote, hops=far)["delivery_p50_ms"] > (
        model.predict(remote, hops=near)["delivery_p50_ms"] + 50
    )
    table = model.tables(draws=2000)
    for first, second in model.REGION_PAIRS:
        assert f"| {first} -> {second} " in table
    assert "(assumption)" in table and "bitesizedserverless.com" in table
