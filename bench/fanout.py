"""The ``fanout`` bench: what one invocation of ``runtime.delivery.engine.deliver`` delivers per
second.

Three processes, so that each figure belongs to one of them:

* ``bench.mgmt_server`` answers every ``@connections`` POST after ``latency_ms`` (20 ms:
  API Gateway's own latency) and counts posts per connection id;
* a fresh *delivering* process (``python -m bench.fanout deliver``) with moto's in-process
  DynamoDB (``moto.mock_aws``): it seeds a room of ``members`` memberships (untimed), runs one
  warm-up ``deliver`` to a 10-member room (clients and pools built, as in a warm Lambda), then
  times one ``deliver`` fed the members' pages as read from the table (the real Query path,
  ``token_expiry.live_connection_ids``: projected, 1 MB pages, pulled while posts flow) that
  posts to each, with presence's clean-up as its ``on_gone``. CPU is ``time.process_time()``
  of this process around that one call, so it includes moto answering the Query in-process
  (reported apart as ``query_cpu_ms``, which in AWS is DynamoDB's, not the function's);
* this process, which starts both, checks that the server saw every id exactly once, and
  returns the figures.

The ratio compares against the same path with one request in flight (``concurrency=1``), run
with fewer members so it stays short: the rate, not the count, is compared. The engine's
``concurrency`` keyword (the plan's interface) is used when ``deliver`` has it; otherwise
``FANOUT_CONCURRENCY`` sets the thread pool of the older engine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TABLE = "bench-connections"
ROOM = "bench-room"
WARM_ROOM = "bench-warm"
FRAME = json.dumps({"type": "message", "room": ROOM, "id": "01BENCH", "body": "x" * 200}).encode()


# --- the parent side -------------------------------------------------------------------


@contextmanager
def mgmt_server(latency_ms: float) -> Iterator[str]:
    """A ``bench.mgmt_server`` process; yields its base URL (http://127.0.0.1:<port>)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.mgmt_server", "--latency-ms", str(latency_ms)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"bench.mgmt_server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server stops when its stdin closes
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def server_call(base: str, path: str, method: str = "GET") -> dict[str, int]:
    request = urllib.request.Request(f"{base}/{path}", method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def run_delivery(
    base: str, members: int, concurrency: int | None, source: str, timeout: float = 600
) -> dict[str, Any]:
    """One fresh delivering process against the server at ``base``; its figures."""
    server_call(base, "_reset", "POST")
    command = [
        sys.executable, "-m", "bench.fanout", "deliver",
        "--callback-url", f"{base}/bench",
        "--members", str(members),
        "--source", source,
    ]  # fmt: skip
    if concurrency:
        command += ["--concurrency", str(concurrency)]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.fanout deliver failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    seen = server_call(base, "_stats")
    # The warm-up room's posts are on the server too; only the timed room is checked.
    result["server_posts"] = seen["posts"] - result["warm_posts"]
    result["server_duplicates"] = seen["duplicates"]
    return result


def measure_fanout(
    members: int = 2000,
    sequential_members: int = 100,
    latency_ms: float = 20.0,
    concurrency: int | None = None,
    source: str = "auto",
) -> dict[str, Any]:
    """One run of the fan-out bench: the engine's default concurrency and one in flight.

    Keys: ``deliveries_per_s``, ``ratio_vs_sequential``, ``cpu_ms_per_delivery``,
    ``query_cpu_ms``, ``sequential_deliveries_per_s``, ``members``, ``delivered``,
    ``duplicates``, ``wall_s``.
    """
    with mgmt_server(latency_ms) as base:
        wide = run_delivery(base, members, concurrency, source)
        narrow = run_delivery(base, sequential_members, 1, source)
    for run in (wide, narrow):
        if run["delivered"] != run["members"] or run["server_posts"] != run["members"]:
            raise RuntimeError(f"fan-out bench lost posts: {run}")
    return {
        "deliveries_per_s": wide["deliveries_per_s"],
        "ratio_vs_sequential": wide["deliveries_per_s"] / narrow["deliveries_per_s"],
        "cpu_ms_per_delivery": wide["cpu_ms_per_delivery"],
        "query_cpu_ms": wide["query_cpu_ms"],
        "source": wide["source"],
        "sequential_deliveries_per_s": narrow["deliveries_per_s"],
        "members": members,
        "delivered": wide["delivered"],
        "duplicates": wide["server_duplicates"],
        "wall_s": wide["wall_s"],
    }


# --- the delivering process --------------------------------------------------------------


def _environment(callback_url: str, concurrency: int | None) -> None:
    os.environ.update(
        {
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_SESSION_TOKEN": "bench",
            "CONNECTIONS_TABLE": TABLE,
            "MESSAGES_TABLE": "bench-messages",
            "EVENT_BUS_NAME": "bench-bus",
            "EVENT_SOURCE": "chat.bench",
            "CALLBACK_URL": callback_url,
            "POWERTOOLS_SERVICE_NAME": "bench",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    if concurrency:
        os.environ["FANOUT_CONCURRENCY"] = str(concurrency)
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")]:
        del os.environ[name]
    sys.path.insert(0, str(REPO))


def _seed(room: str, members: int, prefix: str) -> list[str]:
    import boto3

    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ids = [f"{prefix}{number:06d}=" for number in range(members)]
    for start in range(0, len(ids), 25):
        ddb.batch_write_item(
            RequestItems={
                TABLE: [
                    {
                        "PutRequest": {
                            "Item": {
                                "pk": {"S": f"ROOM#{room}"},
                                "sk": {"S": f"CONN#{cid}"},
                                "connectionId": {"S": cid},
                                "userId": {"S": f"user-{cid}"},
                                "joinedAt": {"S": "2025-01-01T00:00:00.000Z"},
                                "expiresAt": {"N": str(int(time.time()) + 3600)},
                            }
                        }
                    }
                    for cid in ids[start : start + 25]
                ]
            }
        )
    return ids


def deliver_once(callback_url: str, members: int, concurrency: int | None, source: str) -> dict:
    """Runs in the delivering process: seed, warm up, time one ``deliver``."""
    _environment(callback_url, concurrency)
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("dynamodb", region_name="us-east-1").create_table(
            TableName=TABLE,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        ids = _seed(ROOM, members, "C")
        _seed(WARM_ROOM, 10, "W")
        from multiregion_chat.runtime.auth import token_expiry
        from multiregion_chat.runtime.delivery import engine
        from multiregion_chat.runtime.presence import transitions
        from multiregion_chat.runtime.store import room_store

        accepts = inspect.signature(engine.deliver).parameters
        if source == "auto":
            source = "ids" if "connection_ids" in accepts else "table"
        kwargs: dict[str, Any] = {}
        if concurrency and "concurrency" in accepts:
            kwargs["concurrency"] = concurrency
        if "on_gone" in accepts:  # an engine that is handed its clean-up
            kwargs["on_gone"] = transitions.cleanup_gone

        def member_pages(room: str) -> dict[str, Any]:
            """The table path: an engine that is handed its members gets the live pages
            (the same Query a room delivery makes); an older one reads them itself."""
            return {"pages": token_expiry.live_connection_ids(room)} if "pages" in accepts else {}

        warm = engine.deliver(WARM_ROOM, FRAME, **kwargs, **member_pages(WARM_ROOM))
        # The member Query through the real store path, timed alone: moto answers it in this
        # process, so its CPU is not the delivering function's (in AWS DynamoDB pays it).
        cpu0 = time.process_time()
        read = [cid for page in room_store.iter_room_connection_ids(ROOM) for cid in page]
        query_cpu = time.process_time() - cpu0
        if sorted(read) != ids:
            raise SystemExit(f"the member Query read {len(read)} of {len(ids)} members")
        if source == "ids":
            if "connection_ids" not in accepts:
                raise SystemExit("this delivery engine's deliver() has no connection_ids keyword")
            kwargs["connection_ids"] = read
        else:
            kwargs.update(member_pages(ROOM))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = engine.deliver(ROOM, FRAME, **kwargs)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        engine_cpu = cpu - query_cpu if source == "table" else cpu
    return {
        "members": members,
        "concurrency": concurrency,
        "source": source,
        "delivered": result.delivered,
        "failed": result.failed,
        "gone": result.gone,
        "retries": result.retries,
        "warm_posts": warm.delivered + warm.failed,
        "wall_s": wall,
        "deliveries_per_s": result.delivered / wall,
        "cpu_ms_per_delivery": engine_cpu * 1000 / max(1, result.delivered),
        "cpu_ms_per_delivery_with_query": cpu * 1000 / max(1, result.delivered),
        "query_cpu_ms": query_cpu * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout")
    commands = parser.add_subparsers(dest="command", required=True)
    child = commands.add_parser("deliver", help="(internal) the delivering process")
    child.add_argument("--callback-url", required=True)
    child.add_argument("--members", type=int, default=2000)
    child.add_argument("--concurrency", type=int, default=None)
    child.add_argument("--source", choices=("auto", "table", "ids"), default="auto")
    once = commands.add_parser("run", help="one run of the whole fan-out bench")
    once.add_argument("--members", type=int, default=2000)
    once.add_argument("--sequential-members", type=int, default=100)
    once.add_argument("--latency-ms", type=float, default=20.0)
    once.add_argument("--concurrency", type=int, default=None)
    once.add_argument("--source", choices=("auto", "table", "ids"), default="auto")
    args = parser.parse_args(argv)
    if args.command == "deliver":
        figures = deliver_once(args.callback_url, args.members, args.concurrency, args.source)
    else:
        figures = measure_fanout(
            args.members, args.sequential_members, args.latency_ms, args.concurrency, args.source
        )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
