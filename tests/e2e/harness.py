"""Running the sandbox as a subprocess and talking to it like real clients do."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from websockets.asyncio.client import ClientConnection, connect

from multiregion_chat.clients.strict_json import loads_frame
from multiregion_chat.clients.tokens import Minter, minter_from_endpoints

REPO = Path(__file__).resolve().parents[2]
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-1")
PORTS_NEEDED = 2 + 4 * len(REGIONS)


def synth(outdir: Path, timeout: float = 600, context: Sequence[str] = ()) -> Path:
    """``cdk synth`` of the app as cdk.json configures it (what `make local` runs),
    ``context`` being ``-c key=value`` arguments on top."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    result = subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--quiet", "-o", str(outdir), *context],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cdk synth failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return outdir


def ports_free(base: int, count: int) -> bool:
    """Nothing listens on these ports (the sandbox binds with SO_REUSEADDR, as this probe)."""
    for port in range(base, base + count):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections and ``bind(0)``."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port_base(count: int = PORTS_NEEDED) -> int:
    """A free range of ``count`` ports outside the ephemeral range, so that no outgoing
    connection (or ``bind(0)``) of any process can take a port the sandbox freed, for example
    between a crash and the restart on the same ports."""
    low, high = ephemeral_port_range()
    if low - count > 20000:
        span = (20000, low - count)
    elif high + 1 < 65536 - count:
        span = (high + 1, 65536 - count)
    else:
        span = (20000, 60000 - count)
    for _ in range(200):
        base = random.randrange(*span)
        if ports_free(base, count):
            return base
    raise RuntimeError("no free port range")


@contextlib.contextmanager
def synthesized_sandbox(
    workdir: Path,
    *,
    preset_env: str,
    context: Sequence[str],
    regions: tuple[str, ...] | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[SandboxProcess]:
    """A sandbox of the app synthesized with ``context`` (or of the cdk.out named by the
    environment variable ``preset_env``, to skip the synth), stopped cleanly at the end."""
    preset = os.environ.get(preset_env)
    cdk_out = (
        Path(preset).resolve() if preset else synth(workdir / "synth" / "cdk.out", context=context)
    )
    (workdir / "sandbox").mkdir(parents=True, exist_ok=True)
    process = SandboxProcess(cdk_out, workdir / "sandbox", regions=regions, extra=extra)
    process.start()
    try:
        yield process
    finally:
        status = process.stop()
        assert status == 0, f"the sandbox exited {status}:\n{process.stderr()[-4000:]}"


class SandboxProcess:
    """``python -m sandbox`` on free ports, stopped with SIGINT like Ctrl-C."""

    def __init__(
        self,
        cdk_out: Path,
        workdir: Path,
        regions: tuple[str, ...] | None = None,
        extra: tuple[str, ...] = (),
        port_base: int | None = None,
    ) -> None:
        self.cdk_out = cdk_out
        self.workdir = workdir
        self.regions = regions
        self.extra = extra
        self.port_base = port_base
        self.endpoints_file = workdir / "endpoints.json"
        self.stdout_path = workdir / "sandbox.out"
        self.stderr_path = workdir / "sandbox.err"
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: dict[str, Any] = {}
        self.wall_seconds = 0.0
        self.start_failures: list[str] = []  # stderr of starts that found a port taken

    def command(self) -> list[str]:
        assert self.port_base is not None
        command = [
            sys.executable, "-m", "sandbox",
            "--cdk-out", str(self.cdk_out),
            "--port-base", str(self.port_base),
            "--endpoints-file", str(self.endpoints_file),
            "--state-dir", str(self.workdir / "state"),
            *self.extra,
        ]  # fmt: skip
        if self.regions:
            command += ["--regions", ",".join(self.regions)]
        return command

    def start(self, timeout: float = 120.0) -> SandboxProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if self.port_base is None or attempt:
                self.port_base = free_port_base(2 + 4 * len(self.regions or REGIONS))
            if self._start_once(timeout):
                return self
        raise RuntimeError(f"the sandbox did not start:\n{self.stderr()}")

    def _start_once(self, timeout: float) -> bool:
        started = time.perf_counter()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.command(), cwd=REPO, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "cannot listen" in self.stderr():
                    self.start_failures.append(f"--port-base {self.port_base}: {self.stderr()}")
                    return False
                raise RuntimeError(
                    f"the sandbox exited ({self.process.returncode}):\n{self.stderr()}"
                )
            if self.endpoints_file.exists() and "ready in" in self.stdout():
                self.endpoints = json.loads(self.endpoints_file.read_text())
                _remember_secret(self.endpoints)
                self.wall_seconds = time.perf_counter() - started
                return True
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the sandbox was not ready in {timeout}s:\n{self.stderr()}")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def ready_seconds(self) -> float:
        for line in self.stdout().splitlines():
            if line.startswith("ready in "):
                return float(line.split()[2].rstrip("s;"))
        return float("nan")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (Ctrl-C); the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.process.returncode if self.process.returncode is not None else -9)

    def kill(self) -> None:
        """SIGKILL the sandbox process alone, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def url(self, region: str, kind: str = "websocket") -> str:
        return str(self.endpoints["regions"][region][kind])

    @property
    def web(self) -> str:
        return str(self.endpoints["web"])

    @property
    def signing_secret(self) -> str:
        return str(self.endpoints["signingSecret"])

    def token(self, user: str, name: str | None = None, rooms: list[str] | None = None) -> str:
        """A token for ``user`` from this sandbox's identity provider (``--oidc``: RS256) or
        signed with its secret (HS256)."""
        mint = minter_from_endpoints(self.endpoints)
        assert mint is not None, "this sandbox has no auth"
        return mint(user, name=name, rooms=rooms)

    def bearer(self, user: str, name: str | None = None) -> dict[str, str]:
        """HTTP headers that authenticate ``user`` on the HTTP fallback API."""
        return {"Authorization": f"Bearer {self.token(user, name)}"}


# How every running sandbox mints tokens (its signing secret or its identity provider's
# key), by the host:port of its APIs, so that Client.open(url, user) can mint the token
# for whichever sandbox the URL belongs to.
_MINTERS_BY_HOST: dict[str, Minter] = {}


def _remember_secret(endpoints: dict[str, Any]) -> None:
    mint = minter_from_endpoints(endpoints)
    if mint is None:
        return
    for urls in endpoints.get("regions", {}).values():
        for url in urls.values():
            _MINTERS_BY_HOST[urlsplit(url).netloc] = mint


def minter_for(url: str) -> Minter:
    host = urlsplit(url).netloc
    if host not in _MINTERS_BY_HOST:
        raise AssertionError(f"no running sandbox with auth serves {url}")
    return _MINTERS_BY_HOST[host]


def room_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class Client:
    """A real WebSocket client that keeps every frame it received."""

    def __init__(self, ws: ClientConnection, user: str) -> None:
        self.ws = ws
        self.user = user
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._refs = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls,
        url: str,
        user: str,
        name: str | None = None,
        *,
        rooms: list[str] | None = None,
        token: str | None = None,
    ) -> Client:
        """Connect as ``user`` with a token minted by the sandbox's identity provider or
        signing secret (``rooms``: the token's room patterns), or with the ``token`` given."""
        if token is None:
            token = minter_for(url)(user, name=name, rooms=rooms)
        ws = await connect(f"{url}?{urlencode({'token': token})}", open_timeout=10)
        return cls(ws, user)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                try:
                    frame = loads_frame(raw)
                except ValueError as error:  # kept, so a test can see it arrived
                    frame = {"type": "unreadable", "reason": str(error)}
                async with self._arrived:
                    self.frames.append(frame)
                    self._arrived.notify_all()
        async with self._arrived:
            self._arrived.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 15.0,
        start: int = 0,
    ) -> dict[str, Any]:
        """The first frame from index ``start`` on that satisfies ``predicate``."""

        async def find() -> dict[str, Any]:
            async with self._arrived:
                while True:
                    for frame in self.frames[start:]:
                        if predicate(frame):
                            return frame
                    if self._reader.done():
                        raise ConnectionError(f"{self.user}: connection closed")
                    await self._arrived.wait()

        return await asyncio.wait_for(find(), timeout)

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def request(self, frame: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        """Send ``frame`` with a fresh ref; the direct reply carrying that ref."""
        self._refs += 1
        ref = f"{self.user}-{self._refs}"
        # UTF-8 like the bundled clients: ASCII escapes can triple a body past the
        # 32 KB frame limit, where API Gateway (and the sandbox) close with 1009.
        await self.ws.send(json.dumps({**frame, "ref": ref}, ensure_ascii=False))
        return await self.wait_for(lambda f: f.get("ref") == ref, timeout)

    async def join(self, room: str) -> dict[str, Any]:
        reply = await self.request({"action": "join", "room": room})
        assert reply["type"] == "joined", reply
        return reply

    def messages(self, room: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == "message" and f.get("room") == room]

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)


async def wait_until(
    condition: Callable[[], Any], timeout: float = 15.0, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it is truthy (bounded); its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def sandbox_get(sandbox: SandboxProcess, path: str) -> Any:
    """JSON of one of the sandbox's helpers, e.g. ``_sandbox/stats``."""
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.web}{path}") as answer:
        return await answer.json()


async def connection_id(sandbox: SandboxProcess, region: str, user: str) -> str:
    """The id of ``user``'s one open WebSocket connection in ``region``."""
    listing = await sandbox_get(sandbox, "_sandbox/connections")
    (found,) = [
        c["connectionId"]
        for c in listing[region]
        if (c.get("authorizer") or {}).get("userId") == user
    ]
    return str(found)


async def drop_connection(sandbox: SandboxProcess, region: str, user: str) -> str:
    """Lose ``user``'s connection like a vanished client (no ``$disconnect``); its id."""
    found = await connection_id(sandbox, region, user)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{sandbox.web}_sandbox/regions/{region}/drop", params={"connectionId": found}
        ) as answer,
    ):
        assert answer.status == 200, await answer.text()
    return found


class Lines:
    """Input lines for ``clients.chat.run_client`` that a test feeds while it runs."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def put(self, line: str) -> None:
        self._queue.put_nowait(line + "\n")

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def stream(self) -> AsyncIterator[str]:
        while (line := await self._queue.get()) is not None:
            yield line
