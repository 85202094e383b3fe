"""Chaos controls of a real sandbox: regions down and up, replication links cut and healed.

Two regions shaped like the app (WebSocket API, bus, delivery rule, forwarding rule with a
RetryPolicy and a DeadLetterConfig queue); the delivery function appends every event it gets to
a file per region. Every wait is a bounded poll of the sandbox's own state.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest
import websockets
from sandbox_templates import AssemblyFactory, chat_template, free_port_block

from multiregion_chat.infra.config import ChatConfig
from sandbox.aws_local import FAKE_CREDENTIALS
from sandbox.runtime import Options, Sandbox
from tools.replay_dlq import client_factory, replay_queue

REGIONS = ["us-east-1", "eu-west-1"]
# The deployment the replay tool is told it works on: its bus is the templates' bus.
CONFIG = ChatConfig.from_mapping({"appName": "chat", "stage": "chaos", "regions": REGIONS})
DEADLINE = 60.0

RECORDING_HANDLER = """
import json, os, threading
LOCK = threading.Lock()

def handler(event, context):
    if isinstance(event, dict) and "detail" in event:
        with LOCK, open(os.path.join(os.environ["OUT_DIR"], os.environ["AWS_REGION"]), "a") as f:
            f.write(json.dumps(event["detail"]) + "\\n")
    return {"statusCode": 200, "body": "{}"}
"""


def template(region: str, out_dir: Path, retry_policy: dict[str, int] | None) -> dict[str, Any]:
    document = chat_template(region, REGIONS, bus_name=CONFIG.bus_name)
    resources = document["Resources"]
    resources["Handler"]["Properties"]["Environment"]["Variables"]["OUT_DIR"] = str(out_dir)
    resources["DeadLetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    for target in resources["ForwardingRule"]["Properties"]["Targets"]:
        target["DeadLetterConfig"] = {"Arn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
        if retry_policy is not None:
            target["RetryPolicy"] = retry_policy
    return document


def run(
    cdk_out: Path,
    tmp_path: Path,
    work: Callable[[Sandbox, str], Awaitable[Any]],
    **options: Any,
) -> Any:
    async def main() -> Any:
        sandbox = Sandbox(
            Options(
                cdk_out=cdk_out,
                port_base=free_port_block(10),
                endpoints_file=tmp_path / "endpoints.json",
                state_dir=tmp_path / "state",
                **options,
            ),
            echo=io.StringIO(),
        )
        try:
            await sandbox.start()
            return await work(sandbox, f"http://127.0.0.1:{sandbox.web_port}")
        finally:
            await sandbox.stop()

    return asyncio.run(main())


async def until(check: Callable[[], Any], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def received(out_dir: Path, region: str) -> list[str]:
    path = out_dir / region
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["n"] for line in lines]


async def put(sandbox: Sandbox, region: str, numbers: list[str]) -> None:
    runtime = next(r for r in sandbox.regions if r.region == region)
    events = boto3.session.Session().client(
        "events",
        region_name=region,
        endpoint_url=f"http://127.0.0.1:{runtime.ports.events}",
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    entries = [
        {"Source": "chat.chat", "DetailType": "message", "EventBusName": CONFIG.bus_name,
         "Detail": json.dumps({"originRegion": region, "n": n})}
        for n in numbers
    ]  # fmt: skip
    answer = await asyncio.to_thread(events.put_events, Entries=entries)
    assert answer["FailedEntryCount"] == 0


async def control(web: str, method: str, path: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{web}{path}") as response,
    ):
        return response.status, await response.json()


def forward_counter(sandbox: Sandbox, region: str, name: str) -> int:
    bus = next(r.bus for r in sandbox.regions if r.region == region)
    assert bus is not None
    return bus.counters[name]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "received"
    folder.mkdir()
    return folder


def test_a_cut_link_delivers_everything_once_after_it_heals(
    make_assembly: AssemblyFactory, tmp_path: Path, out_dir: Path
) -> None:
    # The default RetryPolicy (24 h) at scale 0.001: 86 s of retries, at most 0.6 s apart.
    cdk_out = make_assembly(
        {r: template(r, out_dir, None) for r in REGIONS}, code=RECORDING_HANDLER
    )

    async def work(sandbox: Sandbox, web: str) -> None:
        status, answer = await control(web, "POST", "/control/links/us-east-1/eu-west-1/cut")
        assert (status, answer["state"]) == (200, "cut")
        await put(sandbox, "us-east-1", ["a", "b", "c"])
        await until(lambda: sorted(received(out_dir, "us-east-1")) == ["a", "b", "c"], "local")
        await until(
            lambda: forward_counter(sandbox, "us-east-1", "forward_retries") >= 3, "retries"
        )
        assert received(out_dir, "eu-west-1") == []
        state = (await control(web, "GET", "/control/state"))[1]
        assert state["cutLinks"] == [{"from": "us-east-1", "to": "eu-west-1"}]
        # The other direction is not cut.
        await put(sandbox, "eu-west-1", ["x"])
        await until(lambda: received(out_dir, "us-east-1").count("x") == 1, "eu -> us")

        await control(web, "POST", "/control/links/us-east-1/eu-west-1/heal")
        await until(lambda: len(received(out_dir, "eu-west-1")) >= 4, "delivery after heal")
        assert sorted(received(out_dir, "eu-west-1")) == ["a", "b", "c", "x"]
        assert forward_counter(sandbox, "us-east-1", "forwarded_after_retry") == 3
        assert forward_counter(sandbox, "us-east-1", "dead_letter_queued") == 0
        assert (await control(web, "GET", "/control/state"))[1]["cutLinks"] == []

    run(cdk_out, tmp_path, work)


def test_exhausted_retries_land_in_the_dlq_and_the_replay_delivers_them_once(
    make_assembly: AssemblyFactory, tmp_path: Path, out_dir: Path
) -> None:
    # MaximumEventAgeInSeconds 60 at scale 0.01: an event is dead-lettered after 0.6 s.
    policy = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 60}
    cdk_out = make_assembly(
        {r: template(r, out_dir, policy) for r in REGIONS}, code=RECORDING_HANDLER
    )

    async def work(sandbox: Sandbox, web: str) -> None:
        await control(web, "POST", "/control/links/us-east-1/eu-west-1/cut")
        await put(sandbox, "us-east-1", ["a", "b", "c"])
        await until(
            lambda: forward_counter(sandbox, "us-east-1", "dead_letter_queued") == 3, "the DLQ"
        )
        await control(web, "POST", "/control/links/us-east-1/eu-west-1/heal")
        assert received(out_dir, "eu-west-1") == []

        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        dlq = endpoints["queues"]["us-east-1"]["DeadLetterQueue"]["url"]
        clients = client_factory(endpoints)
        sqs = clients("sqs", "us-east-1")
        peek = await asyncio.to_thread(
            sqs.receive_message, QueueUrl=dlq, MessageAttributeNames=["All"], VisibilityTimeout=0
        )
        attributes = peek["Messages"][0]["MessageAttributes"]
        assert attributes["ERROR_CODE"]["StringValue"] == "CONNECTION_FAILURE"
        assert attributes["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == (
            "MaximumEventAgeInSeconds"
        )
        assert attributes["TARGET_ARN"]["StringValue"].endswith(f":event-bus/{CONFIG.bus_name}")
        assert json.loads(peek["Messages"][0]["Body"])["detail"]["originRegion"] == "us-east-1"

        dry = await asyncio.to_thread(replay_queue, sqs, dlq, clients, config=CONFIG, dry_run=True)
        assert dry.as_dict()["outcomes"] == {"would-replay": {"event-bus": 3}}
        report = await asyncio.to_thread(replay_queue, sqs, dlq, clients, config=CONFIG)
        assert report.as_dict()["outcomes"] == {"replayed": {"event-bus": 3}}

        await until(lambda: len(received(out_dir, "eu-west-1")) >= 3, "the replayed events")
        assert sorted(received(out_dir, "eu-west-1")) == ["a", "b", "c"]
        again = await asyncio.to_thread(replay_queue, sqs, dlq, clients, config=CONFIG)
        assert again.as_dict()["outcomes"] == {}

    run(cdk_out, tmp_path, work, retry_time_scale=0.01)


def test_a_region_down_refuses_and_drops_connections_until_it_is_up(
    make_assembly: AssemblyFactory, tmp_path: Path, out_dir: Path
) -> None:
    cdk_out = make_assembly(
        {r: template(r, out_dir, None) for r in REGIONS}, code=RECORDING_HANDLER
    )

    async def work(sandbox: Sandbox, web: str) -> None:
        urls = {r.region: r.urls() for r in sandbox.regions}
        ws_url, http_url = urls["eu-west-1"]["websocket"], urls["eu-west-1"]["http"]
        socket = await websockets.connect(ws_url)
        status, answer = await control(web, "POST", "/control/regions/eu-west-1/down")
        assert (status, answer["connectionsLost"]) == (200, 1)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(socket.recv(), DEADLINE)
        with pytest.raises(OSError):
            await websockets.connect(ws_url, open_timeout=DEADLINE)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session:
                await session.get(http_url)
        state = (await control(web, "GET", "/control/state"))[1]
        assert state["regions"]["eu-west-1"]["state"] == "down"
        assert state["regions"]["us-east-1"]["state"] == "up"
        # The other region is untouched, and so is the down region's bus.
        other = await websockets.connect(urls["us-east-1"]["websocket"])
        await other.close()
        await put(sandbox, "us-east-1", ["while-down"])
        await until(lambda: received(out_dir, "eu-west-1") == ["while-down"], "the bus")

        await control(web, "POST", "/control/regions/eu-west-1/up")
        again = await websockets.connect(ws_url, open_timeout=DEADLINE)
        await again.close()
        async with aiohttp.ClientSession() as session, session.get(http_url) as response:
            assert response.status == 404  # no HTTP API in this template, but listening
        assert (await control(web, "POST", "/control/regions/nowhere/down"))[0] == 404
        assert (await control(web, "POST", "/control/links/us-east-1/us-east-1/cut"))[0] == 404

    run(cdk_out, tmp_path, work)


def test_connects_over_the_rate_limit_are_refused_with_429(
    make_assembly: AssemblyFactory, tmp_path: Path, out_dir: Path
) -> None:
    cdk_out = make_assembly(
        {r: template(r, out_dir, None) for r in REGIONS}, code=RECORDING_HANDLER
    )

    class Exhausted:
        def admit(self) -> bool:
            return False

    async def work(sandbox: Sandbox, web: str) -> None:
        runtime = sandbox.regions[0]
        assert runtime.websocket is not None
        assert runtime.websocket.connect_limit is not None  # --connect-rate-limit set it
        runtime.websocket.connect_limit = Exhausted()  # the quota is used up, whatever the speed
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(runtime.urls()["websocket"])
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body) == {"message": "Too Many Requests"}
        state = (await control(web, "GET", "/control/state"))[1]
        assert state["regions"][runtime.region]["connectThrottled"] == 1
        assert state["connectRateLimit"] == 500
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{web}/control/retry-time-scale", json={"scale": 0.5}) as answer,
        ):
            assert (answer.status, await answer.json()) == (200, {"retryTimeScale": 0.5})
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{web}/control/retry-time-scale", json={"scale": -1}) as answer,
        ):
            assert answer.status == 400
        assert (await control(web, "GET", "/control/state"))[1]["retryTimeScale"] == 0.5
        assert all(r.bus is not None and r.bus.retry_time_scale == 0.5 for r in sandbox.regions)

    run(cdk_out, tmp_path, work, connect_rate_limit=500)
