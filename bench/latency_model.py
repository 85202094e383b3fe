"""The latency model of docs/performance.md ("Latency in AWS: the model"): predicted p50/p99
of a message's delivery and of the sender's ``ack``, per path, from published figures per hop.

``python -m bench.latency_model [--draws N] [--seed S] [--members M]`` prints the tables.

Each hop is a log-normal fitted to its (p50, p99): ``mu = ln p50``, ``sigma = (ln p99 -
ln p50) / z99``. A path is a sum of hops, drawn together ``draws`` times (a Monte Carlo with
a fixed seed, so the tables are reproducible); its p50 and p99 are the draws' percentiles.
Adding p99s would claim every hop is at its worst at once; adding p50s understates the
median of skewed sums; the draws need neither rule. Parallel posts (the fast path's ``ack``
waits for every local member's post) are the maximum of ``members`` draws. Hops are taken as
independent: a region having a bad minute on every service at once is outside the model.

Every figure names its source; ``assumption=True`` marks the ones no source gives (docs say
why each was chosen). Network time between the client and its region's API Gateway edge is
left out: it is the same for every path.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "HOPS",
    "PATHS",
    "PATH_HOPS",
    "REGION_PAIRS",
    "Hop",
    "one_way_hop",
    "predict",
    "tables",
]

Z99 = 2.3263478740408408  # the standard normal's 99th percentile


@dataclass(frozen=True)
class Hop:
    """One step of a path: its p50 and p99 in ms, where they come from."""

    label: str
    p50_ms: float
    p99_ms: float
    source: str
    assumption: bool = False

    def draw(self, rng: random.Random) -> float:
        sigma = (math.log(self.p99_ms) - math.log(self.p50_ms)) / Z99
        return rng.lognormvariate(math.log(self.p50_ms), sigma)


BITESIZED = "bitesizedserverless.com, 'Serverless messaging: latency compared' (eu-west-1)"
HOPS: dict[str, Hop] = {
    "apigw_ws_lambda": Hop(
        "API Gateway WebSocket -> Lambda (a frame to the handler, its reply back)",
        15,
        45,
        "assumption: no published figure; anecdotes give 30-120 ms per API layer "
        "(forum.serverless.com 'Lambda call latency')",
        assumption=True,
    ),
    "lambda_warm": Hop(
        "Lambda, warm: the handler's own work between its AWS calls",
        3,
        12,
        "assumption: the handlers' CPU per frame here is 1-3 ms",
        assumption=True,
    ),
    "dynamodb_read": Hop(
        "DynamoDB GetItem (membership)",
        4,
        15,
        "AWS re:Post knowledge center 'DynamoDB high latency': single-digit ms "
        "averages for GetItem/PutItem; p99 an assumption",
        assumption=True,
    ),
    "dynamodb_write": Hop(
        "DynamoDB PutItem/UpdateItem (rate limit, history)",
        5,
        20,
        "as dynamodb_read",
        assumption=True,
    ),
    "dynamodb_query": Hop(
        "DynamoDB Query (a room's members, one page)",
        6,
        25,
        "as dynamodb_read (a Query's latency grows with its result set)",
        assumption=True,
    ),
    "put_events": Hop(
        "EventBridge PutEvents (the bus accepted the event)",
        20,
        60,
        "assumption: EventBridge publishes a PutEventsLatency metric but no figure "
        "(AWS Compute Blog 'Enhanced Amazon CloudWatch metrics for Amazon EventBridge')",
        assumption=True,
    ),
    "eventbridge_lambda": Hop(
        "EventBridge rule -> asynchronous Lambda (PutEvents call included)",
        148,
        387,
        f"{BITESIZED}, after the February 2023 update: p50 148, p90 241, p99 387",
    ),
    "eventbridge_forward": Hop(
        "EventBridge rule -> another region's bus (without the network)",
        148,
        387,
        "assumption: AWS publishes no figure for bus-to-bus delivery; taken as one "
        "more EventBridge delivery (the row above)",
        assumption=True,
    ),
    "connections_post": Hop(
        "@connections POST (API Gateway pushes the frame)",
        20,
        60,
        "assumption: the fan-out bench's 20 ms per post (docs/performance.md)",
        assumption=True,
    ),
}

# Round-trip times between regions (ms, averages), from the 2017 matrix of 'Latency between
# AWS global regions' as tabulated at acomputerscientistlearnsaws.blogspot.com/2017/04/
# aws-regions.html; cloudping.co (mda590/cloudping.co) publishes the current P50/P90 to
# refresh them. The one-way time is half, its p99 1.2x its p50 (assumption).
REGION_PAIRS: dict[tuple[str, str], float] = {
    ("us-east-1", "eu-west-1"): 80.5,
    ("us-east-1", "ap-northeast-1"): 145.3,
    ("eu-west-1", "ap-northeast-1"): 212.4,
    ("us-east-1", "ap-southeast-2"): 229.7,
}
ONE_WAY_P99_FACTOR = 1.2

Draw = Callable[[str], float]


def _sender_side(draw: Draw) -> float:
    """The frame into ClientMessageHandler, its membership read and rate-limit write."""
    return (
        draw("apigw_ws_lambda")
        + draw("lambda_warm")
        + draw("dynamodb_read")
        + draw("dynamodb_write")
    )


def _delivery(draw: Draw) -> float:
    """History write, the room's members, one post (a handler delivering to one member)."""
    return (
        draw("lambda_warm")
        + draw("dynamodb_write")
        + draw("dynamodb_query")
        + draw("connections_post")
    )


def _today_local(draw: Draw, members: int) -> tuple[float, float]:
    sent = _sender_side(draw)
    ack = sent + draw("put_events")
    delivered = sent + draw("eventbridge_lambda") + _delivery(draw)
    return delivered, ack


def _fast_local(draw: Draw, members: int) -> tuple[float, float]:
    accepted = _sender_side(draw) + draw("put_events")
    stored = accepted + draw("dynamodb_write") + draw("dynamodb_query")
    posts = [draw("connections_post") for _ in range(max(1, members))]
    return stored + posts[0], stored + max(posts)  # the ack waits for every local post


def _remote(draw: Draw, members: int) -> tuple[float, float]:
    """A member in another region: the same with the fast path (its region's handler
    delivers after the forward). ``network`` is the pair's one-way time; no ack here."""
    sent = _sender_side(draw)
    forwarded = sent + draw("eventbridge_forward") + draw("network")
    return forwarded + draw("eventbridge_lambda") + _delivery(draw), math.nan


_SENDER = "API Gateway -> ClientMessageHandler, membership read, rate-limit write"
_DELIVERY = "EventBusMessageHandler: history write, member query, post"
PATH_HOPS = {
    "today": f"{_SENDER}; PutEvents -> rule -> async Lambda; {_DELIVERY}. Ack: {_SENDER}, "
    "PutEvents",
    "fast path": f"{_SENDER}, PutEvents; ClientMessageHandler: history write, member query, "
    "posts. Ack: after the slowest local post",
    "remote": f"{_SENDER}; PutEvents -> rule -> other bus; network; rule -> async Lambda; "
    f"{_DELIVERY}",
}

# (path, how it is drawn) of a member in the sender's region.
PATHS: dict[str, Callable[[Draw, int], tuple[float, float]]] = {
    "today": _today_local,
    "fast path": _fast_local,
}


def _percentiles(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def predict(
    path: Callable[[Draw, int], tuple[float, float]],
    *,
    draws: int = 20000,
    seed: int = 17,
    members: int = 10,
    hops: dict[str, Hop] | None = None,
) -> dict[str, float]:
    """p50/p99 (ms) of delivery and of the ack over ``draws`` draws of ``path``."""
    rng = random.Random(seed)
    table = hops if hops is not None else HOPS

    def draw(name: str) -> float:
        return table[name].draw(rng)

    delivered, acked = zip(*(path(draw, members) for _ in range(draws)), strict=True)
    out: dict[str, float] = {}
    out["delivery_p50_ms"], out["delivery_p99_ms"] = _percentiles(delivered)
    if not any(math.isnan(value) for value in acked):
        out["ack_p50_ms"], out["ack_p99_ms"] = _percentiles(acked)
    return {key: round(value) for key, value in out.items()}


def one_way_hop(pair: tuple[str, str]) -> Hop:
    half = REGION_PAIRS[pair] / 2
    return Hop(f"network {pair[0]} -> {pair[1]}", half, half * ONE_WAY_P99_FACTOR, "RTT / 2")


def tables(*, draws: int = 20000, seed: int = 17, members: int = 10) -> str:
    """The markdown tables of docs/performance.md: hops, then predictions per path."""
    lines = ["| hop | p50 ms | p99 ms | source |", "|---|---:|---:|---|"]
    for hop in HOPS.values():
        mark = " (assumption)" if hop.assumption and "assumption" not in hop.source else ""
        lines.append(f"| {hop.label} | {hop.p50_ms:g} | {hop.p99_ms:g} | {hop.source}{mark} |")
    lines += [
        "",
        f"Same region ({members} local members):",
        "",
        "| path | its hops | delivery p50 | delivery p99 | ack p50 | ack p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, path in PATHS.items():
        found = predict(path, draws=draws, seed=seed, members=members)
        lines.append(
            f"| {name} | {PATH_HOPS[name]} | {found['delivery_p50_ms']} "
            f"| {found['delivery_p99_ms']} | {found['ack_p50_ms']} | {found['ack_p99_ms']} |"
        )
    lines += [
        "",
        "Another region (today and with the fast path alike; the ack is the same-region one):",
        "",
        "| sender -> member | RTT ms | its hops | delivery p50 | delivery p99 |",
        "|---|---:|---|---:|---:|",
    ]
    for pair in REGION_PAIRS:
        hops = {**HOPS, "network": one_way_hop(pair)}
        found = predict(_remote, draws=draws, seed=seed, members=members, hops=hops)
        lines.append(
            f"| {pair[0]} -> {pair[1]} | {REGION_PAIRS[pair]:g} | {PATH_HOPS['remote']} "
            f"| {found['delivery_p50_ms']} | {found['delivery_p99_ms']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--members", type=int, default=10, help="local members of the room")
    args = parser.parse_args(argv)
    print(tables(draws=args.draws, seed=args.seed, members=args.members))
    return 0


if __name__ == "__main__":
    sys.exit(main())
