"""How long ``cdk synth`` takes and how much memory it needs (``python -m bench.synth``).

``cdk synth`` is a process tree (the CDK CLI in Node, ``python3 app.py``,
the jsii kernel in a second Node process, esbuild or pip for bundling), so one
process's max RSS says little: ``/usr/bin/time -v`` reports the largest
*child*. This module samples the whole tree instead: the command runs in a new
session, and every ``SAMPLE_S`` the resident set sizes of all live processes of
that session are summed (from ``/proc``); the peak of the sums is the figure.
Processes that start and end between two samples are missed, so the peak is a
lower bound at the sampling resolution. Wall time is from spawn to exit.

Linux only (``/proc``). ``measure_synth`` is what the benchmark calls;
``python -m bench.synth --sample DIR`` also times another CDK app (the AWS
sample) in alternation with ours, so both see the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REGION_SETS",
    "RunSample",
    "measure_command",
    "measure_synth",
    "regions_for",
    "synth_command",
    "tree_rss_bytes",
]

SAMPLE_S = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
ROOT = Path(__file__).resolve().parents[1]

# Region sets by size, taken in this order (all accepted by infra.config).
_ALL_REGIONS = (
    "us-east-1",
    "eu-west-1",
    "ap-northeast-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-south-1",
    "sa-east-1",
    "me-central-1",
    "af-south-1",
)
REGION_SETS = {n: list(_ALL_REGIONS[:n]) for n in range(1, len(_ALL_REGIONS) + 1)}

RunSample = dict[str, float]


def regions_for(count: int) -> list[str]:
    """The first ``count`` regions (the default 3 first), for ``-c regions=...``."""
    if count not in REGION_SETS:
        raise ValueError(f"regions must be 1..{len(_ALL_REGIONS)}, not {count}")
    return REGION_SETS[count]


def tree_rss_bytes(session_id: int) -> int:
    """Sum of the resident set sizes of every live process in session ``session_id``."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # exited meanwhile
            continue
        # Fields after the ")" of the command name: state ppid pgrp session ... rss is 24th.
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[3]) == session_id:
            total += int(fields[21]) * _PAGE
    return total


def measure_command(
    command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None
) -> RunSample:
    """Run ``command`` once; its wall seconds and the peak RSS (MiB) of its process tree.

    Raises ``subprocess.CalledProcessError`` (with the output) when it fails:
    a failed synth's time is not a measurement.
    """
    peak = 0
    started = time.perf_counter()
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    done = threading.Event()
    output: list[bytes] = []
    reader = threading.Thread(
        target=lambda: output.append(process.stdout.read() if process.stdout else b"")
    )
    reader.start()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss_bytes(process.pid))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4: the CPU time of the child and every descendant it waited for.
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    returncode = process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    reader.join()
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, list(command), output=b"".join(output))
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_mib": peak / 2**20}


def synth_env() -> dict[str, str]:
    """The environment ``make synth`` gives the CDK CLI (the project venv first on PATH)."""
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    return env


# How ``make synth`` starts the CDK CLI: directly, not through npx (npm's
# launcher is one more Node process, about 75 MiB and a few hundred ms).
DIRECT_CLI = (str(ROOT / "node_modules" / ".bin" / "cdk"),)
MAKE_CLI = DIRECT_CLI
NPX_CLI = ("npx", "--no-install", "cdk")


def synth_command(
    out_dir: Path, regions: int | None = None, cli: Sequence[str] = MAKE_CLI
) -> list[str]:
    """``cdk synth --quiet`` into ``out_dir`` (``make synth``'s command by default)."""
    command = [*cli, "synth", "--quiet", "-o", str(out_dir)]
    if regions is not None:
        command += ["-c", "regions=" + ",".join(regions_for(regions))]
    return command


def _summary(samples: list[RunSample]) -> dict[str, Any]:
    return {
        "wall_s": round(statistics.median(s["wall_s"] for s in samples), 2),
        "cpu_s": round(statistics.median(s["cpu_s"] for s in samples), 2),
        "peak_mib": round(statistics.median(s["peak_mib"] for s in samples)),
        "runs": [{k: round(v, 2) for k, v in s.items()} for s in samples],
    }


def measure_synth(
    regions: int = 3, runs: int = 3, cdk_dir: Path = ROOT, cli: Sequence[str] = MAKE_CLI
) -> dict[str, Any]:
    """Median wall seconds and peak tree RSS (MiB) of ``runs`` fresh ``cdk synth`` runs.

    Each run writes to a new temporary directory (no cached assembly), so asset
    staging and bundling caches outside ``cdk.out`` are the only warm state.
    """
    samples: list[RunSample] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="synth-") as out:
            command = synth_command(Path(out), regions, cli)
            samples.append(measure_command(command, cdk_dir, synth_env()))
    return _summary(samples)


def _compare(args: argparse.Namespace) -> dict[str, Any]:
    """Alternate our synth and the sample's, ``args.runs`` times each."""
    cli = MAKE_CLI
    ours: list[RunSample] = []
    theirs: list[RunSample] = []
    sample_env = dict(os.environ)
    if args.sample_path:
        sample_env["PATH"] = f"{args.sample_path}{os.pathsep}{sample_env.get('PATH', '')}"
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="synth-") as out:
            command = synth_command(Path(out), args.regions, cli)
            ours.append(measure_command(command, ROOT, synth_env()))
        if args.sample:
            with tempfile.TemporaryDirectory(prefix="sample-") as out:
                command = [args.sample_cli, "synth", "--quiet", "-o", out]
                theirs.append(measure_command(command, Path(args.sample), sample_env))
    result: dict[str, Any] = {f"ours_{args.regions}": _summary(ours)}
    if theirs:
        result["sample_3"] = _summary(theirs)
        result["ratio_wall"] = round(
            result[f"ours_{args.regions}"]["wall_s"] / result["sample_3"]["wall_s"], 2
        )
        result["ratio_peak"] = round(
            result[f"ours_{args.regions}"]["peak_mib"] / result["sample_3"]["peak_mib"], 2
        )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regions", type=int, default=3)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--sample", help="another CDK app's directory (its cdk.json) to alternate with"
    )
    parser.add_argument("--sample-cli", default="cdk", help="the CDK CLI to run the sample with")
    parser.add_argument(
        "--sample-path", help="a directory put first on the sample's PATH (esbuild)"
    )
    args = parser.parse_args(argv)
    print(json.dumps(_compare(args), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
