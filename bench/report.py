"""Medians of several runs, the one table ``make bench`` prints, and the JSON it writes.

A part's runs are dicts of figures; :func:`aggregate` keeps, per numeric key, the median and
the range (min, max), and the first value of anything else. The table shows the figures named
in :data:`ROWS` (with their targets from issue 7); the JSON has every median, per part, under
the part's name, with the ranges under ``"spread"`` and how it ran under ``"meta"``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

Number = int | float

# (part, key, label, unit, target): the table's rows, in order. A target is a text such as
# ">= 1500" or "<= 1.3 x bound"; it is shown, and checked where it is a plain comparison.
# A key ending in ".*" is one row per entry of that dict (sorted), its name put in the
# label's "{}".
ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("fanout", "deliveries_per_s", "deliveries/s, 1 invocation", "/s", ">= 1500"),
    ("fanout", "ratio_vs_sequential", "vs 1 in flight", "x", ">= 30"),
    ("fanout", "cpu_ms_per_delivery", "CPU per delivery", "ms", "<= 0.6"),
    ("large_room", "wall_s", "send -> last post", "s", ""),
    ("large_room", "ratio_vs_bound", "vs bound N/limit", "x", "<= 1.3"),
    ("large_room", "delivered", "delivered", "", "= members"),
    ("large_room", "duplicates", "duplicates", "", "= 0"),
    ("large_room", "peak_1s", "peak requests in 1 s", "", "<= limit"),
    ("model", "20000.predicted_wall_s", "20,000 members (predicted)", "s", ""),
    ("model", "20000.ratio_vs_bound", "20,000: vs N/10,000", "x", "<= 1.3"),
    ("model", "100000.predicted_wall_s", "100,000 members (predicted)", "s", ""),
    ("model", "100000.ratio_vs_bound", "100,000: vs N/10,000", "x", "<= 1.3"),
    ("model", "20000.presence_rps", "20,000: presence at 1 %/min", "req/s", ""),
    ("model", "100000.presence_rps", "100,000: presence at 1 %/min", "req/s", ""),
    ("synth", "3.wall_s", "cdk synth, 3 regions", "s", ""),
    ("synth", "3.peak_mib", "cdk synth, 3 regions, peak", "MiB", ""),
    ("synth", "20.wall_s", "cdk synth, 20 regions", "s", ""),
    ("synth", "20.peak_mib", "cdk synth, 20 regions, peak", "MiB", ""),
    ("cold_start", "boto3_ms", "import boto3", "ms", ""),
    ("cold_start", "ratio_vs_boto3.*", "init vs boto3: {}", "x", "<= 1.3"),
    ("cold_start", "worst_ratio_vs_boto3", "worst handler init vs boto3", "x", "<= 1.3"),
    ("cold_start", "worst_cpu_ratio_vs_boto3", "worst handler init vs boto3, CPU", "x", "<= 1.3"),
    ("cold_start", "boto3_nogc_ms", "import boto3, collector off (as handlers)", "ms", ""),
    (
        "cold_start",
        "worst_ratio_vs_boto3_nogc",
        "worst handler init vs boto3 with the collector off",
        "x",
        "<= 1.3",
    ),
    ("cold_start", "deferred_loaded_at_init", "deferred modules loaded at init", "", "= 0"),
    ("calls", "differences", "calls: differences from expected_calls.json", "", "= 0"),
    ("calls", "send.all.dynamodbCalls", "calls: unnumbered send, DynamoDB", "", ""),
    ("calls", "send.all.calls", "calls: unnumbered send, all", "", ""),
    ("calls", "send_numbered.all.calls", "calls: numbered send, all", "", ""),
    ("calls", "join.all.calls", "calls: join of a 10-member room", "", ""),
    ("calls", "ping.all.calls", "calls: ping", "", ""),
    ("calls", "long_poll.all.calls", "calls: quiet 20 s long poll", "", ""),
    ("latency", "on.same_region_p50_ms", "latency: same region p50, fast path", "ms", ""),
    ("latency", "on.same_region_p99_ms", "latency: same region p99, fast path", "ms", "<= 100"),
    ("latency", "off.same_region_p50_ms", "latency: same region p50, bus path", "ms", ""),
    ("latency", "off.same_region_p99_ms", "latency: same region p99, bus path", "ms", "~ 400"),
    ("latency", "on.cross_region_p50_ms", "latency: cross-region p50, fast path", "ms", ""),
    ("latency", "off.cross_region_p50_ms", "latency: cross-region p50, bus path", "ms", ""),
    ("latency", "on.cross_region_p99_ms", "latency: cross-region p99, fast path", "ms", ""),
    ("latency", "off.cross_region_p99_ms", "latency: cross-region p99, bus path", "ms", ""),
    ("latency", "cross_region_p99_ratio", "latency: cross-region p99, on vs off", "x", "<= 1.1"),
    ("latency", "on.ack_p50_ms", "latency: ack p50, fast path", "ms", ""),
    ("latency", "off.ack_p50_ms", "latency: ack p50, bus path", "ms", ""),
    ("latency", "on.ack_p99_ms", "latency: ack p99, fast path", "ms", ""),
    ("latency", "off.ack_p99_ms", "latency: ack p99, bus path", "ms", ""),
    ("latency", "ack_p99_growth_ms", "latency: ack p99 growth (on - off)", "ms", "<= 30"),
    ("latency", "lost", "latency: lost (both modes)", "", "= 0"),
    ("latency", "duplicated", "latency: duplicated (both modes)", "", "= 0"),
    ("e2e", "send_rate_per_s", "e2e: messages/s sent (3 x 100 clients)", "/s", ">= 20"),
    ("e2e", "p50_ms", "cross-region p50", "ms", "<= 50"),
    ("e2e", "p99_ms", "cross-region p99", "ms", "<= 250"),
    ("e2e", "lost", "lost", "", "= 0"),
    ("e2e", "duplicated", "duplicated", "", "= 0"),
    ("attachments", "upload_s", "attachments: upload (slot + POST)", "s", ""),
    ("attachments", "readable_everywhere_s", "attachments: send -> own copy everywhere", "s", ""),
    ("attachments", "sha256_ok", "attachments: same sha256 in every region", "", "= True"),
    ("soak", "messages", "soak: messages acked", "", ""),
    ("soak", "lost", "soak: lost", "", "= 0"),
    ("soak", "duplicated", "soak: duplicated", "", "= 0"),
    ("soak", "order_violations", "soak: sender order broken", "", "= 0"),
    ("soak", "failovers", "soak: failovers", "", ""),
    ("soak", "seconds", "soak: wall", "s", ""),
)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def aggregate(runs: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(medians, spread) of a part's runs; nested dicts are aggregated key by key.

    ``spread`` maps each numeric key to ``[min, max]`` over the runs (NaN runs left out).
    A flag (bool) holds only if it holds in every run.
    """
    medians: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run if k not in keys]
    for key in keys:
        values = [run[key] for run in runs if key in run]
        if all(isinstance(v, Mapping) for v in values):
            medians[key], spread[key] = aggregate(values)
        elif all(isinstance(v, bool) for v in values):
            medians[key] = all(values)
        elif all(_is_number(v) for v in values):
            finite = [v for v in values if not math.isnan(v)]
            if not finite:
                medians[key], spread[key] = float("nan"), [float("nan"), float("nan")]
                continue
            median = statistics.median(finite)
            if all(isinstance(v, int) for v in finite) and median == int(median):
                median = int(median)
            medians[key], spread[key] = median, [min(finite), max(finite)]
        else:
            medians[key] = values[0]
    return medians, spread


def lookup(document: Mapping[str, Any], dotted: str) -> Any:
    """``document["a"]["b"]`` for ``"a.b"``; None when a step is missing."""
    value: Any = document
    for step in dotted.split("."):
        if not isinstance(value, Mapping) or step not in value:
            return None
        value = value[step]
    return value


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not _is_number(value):
        return str(value)
    if math.isnan(value):
        return "nan"
    if isinstance(value, int) or (abs(value) >= 100 and value == int(value)):
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _expanded(
    rows: Sequence[tuple[str, str, str, str, str]], results: Mapping[str, Any]
) -> list[tuple[str, str, str, str, str]]:
    """``rows`` with each ``<key>.*`` row replaced by one row per entry of that dict."""
    out = []
    for part, key, label, unit, target in rows:
        if not key.endswith(".*"):
            out.append((part, key, label, unit, target))
            continue
        entries = lookup(results.get(part, {}), key[:-2])
        for name in sorted(entries) if isinstance(entries, Mapping) else ():
            out.append((part, f"{key[:-2]}.{name}", label.format(name), unit, target))
    return out


def format_table(
    results: Mapping[str, Any],
    spread: Mapping[str, Any],
    errors: Mapping[str, str],
    runs: Mapping[str, int],
) -> str:
    """The one table: part, figure, median, min, max, runs, target."""
    header = ("part", "figure", "median", "min", "max", "runs", "target")
    lines: list[tuple[str, ...]] = []
    shown: set[str] = set()
    for part, key, label, unit, target in _expanded(ROWS, results):
        if part in errors:
            if part not in shown:
                lines.append((part, f"not run: {errors[part]}", "", "", "", "", ""))
                shown.add(part)
            continue
        if part not in results:
            continue
        shown.add(part)
        value = lookup(results[part], key)
        if value is None:
            continue
        low_high = lookup(spread.get(part, {}), key)
        low, high = low_high if isinstance(low_high, list) else (None, None)
        figure = f"{label} ({unit})" if unit else label
        lines.append(
            (part, figure, fmt(value), fmt(low), fmt(high), str(runs.get(part, "")), target)
        )
    for part, message in errors.items():
        if part not in shown:
            lines.append((part, f"not run: {message}", "", "", "", "", ""))
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    widths[1] = min(widths[1], 60)

    def render(row: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(widths[i]) if i < 2 or i == 6 else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(row) for row in lines)])
