"""The parent side of the function workers: start, invoke, restart, stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from sandbox.errors import SandboxError
from sandbox.template_model import TemplateFunction

log = logging.getLogger("sandbox.function_pool")

WORKER_SCRIPT = Path(__file__).with_name("function_process.py")
START_TIMEOUT = 60.0


@dataclass
class InvokeResult:
    ok: bool
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    duration_ms: float = 0.0


class Worker:
    """One function's process. ``invoke`` is safe to call concurrently."""

    def __init__(
        self,
        spec: TemplateFunction,
        environment: dict[str, str],
        code_dir: Path,
        log_path: Path,
        echo: TextIO | None,
    ) -> None:
        self.spec = spec
        self.label = f"{spec.region} {spec.logical_id}"
        self._environment = environment
        self._code_dir = code_dir
        self._log_path = log_path
        self._echo = echo
        self._process: asyncio.subprocess.Process | None = None
        self._port = 0
        self._session: aiohttp.ClientSession | None = None
        self._pump: asyncio.Task[None] | None = None
        self._restart_lock = asyncio.Lock()
        self.invocations = 0
        self.errors = 0
        self.throttles = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        # ReservedConcurrentExecutions: invocations beyond it wait for a slot (AWS throttles
        # them: synchronous callers get 429, queues and asynchronous events retry later).
        reserved = spec.reserved_concurrency
        self._slots = asyncio.Semaphore(reserved) if reserved else None

    async def start(self) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._session is None:  # a new run, not a restart: start a fresh log
            self._log_path.write_text("", encoding="utf-8")
        command = [
            sys.executable,
            "-u",
            str(WORKER_SCRIPT),
            "--handler", self.spec.handler,
            "--code-dir", str(self._code_dir),
            "--name", self.spec.name,
            "--arn", self.spec.arn,
            "--memory", str(self.spec.memory_size),
            "--timeout", str(self.spec.timeout_seconds),
        ]  # fmt: skip
        self._process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._environment,
            cwd=str(self._code_dir),
            start_new_session=True,  # its own process group: stopped as a whole
        )
        self._pump = asyncio.create_task(self._pump_logs(self._process))
        assert self._process.stdout is not None
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            await self.stop()
            raise SandboxError(
                f"{self.label}: the worker did not start in {START_TIMEOUT:.0f}s"
            ) from None
        text = line.decode(errors="replace").strip()
        if not text.startswith("READY "):
            await self._wait_exit(2.0)
            detail = text[6:] if text.startswith("ERROR ") else "the worker exited"
            raise SandboxError(
                f"{self.label}: handler {self.spec.handler} failed to load: {detail} "
                f"(see {self._log_path})"
            )
        self._port = int(text.split()[1])
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, force_close=False),
                json_serialize=json.dumps,
            )

    async def _pump_logs(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        prefix = f"[{self.label}] "
        with self._log_path.open("a", encoding="utf-8") as sink:
            while True:
                line = await process.stderr.readline()
                if not line:
                    return
                text = line.decode(errors="replace")
                sink.write(text)
                sink.flush()
                if self._echo is not None:
                    self._echo.write(prefix + text)
                    self._echo.flush()

    async def invoke(self, event: Any, timeout: float | None = None) -> InvokeResult:
        if self.spec.reserved_concurrency == 0:
            self.throttles += 1
            return InvokeResult(
                False,
                error_type="TooManyRequestsException",
                error_message="Rate Exceeded. (the function's reserved concurrency is 0)",
            )
        async with self._slots if self._slots is not None else contextlib.nullcontext():
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                return await self._invoke(event, timeout)
            finally:
                self.in_flight -= 1

    async def _invoke(self, event: Any, timeout: float | None) -> InvokeResult:
        limit = float(self.spec.timeout_seconds) if timeout is None else timeout
        started = time.perf_counter()
        self.invocations += 1
        result = await self._invoke_once(event, limit)
        if not result.ok and result.error_type == "Sandbox.WorkerGone":
            # Lambda would start a new container: so does the sandbox, once.
            await self._restart()
            result = await self._invoke_once(event, limit)
        result.duration_ms = (time.perf_counter() - started) * 1000
        if not result.ok:
            self.errors += 1
            log.warning(
                "%s: invocation failed: %s: %s", self.label, result.error_type, result.error_message
            )
        return result

    async def _invoke_once(self, event: Any, limit: float) -> InvokeResult:
        if self._session is None or self._process is None:
            return InvokeResult(False, error_type="Sandbox.WorkerGone", error_message="stopped")
        url = f"http://127.0.0.1:{self._port}/invoke"
        try:
            async with self._session.post(
                url,
                data=json.dumps(event).encode(),
                headers={"X-Request-Id": str(uuid.uuid4()), "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=limit + 1.0),
            ) as response:
                payload = await response.json(content_type=None)
        except TimeoutError:
            return InvokeResult(
                False,
                error_type="Sandbox.Timeout",
                error_message=f"Task timed out after {limit:.2f} seconds",
            )
        except aiohttp.ClientError as exc:
            return InvokeResult(False, error_type="Sandbox.WorkerGone", error_message=str(exc))
        if payload.get("ok"):
            return InvokeResult(True, result=payload.get("result"))
        return InvokeResult(
            False,
            error_type=payload.get("errorType"),
            error_message=payload.get("errorMessage"),
        )

    async def _restart(self) -> None:
        async with self._restart_lock:
            await self._wait_exit(0.5)  # a dead worker is reaped at once
            if self._process is not None and self._process.returncode is None:
                return  # still alive: a transient error, not a dead worker
            log.warning("%s: worker exited; starting a new one", self.label)
            await self._kill()
            await self.start()

    async def _wait_exit(self, timeout: float) -> None:
        if self._process is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), timeout)

    def kill_now(self) -> None:
        """SIGKILL the worker's process group, synchronously (the emergency exit)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    async def _kill(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), wait)
                break
            except TimeoutError:
                continue

    async def stop(self) -> None:
        await self._kill()
        if self._pump is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._pump, 2.0)
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._process = None
