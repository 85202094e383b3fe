"""examples/team_app in the sandbox: the team's own route and bus consumer run as deployed.

The example is synthesized from this checkout (tests/infra/test_example_app.py
covers installing it from the wheel); the sandbox then runs its templates, so
the team's ``whoami`` function (its folder plus the ``multiregion_chat/`` runtime the
deployment bundles beside it) answers a real WebSocket client, and the
``Moderation`` consumer gets the messages of its region.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiregion_chat.infra.bundling import CACHE_ENV, cache_root

from .harness import REPO, Client, SandboxProcess, room_name

EXAMPLE = REPO / "examples" / "team_app"
REGIONS = ("us-east-1", "eu-west-1")  # the example's cdk.json


@pytest.fixture(scope="module")
def team_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    outdir = tmp_path_factory.mktemp("team_app") / "cdk.out"
    context = json.loads((EXAMPLE / "cdk.json").read_text())["context"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        # The checkout's layer cache, not the example folder's own (empty; filling it is online).
        CACHE_ENV: str(cache_root()),
        "CDK_OUTDIR": str(outdir),
        "CDK_CONTEXT_JSON": json.dumps({**context, "aws:cdk:enable-asset-metadata": True}),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    process = SandboxProcess(outdir, tmp_path_factory.mktemp("team_sandbox"), REGIONS).start()
    try:
        yield process
    finally:
        assert process.stop() == 0, process.stderr()[-4000:]


def test_the_teams_route_answers_like_a_builtin_one(team_sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        client = await Client.open(team_sandbox.url("eu-west-1"), "carol", "Carol")
        try:
            await client.join(room)
            whoami = await client.request({"action": "whoami"})
            await client.send_raw(json.dumps({"action": "whoami", "ref": 5}))  # a bad ref
            wrong = await client.wait_for(lambda frame: frame.get("type") == "error")
            builtin = await client.request({"action": "ping"})
            return whoami, wrong, builtin
        finally:
            await client.close()

    whoami, wrong, builtin = asyncio.run(scenario())
    assert whoami["type"] == "whoami"
    assert (whoami["userId"], whoami["name"], whoami["rooms"]) == ("carol", "Carol", [room])
    assert (wrong["type"], wrong["code"]) == ("error", "bad_request")
    assert builtin["type"] == "pong"


def test_the_bus_consumer_sees_its_regions_messages(team_sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> None:
        client = await Client.open(team_sandbox.url("us-east-1"), "dave")
        try:
            await client.join(room)
            ack = await client.request({"action": "send", "room": room, "body": "buy spam now"})
            assert ack["type"] == "ack", ack
        finally:
            await client.close()

    asyncio.run(scenario())
    log = Path(team_sandbox.workdir / "state" / "logs" / "us-east-1")

    def flagged() -> bool:
        return any(
            "message flagged" in path.read_text(errors="replace")
            for path in log.glob("*Moderation*.log")
        )

    async def wait() -> None:
        for _ in range(300):  # bounded: 300 checks, at least 60 s on a loaded machine
            if flagged():
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"no 'message flagged' in {sorted(p.name for p in log.glob('*'))}")

    asyncio.run(wait())
