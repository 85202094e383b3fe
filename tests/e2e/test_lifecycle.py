"""Starting and stopping the sandbox: Ctrl-C, a crash and a second start, bad input."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from multiregion_chat.clients.tokens import mint_token
from sandbox.assembly import load_stacks
from sandbox.template_model import build_models

from .harness import REPO, Client, SandboxProcess, ports_free, room_name

TWO = ("us-east-1", "ap-northeast-1")


def _children(pid: int) -> set[int]:
    """Process ids whose session is ``pid``'s (the workers start sessions of their own, so
    every process whose parent chain reaches ``pid``)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _chat_works(process: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> None:
        a = await Client.open(process.url(TWO[0]), "a")
        b = await Client.open(process.url(TWO[1]), "b")
        try:
            await a.join(room)
            await b.join(room)
            ack = await a.request({"action": "send", "room": room, "body": "ok"})
            await b.wait_for(lambda f: f.get("id") == ack["id"])
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_the_real_templates_map_to_the_expected_services(cdk_out: Path) -> None:
    models = build_models(load_stacks(cdk_out), None)
    assert [m.region for m in models] == ["us-east-1", "eu-west-1", "ap-northeast-1"]
    for model in models:
        assert model.websocket is not None and model.websocket.stage == "prod"
        assert set(model.websocket.routes) >= {
            "$connect",
            "$disconnect",
            "$default",
            "join",
            "leave",
            "send",
            "history",
            "presence",
            "ping",
        }
        assert all(
            r.return_response
            for k, r in model.websocket.routes.items()
            if not k.startswith("$") or k == "$default"
        )
        assert {t.name.rsplit("-", 1)[-1] for t in model.tables}
        kinds = [t.kind for rule in model.rules for t in rule.targets]
        assert kinds.count("bus") == 2 and "lambda" in kinds  # the 2 other regions' buses
        assert model.warnings == []


def test_ctrl_c_stops_everything_and_a_crash_does_not_block_a_restart(
    cdk_out: Path, tmp_path: Path
) -> None:
    first = SandboxProcess(cdk_out, tmp_path / "first", regions=TWO)
    second: SandboxProcess | None = None
    try:
        first.start()
        print(f"\nsandbox start (2 regions): {first.ready_seconds():.2f}s to ready")
        _chat_works(first)
        assert first.process is not None
        pid = first.process.pid
        children = _children(pid)
        assert len(children) >= 7  # moto + 3 functions x 2 regions
        # A crash: the sandbox process dies at once, without cleaning up.
        first.kill()
        assert first.endpoints_file.exists()  # stale now
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)  # workers notice their parent is gone (stdin closes) and exit
        assert not [c for c in children if Path(f"/proc/{c}").exists()], "orphans left behind"
        # A second start on the same ports works and overwrites the stale endpoints file.
        second = SandboxProcess(cdk_out, tmp_path / "first", regions=TWO, port_base=first.port_base)
        second.start()
        assert second.port_base == first.port_base, second.start_failures
        assert json.loads(second.endpoints_file.read_text())["pid"] != pid
        _chat_works(second)
        assert second.process is not None
        children = _children(second.process.pid)
        # Ctrl-C: everything stops, the endpoints file goes, the ports are free again.
        assert second.stop() == 0
        assert not second.endpoints_file.exists()
        assert not [c for c in children if Path(f"/proc/{c}").exists()]
        assert second.port_base is not None and ports_free(second.port_base, 2 + 4 * len(TWO))
        assert "stopping" in second.stderr()
    finally:
        # A failed assertion must not leave a sandbox running.
        for process in (first, second):
            if process is not None and process.process is not None:
                process.stop()


def _run_sandbox(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "--port-base", "1100", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_cdk_out_is_a_clear_error(tmp_path: Path) -> None:
    result = _run_sandbox("--cdk-out", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert "no cloud assembly" in result.stderr and "cdk synth" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_route_to_a_missing_function_names_the_resource(cdk_out: Path, tmp_path: Path) -> None:
    broken = tmp_path / "cdk.out"
    shutil.copytree(cdk_out, broken)
    template_path = broken / "chat-prod-eu-west-1.template.json"
    template = json.loads(template_path.read_text())
    functions = [
        k
        for k, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function" and "ClientMessage" in k
    ]
    del template["Resources"][functions[0]]
    template_path.write_text(json.dumps(template))
    result = _run_sandbox("--cdk-out", str(broken), "--regions", "eu-west-1")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("sandbox: error:") and functions[0] in message
    assert "Traceback" not in result.stderr


def test_unknown_region_is_a_clear_error(cdk_out: Path) -> None:
    result = _run_sandbox("--cdk-out", str(cdk_out), "--regions", "us-east-1,mars-north-1")
    assert result.returncode == 2
    assert "mars-north-1" in result.stderr


@pytest.mark.parametrize("port_base", ["80", "65530"])
def test_unusable_port_base(cdk_out: Path, port_base: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "--cdk-out", str(cdk_out), "--port-base", port_base],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "--port-base" in result.stderr


def test_signing_secret_option_and_a_subset_without_the_first_region(
    cdk_out: Path, tmp_path: Path
) -> None:
    """--signing-secret is the secret of every region, also when the region that creates it
    (the first, us-east-1) is not running: the others read it by name."""
    process = SandboxProcess(
        cdk_out, tmp_path, regions=("eu-west-1",), extra=("--signing-secret", "given-secret")
    ).start()
    try:
        assert process.endpoints["signingSecret"] == "given-secret"
        token = mint_token("given-secret", "solo")

        async def scenario() -> None:
            client = await Client.open(process.url("eu-west-1"), "solo", token=token)
            try:
                assert (await client.request({"action": "ping"}))["type"] == "pong"
            finally:
                await client.close()

        asyncio.run(scenario())
    finally:
        assert process.stop() == 0
