"""The ``calls`` bench: every AWS request the app makes per scenario, counted by the sandbox.

Fixed scenarios in the 3-region sandbox, one after the other, each between a reset of the
sandbox's counters and a read of them (``/_sandbox/calls``, docs/sandbox.md "Calls"). Before
each reset and each read the bench waits until the sandbox says it is idle (no invocation,
frame, bus delivery or queued message in flight), so presence events and bus deliveries that
a scenario starts are counted in it, and nothing of the one before leaks in.

Scenarios (users are new on every run, so every run makes the same requests):

* ``connect``: a WebSocket ``$connect`` (its authorizer included);
* ``join``: the 10th member joins a room whose 9 members are spread over the 3 regions;
* ``send``: an unnumbered ``send`` into that room (members in all 3 regions), until every
  member has the message;
* ``send_numbered``: the same with ``seq`` 1;
* ``presence``, ``ping``: one request each;
* ``http_post``: an HTTP ``POST`` into the room, until every member has it;
* ``long_poll``: a 20 s long poll of an HTTP reader on a room where nothing arrives;
* ``disconnect``: a member closes its connection (``$disconnect`` and the presence events).

Counts: per scenario, the sandbox's tree (region -> function -> ``service:Operation`` ->
``calls``, DynamoDB ``readUnits``/``writeUnits``) and totals. ``python -m bench.calls
--write-expected`` writes them to ``bench/expected_calls.json``, which
``tests/e2e/test_calls.py`` compares exactly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.harness import Client, SandboxProcess, room_name, sandbox_get

EXPECTED_FILE = Path(__file__).with_name("expected_calls.json")
# A fixed bus delay, as in AWS (where the hop costs ~150 ms): the same-region fast path and
# the origin region's EventBusMessageHandler race for the message's history item, and with
# an instant bus either may win, so a send's counts would depend on the machine's load.
# With a second's delay the fast path (two Queries and a PutItem) always writes first.
SANDBOX_OPTIONS = ("--bus-latency-ms", "1000,1000")
ROOM_SIZE = 10
LONG_POLL_SECONDS = 20
IDLE_TIMEOUT = 60.0


async def wait_idle(sandbox: SandboxProcess, timeout: float = IDLE_TIMEOUT) -> dict[str, Any]:
    """The counts, read once the sandbox reports itself idle (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        document: dict[str, Any] = await sandbox_get(sandbox, "_sandbox/calls")
        if document["idle"]:
            return document
        if time.monotonic() > deadline:
            raise AssertionError(f"the sandbox was not idle within {timeout}s")
        await asyncio.sleep(0.02)


async def reset(sandbox: SandboxProcess) -> None:
    await wait_idle(sandbox)
    async with (
        aiohttp.ClientSession() as http,
        http.delete(f"{sandbox.web}_sandbox/calls") as answer,
    ):
        answer.raise_for_status()


async def counted(sandbox: SandboxProcess, action: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """The requests ``action`` (and everything it set off) made: {"calls", "totals"}."""
    await reset(sandbox)
    await action()
    document = await wait_idle(sandbox)
    return {"calls": document["calls"], "totals": document["totals"]}


class Scenarios:
    """The scenarios over one sandbox and one room of 10 members in every region."""

    def __init__(self, sandbox: SandboxProcess, regions: tuple[str, ...]) -> None:
        self.sandbox = sandbox
        self.regions = regions
        self.room = room_name()
        self.run = uuid.uuid4().hex[:6]
        self.members: list[Client] = []

    def user(self, number: int) -> str:
        return f"calls-{self.run}-{number}"

    async def everyone_has(self, body: str) -> None:
        for member in self.members:
            await member.wait_for(lambda f: f.get("type") == "message" and f.get("body") == body)

    async def measure(self) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}
        first = self.regions[0]
        for number in range(ROOM_SIZE - 1):  # 9 members, regions in turn
            region = self.regions[number % len(self.regions)]
            client = await Client.open(self.sandbox.url(region), self.user(number))
            await client.join(self.room)
            self.members.append(client)
        newcomer: list[Client] = []

        async def connect() -> None:
            newcomer.append(await Client.open(self.sandbox.url(first), self.user(ROOM_SIZE - 1)))

        results["connect"] = await counted(self.sandbox, connect)
        results["join"] = await counted(self.sandbox, lambda: newcomer[0].join(self.room))
        self.members.append(newcomer[0])
        sender = newcomer[0]

        async def send(body: str, **extra: Any) -> None:
            reply = await sender.request(
                {"action": "send", "room": self.room, "body": body, **extra}
            )
            assert reply["type"] == "ack", reply
            await self.everyone_has(body)

        results["send"] = await counted(self.sandbox, lambda: send("unnumbered"))
        results["send_numbered"] = await counted(self.sandbox, lambda: send("numbered", seq=1))

        async def ask(action: str, expected: str, **fields: Any) -> None:
            reply = await sender.request({"action": action, **fields})
            assert reply["type"] == expected, reply

        results["presence"] = await counted(
            self.sandbox, lambda: ask("presence", "presence", room=self.room)
        )
        results["ping"] = await counted(self.sandbox, lambda: ask("ping", "pong"))
        results["http_post"] = await counted(self.sandbox, lambda: self.http_post(first))
        results["long_poll"] = await counted(self.sandbox, lambda: self.long_poll(first))
        results["disconnect"] = await counted(self.sandbox, lambda: self.disconnect(first))
        for member in self.members:
            await member.close()
        return results

    async def http_post(self, region: str) -> None:
        url = f"{self.sandbox.url(region, 'http')}/rooms/{self.room}/messages"
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, headers=self.sandbox.bearer(self.user(0)), json={"body": "posted"}) as r,
        ):
            assert r.status == 202, await r.text()
        await self.everyone_has("posted")

    async def long_poll(self, region: str) -> None:
        quiet = room_name()  # nothing is ever sent here
        url = f"{self.sandbox.url(region, 'http')}/rooms/{quiet}/messages"
        params = {"wait": str(LONG_POLL_SECONDS)}
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_SECONDS + 30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, params=params, headers=self.sandbox.bearer(self.user(1))) as r,
        ):
            assert r.status == 200, await r.text()
            assert (await r.json())["messages"] == []

    async def disconnect(self, region: str) -> None:
        leaving = self.members.pop()
        await leaving.close()
        deadline = time.monotonic() + IDLE_TIMEOUT
        while any(  # until the sandbox has seen the close (then $disconnect is under way)
            (c.get("authorizer") or {}).get("userId") == leaving.user
            for c in (await sandbox_get(self.sandbox, "_sandbox/connections"))[region]
        ):
            assert time.monotonic() < deadline, "the connection was not closed"
            await asyncio.sleep(0.02)


def start_sandbox(cdk_out: Path, workdir: Path) -> SandboxProcess:
    """The sandbox the scenarios are counted in (:data:`SANDBOX_OPTIONS`)."""
    return SandboxProcess(cdk_out, workdir, extra=SANDBOX_OPTIONS).start()


async def measure_calls(sandbox: SandboxProcess, regions: tuple[str, ...]) -> dict[str, Any]:
    """Per scenario: ``{"calls": tree, "totals": {...}}``."""
    return await Scenarios(sandbox, regions).measure()


def summary_row(results: dict[str, Any]) -> dict[str, Any]:
    """Per scenario, the figures the table shows: calls, DynamoDB calls, units in all."""
    return {name: scenario["totals"]["all"] for name, scenario in results.items()}


def bench_row(results: dict[str, Any]) -> dict[str, Any]:
    """The ``calls`` part of ``bench --json``: per scenario the totals (``all``, per region)
    and the counts per region and function (``calls``); ``differences`` from the expected
    table (0 when it matches exactly)."""
    expected = json.loads(EXPECTED_FILE.read_text()) if EXPECTED_FILE.exists() else {}
    row: dict[str, Any] = {
        name: {
            "all": scenario["totals"]["all"],
            "regions": scenario["totals"]["regions"],
            "calls": scenario["calls"],
        }
        for name, scenario in results.items()
    }
    row["differences"] = len(differences(expected, results))
    return row


def differences(expected: dict[str, Any], measured: dict[str, Any]) -> list[str]:
    """Lines naming every (scenario, region, function, operation, figure) that differs."""
    found: list[str] = []

    def walk(path: tuple[str, ...], left: Any, right: Any) -> None:
        if isinstance(left, dict) and isinstance(right, dict):
            for key in sorted(set(left) | set(right)):
                walk((*path, key), left.get(key), right.get(key))
        elif left != right:
            found.append(f"{' / '.join(path)}: expected {left}, counted {right}")

    walk((), expected, {name: scenario["calls"] for name, scenario in measured.items()})
    return found


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.calls [--write-expected]``: run the scenarios in a sandbox of
    ``--cdk-out``; print the counts, or write them as the expected table."""
    from tests.e2e.harness import REGIONS

    parser = argparse.ArgumentParser(prog="python -m bench.calls", description=main.__doc__)
    parser.add_argument("--cdk-out", type=Path, default=Path("cdk.out"))
    parser.add_argument(
        "--write-expected", action="store_true", help=f"write the counts to {EXPECTED_FILE}"
    )
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="chat-calls-") as workdir:
        sandbox = start_sandbox(args.cdk_out.resolve(), Path(workdir))
        try:
            results = asyncio.run(measure_calls(sandbox, REGIONS))
        finally:
            sandbox.stop()
    tree = {name: scenario["calls"] for name, scenario in results.items()}
    if args.write_expected:
        EXPECTED_FILE.write_text(json.dumps(tree, indent=1, sort_keys=True) + "\n")
        print(f"wrote {EXPECTED_FILE}", file=sys.stderr)
    print(json.dumps(summary_row(results), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
