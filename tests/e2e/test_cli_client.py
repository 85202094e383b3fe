"""The CLI client (python -m clients.chat) against the running sandbox."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import AsyncIterator

from clients.chat import connect_url, run_client

from .harness import REPO, Client, SandboxProcess, room_name


async def _lines(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        await asyncio.sleep(0.05)
        yield line + "\n"


def test_run_client_joins_sends_and_prints(sandbox: SandboxProcess) -> None:
    room = room_name()

    async def scenario() -> str:
        watcher = await Client.open(sandbox.url("ap-northeast-1"), "watcher")
        await watcher.join(room)
        out = io.StringIO()
        url = connect_url(sandbox.url("us-east-1"), "alice", "Alice")
        try:
            status = await run_client(
                url, room, _lines("hello from the CLI", "/who", "/raw nonsense"), out
            )
            assert status == 0
            await watcher.wait_for(lambda f: f.get("body") == "hello from the CLI")
        finally:
            await watcher.close()
        return out.getvalue()

    output = asyncio.run(scenario())
    assert f"* joined #{room}" in output
    assert f"#{room} Alice (alice)@us-east-1: hello from the CLI" in output
    assert f"* in #{room}: Alice (alice)@us-east-1" in output
    assert "! bad_request:" in output


def test_python_m_clients_chat_with_the_endpoints_file(sandbox: SandboxProcess) -> None:
    room = room_name()
    result = subprocess.run(
        [sys.executable, "-m", "clients.chat", "--region", "eu-west-1", "--room", room,
         "--user", "bob", "--endpoints-file", str(sandbox.endpoints_file)],
        cwd=REPO, input="piped line\n/quit\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"* joined #{room}" in result.stdout


def test_missing_endpoints_file_is_a_clear_error(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "clients.chat", "--user", "x", "--endpoints-file",
         "/nonexistent/endpoints.json"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "start the sandbox" in result.stderr
