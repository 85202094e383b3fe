"""--bus-latency-ms: the log-normal delay of each bus delivery (sandbox.bus_latency)."""

from __future__ import annotations

import math
import random

import pytest

from sandbox.bus_latency import BusLatency


def _quantile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def test_draws_have_the_given_median_and_99th_percentile() -> None:
    latency = BusLatency(148, 387)
    assert latency.mu == pytest.approx(math.log(148))
    assert latency.sigma == pytest.approx((math.log(387) - math.log(148)) / 2.3263)
    rng = random.Random(20261205)
    draws = sorted(latency.draw_seconds(rng) * 1000 for _ in range(40000))
    assert _quantile(draws, 0.50) == pytest.approx(148, rel=0.03)
    assert _quantile(draws, 0.99) == pytest.approx(387, rel=0.05)
    assert draws[0] > 0


def test_the_same_seed_gives_the_same_delays_and_equal_quantiles_a_constant() -> None:
    latency = BusLatency(148, 387)
    first = [latency.draw_seconds(random.Random(7)) for _ in range(3)]
    again = [latency.draw_seconds(random.Random(7)) for _ in range(3)]
    assert first == again
    assert BusLatency(50, 50).draw_seconds(random.Random(1)) == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("148", "expected P50,P99"),
        ("148,387,500", "expected P50,P99"),
        ("a,387", "must be numbers"),
        ("400,100", "p50 <= p99"),
        ("0,100", "0 < p50"),
        ("nan,100", "finite"),
    ],
)
def test_bad_values_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        BusLatency.parse(text)
    assert BusLatency.parse(" 148 , 387 ") == BusLatency(148, 387)
