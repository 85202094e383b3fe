"""The CLI client (python -m multiregion_chat.clients.chat) against the running sandbox."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from multiregion_chat.clients.chat import run_client
from multiregion_chat.clients.endpoints import connect_url
from multiregion_chat.clients.options import Backoff, ClientOptions
from multiregion_chat.clients.tokens import mint_token

from .harness import (
    REPO,
    Client,
    Lines,
    SandboxProcess,
    drop_connection,
    room_name,
    sandbox_get,
    wait_until,
)


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
        url = connect_url(sandbox.url("us-east-1"), "alice", "Alice", secret=sandbox.signing_secret)
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
        [sys.executable, "-m", "multiregion_chat.clients.chat", "--region", "eu-west-1",
         "--room", room, "--user", "bob", "--endpoints-file", str(sandbox.endpoints_file)],
        cwd=REPO, input="piped line\n/quit\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"* joined #{room}" in result.stdout


def test_missing_endpoints_file_is_a_clear_error(tmp_path: object) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "multiregion_chat.clients.chat", "--user", "x", "--endpoints-file",
         "/nonexistent/endpoints.json"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and "start the sandbox" in result.stderr


async def _wait_output(out: io.StringIO, text: str, timeout: float = 15.0) -> None:
    await wait_until(lambda: text in out.getvalue(), timeout, f"{text!r} in the output")


def test_run_client_resumes_after_the_sandbox_drops_its_connection(
    sandbox: SandboxProcess,
) -> None:
    """The connection vanishes (no $disconnect); messages sent meanwhile in another region are
    printed after the reconnect, each once, in id order, then live ones; pings keep going."""
    room = room_name()
    region = "us-east-1"

    async def scenario() -> tuple[str, list[float]]:
        lines = Lines()
        out = io.StringIO()
        gate = asyncio.Event()
        delays: list[float] = []

        async def held_sleep(seconds: float) -> None:
            # The backoff's wait, held until the test has sent what the client must miss.
            delays.append(seconds)
            await gate.wait()

        options = ClientOptions(
            backoff=Backoff(attempts=3, base=0.2, cap=1.0), sleep=held_sleep, ping_seconds=0.2
        )
        pings_before = await _pings(sandbox, region)
        client = asyncio.create_task(
            run_client(
                connect_url(sandbox.url(region), "cli", "Cli", secret=sandbox.signing_secret),
                room,
                lines.stream(),
                out,
                options,
            )
        )
        talker = await Client.open(sandbox.url("eu-west-1"), "talker", "Talker")
        witness = await Client.open(sandbox.url(region), "witness")
        try:
            await _wait_output(out, f"* joined #{room}")
            await talker.join(room)
            await witness.join(room)
            await _wait_output(out, f"* Talker (talker)@eu-west-1 joined #{room}")  # presence
            before = await talker.request({"action": "send", "room": room, "body": "before"})
            await _wait_output(out, "Talker (talker)@eu-west-1: before")
            await drop_connection(sandbox, region, "cli")
            await _wait_output(out, "* reconnecting in")
            missed = []
            for n in range(3):
                ack = await talker.request({"action": "send", "room": room, "body": f"missed {n}"})
                missed.append(ack["id"])
            # The witness got them live: they are in us-east-1's history.
            for message_id in missed:
                await witness.wait_for(lambda f, i=message_id: f.get("id") == i)
            assert "missed" not in out.getvalue()
            gate.set()
            await _wait_output(out, "* reconnected to")
            await _wait_output(out, ": missed 2")
            await talker.request({"action": "send", "room": room, "body": "live"})
            await _wait_output(out, "Talker (talker)@eu-west-1: live")
            # Pings went out on the timer (on both connections).
            await _wait_pings(sandbox, region, pings_before)
            lines.end()
            assert await asyncio.wait_for(client, 30) == 0
            assert before["id"] < missed[0]
        finally:
            if not client.done():
                client.cancel()
            await talker.close()
            await witness.close()
        return out.getvalue(), delays

    output, delays = asyncio.run(scenario())
    texts = [line.split(": ", 1)[1] for line in output.splitlines() if "@eu-west-1: " in line]
    assert texts == ["before", "missed 0", "missed 1", "missed 2", "live"], output
    assert "! connection lost" in output
    assert len(delays) == 1 and 0.1 <= delays[0] <= 0.2  # base 0.2 s, equal jitter


async def _pings(sandbox: SandboxProcess, region: str) -> int:
    stats = await sandbox_get(sandbox, "_sandbox/stats")
    return int(stats["regions"][region]["websocket"].get("route:ping", 0))


async def _wait_pings(sandbox: SandboxProcess, region: str, before: int) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while await _pings(sandbox, region) <= before:
        assert asyncio.get_running_loop().time() < deadline, "the client did not ping"
        await asyncio.sleep(0.1)


def test_run_client_over_http_sends_and_receives(sandbox: SandboxProcess) -> None:
    """--http: a POST reaches a WebSocket client in another region, and the long poll prints
    what that client sends, in the same format as over WebSocket."""
    room = room_name()

    async def scenario() -> str:
        lines = Lines()
        out = io.StringIO()
        options = ClientOptions(http=True, poll_wait=5)
        url = connect_url(
            sandbox.url("us-east-1", "http"), "webless", "Webless", secret=sandbox.signing_secret
        )
        client = asyncio.create_task(run_client(url, room, lines.stream(), out, options))
        peer = await Client.open(sandbox.url("ap-northeast-1"), "peer", "Peer")
        try:
            await peer.join(room)
            await _wait_output(out, f"* joined #{room} over HTTP")
            await peer.request({"action": "send", "room": room, "body": "to http"})
            await _wait_output(out, f"#{room} Peer (peer)@ap-northeast-1: to http")
            lines.put("from http")
            message = await peer.wait_for(lambda f: f.get("body") == "from http")
            assert message["sender"] == {
                "userId": "webless",
                "name": "Webless",
                "region": "us-east-1",
            }
            lines.put("/who")
            lines.end()
            assert await asyncio.wait_for(client, 30) == 0
        finally:
            if not client.done():
                client.cancel()
            await peer.close()
        return out.getvalue()

    output = asyncio.run(scenario())
    assert output.count("Peer (peer)@ap-northeast-1: to http") == 1
    # Its own message came back through the long poll, once.
    assert output.count(f"#{room} Webless (webless)@us-east-1: from http") == 1
    assert "! /who is not available over HTTP" in output


def test_python_m_clients_chat_http(sandbox: SandboxProcess) -> None:
    room = room_name()
    result = subprocess.run(
        [sys.executable, "-m", "multiregion_chat.clients.chat", "--http", "--region", "eu-west-1",
         "--room", room, "--user", "bob", "--endpoints-file", str(sandbox.endpoints_file)],
        cwd=REPO, input="piped over http\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"* joined #{room} over HTTP" in result.stdout
    assert f"#{room} bob@eu-west-1: piped over http" in result.stdout


def test_run_client_refreshes_its_token_and_outlives_the_first_one(
    sandbox: SandboxProcess,
) -> None:
    """The CLI connects with a token that expires 5 s later (past the 30 s leeway) and
    refreshes every second with freshly minted ones: after the first token's expiry the
    same connection still sends and receives, and was never closed."""
    room = room_name()

    async def scenario() -> str:
        now = int(time.time())
        url = f"{sandbox.url('eu-west-1')}?" + urlencode(
            {"token": mint_token(sandbox.signing_secret, "fresh", ttl_seconds=-25, now=now)}
        )
        options = ClientOptions(
            fresh_token=lambda: mint_token(sandbox.signing_secret, "fresh"), refresh_seconds=1
        )
        lines = Lines()
        out = io.StringIO()
        client = asyncio.create_task(run_client(url, room, lines.stream(), out, options))
        try:
            await _wait_output(out, f"* joined #{room}")
            # Wait for the wall clock (not the server): the first token's exp + leeway.
            await asyncio.sleep(max(0.0, now - 25 + 32 - time.time()))
            lines.put("after the first token")
            await _wait_output(out, "after the first token")
            lines.end()
            assert await asyncio.wait_for(client, 30) == 0
        finally:
            if not client.done():
                client.cancel()
        return out.getvalue()

    output = asyncio.run(scenario())
    assert "token_expired" not in output and "reconnected" not in output
    assert "refresh failed" not in output
