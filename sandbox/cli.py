"""``python -m sandbox``: run every region of the synthesized app locally (see docs/sandbox.md)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from sandbox.bus_latency import BusLatency
from sandbox.errors import SandboxError
from sandbox.eventbus import DEFAULT_RETRY_TIME_SCALE
from sandbox.gc_pauses import freeze_after_full_collections
from sandbox.runtime import Options, Sandbox

log = logging.getLogger("sandbox")


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Run every region of the synthesized chat app on this machine: WebSocket "
        "APIs, @connections, EventBridge rules, DynamoDB (moto) and the real handlers.",
    )
    parser.add_argument(
        "--cdk-out",
        type=Path,
        default=Path("cdk.out"),
        help="the cloud assembly to run (default: cdk.out)",
    )
    parser.add_argument(
        "--regions",
        default="",
        help="comma-separated subset of the assembly's regions (default: all)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=8700,
        help="web page at this port, moto at +1, then 4 ports per region "
        "(WebSocket, HTTP API, @connections, EventBridge); default 8700",
    )
    parser.add_argument(
        "--endpoints-file",
        type=Path,
        default=Path("sandbox-endpoints.json"),
        help="where to write the endpoints JSON when ready (default: sandbox-endpoints.json)",
    )
    parser.add_argument(
        "--mgmt-latency-ms",
        type=float,
        default=0.0,
        help="delay added to every @connections call (for benchmarks)",
    )
    parser.add_argument(
        "--mgmt-rate-limit",
        type=float,
        default=None,
        metavar="N",
        help="admit at most N @connections requests/s per region (token bucket); the others "
        "are answered 429 LimitExceededException (default: no limit)",
    )
    parser.add_argument(
        "--mgmt-rate-burst",
        type=float,
        default=None,
        metavar="B",
        help="the token bucket's capacity with --mgmt-rate-limit (default: N)",
    )
    parser.add_argument(
        "--connect-rate-limit",
        type=float,
        default=None,
        metavar="N",
        help="admit at most N new WebSocket connections/s per region; the others are refused "
        "at the handshake with 429, as API Gateway does over its quota (default: no limit)",
    )
    parser.add_argument(
        "--retry-time-scale",
        type=float,
        default=DEFAULT_RETRY_TIME_SCALE,
        metavar="F",
        help="multiply EventBridge's retry delays and maximum event age by F (default "
        f"{DEFAULT_RETRY_TIME_SCALE}: 24 h of retries take 86 s)",
    )
    parser.add_argument(
        "--bus-latency-ms",
        default=None,
        metavar="P50,P99",
        help="delay every rule delivery and cross-region forward by a log-normal draw with "
        "this median and 99th percentile in ms, e.g. 148,387 (default: off)",
    )
    parser.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="REGION",
        help="start with this region down (chaos; repeatable)",
    )
    parser.add_argument(
        "--cut-link",
        action="append",
        default=[],
        metavar="FROM:TO",
        help="start with replication from FROM to TO cut (chaos; repeatable)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".sandbox"),
        help="handler logs and inline code (default: .sandbox)",
    )
    parser.add_argument(
        "--handler-logs",
        choices=("file", "stderr"),
        default="file",
        help="'file': <state-dir>/logs/<region>/<function>.log only; "
        "'stderr': also on this terminal",
    )
    parser.add_argument(
        "--signing-secret",
        default=None,
        help="token signing secret to use instead of a generated one",
    )
    parser.add_argument(
        "--oidc",
        action="store_true",
        help="act as the token issuer the templates were synthesized with (-c jwtIssuer=...): "
        "serve its discovery document and JWKS locally and write the signing key to the "
        "endpoints file's oidc entry",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    args = parser.parse_args(argv)  # fmt: skip
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="sandbox: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()] or None
    for flag, value in (
        ("--mgmt-rate-limit", args.mgmt_rate_limit),
        ("--mgmt-rate-burst", args.mgmt_rate_burst),
    ):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1")
    if args.connect_rate_limit is not None and args.connect_rate_limit < 1:
        parser.error("--connect-rate-limit must be at least 1")
    if not args.retry_time_scale > 0:
        parser.error("--retry-time-scale must be positive")
    bus_latency = None
    if args.bus_latency_ms is not None:
        try:
            bus_latency = BusLatency.parse(args.bus_latency_ms)
        except ValueError as error:
            parser.error(f"--bus-latency-ms: {error}")
    cut_links = []
    for link in args.cut_link:
        source, _, target = link.partition(":")
        if not source or not target:
            parser.error(f"--cut-link {link}: expected FROM:TO, e.g. us-east-1:eu-west-1")
        cut_links.append((source, target))
    return Options(
        cdk_out=args.cdk_out,
        regions=regions,
        port_base=args.port_base,
        endpoints_file=args.endpoints_file,
        mgmt_latency_ms=args.mgmt_latency_ms,
        mgmt_rate_limit=args.mgmt_rate_limit,
        mgmt_rate_burst=args.mgmt_rate_burst,
        state_dir=args.state_dir,
        handler_logs=args.handler_logs,
        signing_secret=args.signing_secret,
        oidc=args.oidc,
        connect_rate_limit=args.connect_rate_limit,
        retry_time_scale=args.retry_time_scale,
        bus_latency=bus_latency,
        down_regions=list(args.down),
        cut_links=cut_links,
    )


def ready_lines(sandbox: Sandbox) -> list[str]:
    lines = []
    width = max(len(r.region) for r in sandbox.regions)
    for runtime in sandbox.regions:
        urls = runtime.urls()
        parts = [f"{key} {value}" for key, value in urls.items()]
        lines.append(f"{runtime.region:<{width}}  " + "  ".join(parts))
    lines.append(f"web page  http://127.0.0.1:{sandbox.web_port}/")
    lines.append(
        f"ready in {sandbox.ready_seconds:.2f}s; endpoints in {sandbox.options.endpoints_file}; "
        "Ctrl-C stops"
    )
    return lines


async def run(options: Options) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0
    sandbox = Sandbox(options)

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: killing the workers and exiting now")
            sandbox.kill_now()
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        start = asyncio.ensure_future(sandbox.start())
        waiter = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({start, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if start not in done:
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            return 130
        waiter.cancel()
        start.result()
        for line in ready_lines(sandbox):
            print(line, flush=True)
        await stop.wait()
        log.info("stopping")
        return 0
    finally:
        await asyncio.shield(sandbox.stop())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    freeze_after_full_collections()
    try:
        return asyncio.run(run(options))
    except SandboxError as error:
        print(f"sandbox: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
