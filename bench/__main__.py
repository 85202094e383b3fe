"""``python -m bench`` (``make bench``): the app's speed figures, one table of medians.

Parts (``--parts``, default all but the two older scenarios):

* ``fanout``: one ``runtime.delivery.engine.deliver`` invocation, 2,000 members, 20 ms per post
  (bench/fanout.py);
* ``large_room``: 5,000 virtual members through the sharded fan-out in the sandbox, under a
  1,000/s ``@connections`` limit (bench/large_room.py);
* ``model``: 20,000 and 100,000 members predicted from the measured fan-out rate
  (bench/fanout_model.py; no runs, it is deterministic);
* ``synth``: ``cdk synth`` of 3 and 20 regions, wall time and peak memory (bench/synth.py);
* ``cold_start``: each handler module's init beside bare ``import boto3``
  (bench/cold_start.py);
* ``calls``: the AWS requests (and DynamoDB units) of fixed scenarios, counted by the sandbox
  per region and function, beside bench/expected_calls.json (bench/calls.py);
* ``e2e``: 3 regions x 100 clients, 10,000 messages: cross-region latency, lost, duplicated
  (bench/e2e.py);
* ``latency``: same-region and cross-region delivery and the sender's ack under the emulated
  bus latency, with the same-region fast path on and off (bench/latency.py);
* ``attachments``: a file of ``--attachment-mb`` MB uploaded in one region: the upload, and
  send -> every other region's own copy readable with the same sha256 (bench/attachments.py);
* ``resume``, ``longpoll``: the older sandbox scenarios (bench/scenarios.py), on request;
* ``soak``: 3 regions x 100 clients of the bundled client library through a region outage
  and a cut replication link (bench/soak.py), after e2e in the same sandbox: lost,
  duplicated, sender order, failovers.

Every part runs ``--runs`` times (``synth`` and ``cold_start`` repeat inside their own
measure functions; ``e2e`` runs ``--e2e-runs`` times, default once: 10,000 messages); the
table shows the median, min and max, and ``--json PATH`` writes the
medians per part with the ranges under ``"spread"``. A part that cannot run (something it
needs is not there) or fails is shown as "not run" with the reason, and the exit status is 1;
in the shared sandbox each part fails on its own, keeping the others' runs.
``--quick`` shrinks every part for a smoke run of a few minutes.

The figures are for this machine and the sandbox (one process per function, moto for
DynamoDB), not for AWS; see docs/performance.md. The sandbox parts start and drive the
sandbox through ``tests/e2e/harness.py``, the launcher and client of the end-to-end tests, so
benchmarks and tests exercise it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report

REPO = Path(__file__).resolve().parents[1]
ALL_PARTS = (
    "fanout", "large_room", "model", "synth", "cold_start", "calls", "latency", "e2e", "resume",
    "longpoll", "soak", "attachments",
)  # fmt: skip
DEFAULT_PARTS = (
    "fanout", "large_room", "model", "synth", "cold_start", "calls", "latency", "e2e",
    "attachments", "soak",
)  # fmt: skip
SANDBOX_PARTS = ("e2e", "resume", "longpoll", "soak")  # one shared sandbox; calls, latency
# (the bus's latency emulated) and attachments (a quiet sandbox) start sandboxes of their own
MODEL_SIZES = (20000, 100000)


class Unavailable(RuntimeError):
    """A part needs a piece that is not in this checkout (said in the table, not a traceback)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help="comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per part (median, min, max)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="also write the medians here")
    parser.add_argument("--cdk-out", type=Path, default=REPO / "cdk.out", help="for e2e")
    fan = parser.add_argument_group("fanout")
    fan.add_argument("--fanout-members", type=int, default=2000)
    fan.add_argument("--fanout-sequential-members", type=int, default=100)
    fan.add_argument("--fanout-latency-ms", type=float, default=20.0)
    fan.add_argument("--fanout-concurrency", type=int, default=None, help="default: engine's")
    fan.add_argument("--fanout-source", choices=("auto", "table", "ids"), default="auto")
    big = parser.add_argument_group("large_room")
    big.add_argument("--large-members", type=int, default=5000)
    big.add_argument("--large-rate-limit", type=int, default=1000)
    big.add_argument("--large-budget", type=int, default=950)
    big.add_argument("--large-shard-size", type=int, default=500)
    big.add_argument("--large-workers", type=int, default=4)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-rate", type=float, default=None,
        help="posts/s of one worker (default: the fanout part's median, else 1500)",
    )  # fmt: skip
    model.add_argument("--model-budget", type=float, default=9000.0)
    model.add_argument("--model-client-rps", type=float, default=500.0)
    model.add_argument("--model-shard-size", type=int, default=1000)
    e2e = parser.add_argument_group("e2e")
    e2e.add_argument("--e2e-clients-per-region", type=int, default=100)
    e2e.add_argument("--e2e-messages", type=int, default=10000)
    e2e.add_argument(
        "--e2e-rate", type=float, default=20.0, help="messages/s in all (issue 16's target)"
    )
    e2e.add_argument(
        "--e2e-runs", type=int, default=1,
        help="runs of e2e (one is 10,000 messages, about 9 minutes at 20/s)",
    )  # fmt: skip
    e2e.add_argument("--e2e-room-size", type=int, default=10)
    latency = parser.add_argument_group("latency")
    latency.add_argument("--latency-clients-per-region", type=int, default=10)
    latency.add_argument("--latency-messages", type=int, default=300, help="per mode")
    latency.add_argument("--latency-rate", type=float, default=5.0, help="messages/s in all")
    attach = parser.add_argument_group("attachments")
    attach.add_argument("--attachment-mb", type=float, default=5.0, help="the file's size, MB")
    soak = parser.add_argument_group("soak")
    soak.add_argument("--soak-clients-per-region", type=int, default=100)
    soak.add_argument("--soak-messages-per-client", type=int, default=5)
    soak.add_argument("--soak-rate", type=float, default=10.0, help="messages/s in all")
    soak.add_argument("--soak-room-size", type=int, default=10)
    old = parser.add_argument_group("resume, longpoll")
    old.add_argument("--missed", type=int, default=1000)
    old.add_argument("--count", type=int, default=20)
    if parser.parse_args(argv).quick:  # smaller defaults; explicit arguments still win
        parser.set_defaults(
            runs=1,
            fanout_members=500,
            fanout_sequential_members=30,
            large_members=1000,
            e2e_clients_per_region=10,
            e2e_messages=300,
            latency_messages=60,
            soak_clients_per_region=10,
            soak_messages_per_client=3,
            attachment_mb=1.0,
            missed=200,
            count=5,
        )
    args = parser.parse_args(argv)
    args.parts = [p for p in args.parts.split(",") if p]
    unknown = set(args.parts) - set(ALL_PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; known: {', '.join(ALL_PARTS)}")
    return args


# --- the parts: each returns a list of runs (dicts of figures) ------------------------------


def part_fanout(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.fanout import measure_fanout

    return [
        measure_fanout(
            args.fanout_members,
            args.fanout_sequential_members,
            args.fanout_latency_ms,
            args.fanout_concurrency,
            args.fanout_source,
        )
        for _ in range(args.runs)
    ]


def part_large_room(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench import large_room

    return large_room.measure_large_room(
        args.runs,
        members=args.large_members,
        rate_limit=args.large_rate_limit,
        budget=args.large_budget,
        shard_threshold=min(1000, args.large_members // 2),
        shard_size=args.large_shard_size,
        max_workers=args.large_workers,
    )


def part_model(args: argparse.Namespace, measured_rate: float | None) -> list[dict[str, Any]]:
    from bench.fanout_model import predict_all

    rate = args.model_rate or measured_rate or 1500.0
    predictions = predict_all(
        MODEL_SIZES,
        rate,
        budget=args.model_budget,
        client_rps=args.model_client_rps,
        shard_size=args.model_shard_size,
    )
    predictions["rate_per_worker"] = rate
    return [predictions]


def _with_runs(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(medians, spread) of a result that a measure function already aggregated, its
    per-run samples (if any) under ``"runs"``."""
    samples = result.get("runs")
    medians = {k: v for k, v in result.items() if k != "runs"}
    if isinstance(samples, list) and samples and all(isinstance(s, dict) for s in samples):
        return medians, report.aggregate(samples)[1]
    return medians, {}


def part_synth(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench.synth import measure_synth

    medians: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for regions in (3,) if args.quick else (3, 20):
        medians[str(regions)], spread[str(regions)] = _with_runs(
            measure_synth(regions, args.runs, REPO)
        )
    return medians, spread


def part_cold_start(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from bench.cold_start import measure_cold_start

    return _with_runs(measure_cold_start(max(args.runs, 5) if not args.quick else 3))


def _synthesized(args: argparse.Namespace) -> Path:
    if not (args.cdk_out / "manifest.json").exists():
        raise Unavailable(f"no synthesized app in {args.cdk_out}; run `make synth`")
    return args.cdk_out.resolve()


def part_calls(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One run: the counts are exact, a second run would only repeat them."""
    from bench import calls
    from tests.e2e.harness import REGIONS

    cdk_out = _synthesized(args)
    with tempfile.TemporaryDirectory(prefix="chat-bench-calls-") as workdir:
        sandbox = calls.start_sandbox(cdk_out, Path(workdir))
        try:
            return [calls.bench_row(asyncio.run(calls.measure_calls(sandbox, REGIONS)))]
        finally:
            sandbox.stop()


def part_latency(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.latency import measure_latency
    from tests.e2e.harness import REGIONS

    cdk_out = _synthesized(args)
    return [
        measure_latency(
            cdk_out,
            REGIONS,
            clients_per_region=args.latency_clients_per_region,
            messages=args.latency_messages,
            rate=args.latency_rate,
        )
    ]


def part_attachments(args: argparse.Namespace) -> list[dict[str, Any]]:
    from bench.attachments import measure_attachments
    from tests.e2e.harness import REGIONS

    return measure_attachments(_synthesized(args), REGIONS, args.attachment_mb, args.runs)


def part_sandbox(
    args: argparse.Namespace, wanted: list[str]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, BaseException]]:
    """The parts that run in the 3-region sandbox of ``--cdk-out``, in one sandbox.

    Returns each part's runs and, apart, the error that stopped a part: a part
    that fails (the soak, say) keeps the runs it took and the other parts still
    run, so one failure does not throw away the minutes of e2e measured before it.
    """
    from bench import e2e, scenarios, soak
    from tests.e2e.harness import REGIONS, SandboxProcess

    cdk_out = _synthesized(args)
    runs: dict[str, list[dict[str, Any]]] = {part: [] for part in wanted}
    errors: dict[str, BaseException] = {}

    def one_run(part: str, action: Callable[[], dict[str, Any]]) -> None:
        if part not in wanted or part in errors:
            return
        try:
            runs[part].append(action())
        except Exception as error:
            errors[part] = error

    with tempfile.TemporaryDirectory(prefix="chat-bench-") as workdir:
        sandbox = SandboxProcess(cdk_out, Path(workdir)).start()
        try:
            for _ in range(args.e2e_runs):
                one_run(
                    "e2e",
                    lambda: asyncio.run(
                        e2e.measure_e2e(
                            sandbox,
                            REGIONS,
                            args.e2e_clients_per_region,
                            args.e2e_messages,
                            args.e2e_rate,
                            args.e2e_room_size,
                        )
                    ),
                )
            # one soak is minutes long
            one_run(
                "soak",
                lambda: asyncio.run(
                    soak.run_soak(
                        sandbox,
                        REGIONS,
                        args.soak_clients_per_region,
                        args.soak_messages_per_client,
                        args.soak_rate,
                        args.soak_room_size,
                    )
                ),
            )
            for _ in range(args.runs):
                one_run("resume", lambda: asyncio.run(scenarios.resume(sandbox, args.missed)))
                one_run("longpoll", lambda: asyncio.run(scenarios.longpoll(sandbox, args.count)))
        finally:
            sandbox.stop()
    return runs, errors


# --- running and reporting ------------------------------------------------------------------


def _reason(error: BaseException) -> str:
    if isinstance(error, Unavailable):
        return str(error)
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:200]


class _Parts:
    """The results of the parts run so far: medians, spread, runs, and why a part did not run."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.results: dict[str, Any] = {}
        self.spread: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.runs: dict[str, int] = {}

    def attempt(self, part: str, action: Callable[[], Any]) -> Any:
        self.log(f"bench: {part} ...")
        started = time.perf_counter()
        try:
            value = action()
        except Exception as error:
            self.errors[part] = _reason(error)
            if not isinstance(error, Unavailable):
                traceback.print_exc(file=sys.stderr)
            self.log(f"bench: {part} not run: {self.errors[part]}")
            return None
        self.log(f"bench: {part} done in {time.perf_counter() - started:.0f} s")
        return value

    def keep(self, part: str, samples: list[dict[str, Any]] | None) -> None:
        if samples:
            self.results[part], self.spread[part] = report.aggregate(samples)
            self.runs[part] = len(samples)

    def measure(self, args: argparse.Namespace) -> None:
        """The parts that report (medians, spread) themselves: synth, cold start."""
        measures: dict[str, Callable[[argparse.Namespace], tuple[dict[str, Any], dict[str, Any]]]]
        measures = {"synth": part_synth, "cold_start": part_cold_start}
        for part, measure in measures.items():
            if part in args.parts:
                found = self.attempt(part, functools.partial(measure, args))
                if found is not None:
                    self.results[part], self.spread[part] = found
                    self.runs[part] = args.runs

    def in_sandbox(self, args: argparse.Namespace) -> None:
        """The parts that share one sandbox: e2e, resume, longpoll, soak."""
        in_sandbox = [p for p in SANDBOX_PARTS if p in args.parts]
        if not in_sandbox:
            return
        found = self.attempt(",".join(in_sandbox), lambda: part_sandbox(args, in_sandbox))
        if found is None:  # the sandbox itself did not start (or stop)
            reason = self.errors.pop(",".join(in_sandbox))
            self.errors.update({part: reason for part in in_sandbox})
            return
        runs, failures = found
        for part, samples in runs.items():
            self.keep(part, samples)
        for part, error in failures.items():
            self.errors[part] = _reason(error)
            if not isinstance(error, Unavailable):
                traceback.print_exception(error, file=sys.stderr)
            self.log(f"bench: {part} failed: {self.errors[part]}")


def run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the wanted parts; the JSON document (medians per part, spread, errors, meta)."""
    parts = _Parts(log)
    if "fanout" in args.parts:
        parts.keep("fanout", parts.attempt("fanout", lambda: part_fanout(args)))
    if "model" in args.parts:
        measured = parts.results.get("fanout", {}).get("deliveries_per_s")
        parts.keep("model", parts.attempt("model", lambda: part_model(args, measured)))
    if "large_room" in args.parts:
        parts.keep("large_room", parts.attempt("large_room", lambda: part_large_room(args)))
    parts.measure(args)
    if "calls" in args.parts:  # before the loaded parts, on a quiet machine
        parts.keep("calls", parts.attempt("calls", lambda: part_calls(args)))
    if "latency" in args.parts:
        parts.keep("latency", parts.attempt("latency", lambda: part_latency(args)))
    if "attachments" in args.parts:
        parts.keep("attachments", parts.attempt("attachments", lambda: part_attachments(args)))
    parts.in_sandbox(args)
    results, spread, errors, runs = parts.results, parts.spread, parts.errors, parts.runs
    return {
        **results,
        "spread": spread,
        "errors": errors,
        "meta": {
            "runs": runs,
            "quick": args.quick,
            "machine": machine(),
            "parts": args.parts,
            "settings": {
                k: (str(v) if isinstance(v, Path) else v)
                for k, v in vars(args).items()
                if k not in ("json", "parts")
            },
        },
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model or platform.processor(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    document = run(args, lambda line: print(line, file=sys.stderr, flush=True))
    parts = {k: v for k, v in document.items() if k not in ("spread", "errors", "meta")}
    runs = document["meta"]["runs"]
    print(report.format_table(parts, document["spread"], document["errors"], runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
