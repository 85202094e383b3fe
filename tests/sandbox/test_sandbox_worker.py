"""A function's worker process: unmodified handler, its own environment and sys.path."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from sandbox.errors import SandboxError
from sandbox.function_pool import Worker
from sandbox.template_model import TemplateFunction

PROBE = """
import importlib.util, os, sys, time

STARTED = os.environ["TABLE"]  # read at import time, like module-scope config


def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise KeyError("missing")
    return {
        "table": STARTED,
        "region": os.environ["AWS_REGION"],
        "cwd": os.getcwd(),
        "sandbox_importable": importlib.util.find_spec("sandbox") is not None,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
"""


def spec(code_dir: Path, handler: str = "probe.handler", timeout: int = 3) -> TemplateFunction:
    return TemplateFunction(
        logical_id="Probe",
        name="stack-Probe",
        arn="arn:aws:lambda:eu-west-1:000000000000:function:stack-Probe",
        region="eu-west-1",
        handler=handler,
        runtime="python3.12",
        code_dir=code_dir,
        inline_code=None,
        environment={},
        timeout_seconds=timeout,
        memory_size=128,
    )


def environment() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "TABLE": "t1", "AWS_REGION": "eu-west-1"}


def test_invocations_run_the_handler_in_its_own_world(tmp_path: Path) -> None:
    code = tmp_path / "asset"
    code.mkdir()
    (code / "probe.py").write_text(PROBE)

    async def scenario() -> list:
        worker = Worker(spec(code), environment(), code, tmp_path / "probe.log", None)
        await worker.start()
        try:
            results = await asyncio.gather(
                worker.invoke({"sleep": 0.3}), worker.invoke({"sleep": 0.3}), worker.invoke({})
            )
            failed = await worker.invoke({"fail": True})
            slow = await worker.invoke({"sleep": 2}, timeout=0.5)
            return [*results, failed, slow]
        finally:
            await worker.stop()

    first, second, quick, failed, slow = asyncio.run(scenario())
    assert first.ok and first.result["table"] == "t1" and first.result["region"] == "eu-west-1"
    assert first.result["cwd"] == str(code)
    assert first.result["sandbox_importable"] is False  # only the asset folder is on the path
    assert first.result["function_name"] == "stack-Probe" and first.result["remaining_ms"] > 0
    assert first.result["request_id"] != second.result["request_id"]
    assert quick.duration_ms < first.duration_ms  # invocations run concurrently
    assert not failed.ok and failed.error_type == "KeyError"
    assert not slow.ok and slow.error_type == "Sandbox.Timeout"
    assert "KeyError" in (tmp_path / "probe.log").read_text()  # the traceback is logged


def test_a_handler_that_cannot_load_stops_with_its_name(tmp_path: Path) -> None:
    code = tmp_path / "asset"
    code.mkdir()
    (code / "probe.py").write_text("import not_a_module_anywhere\n")

    async def scenario() -> None:
        worker = Worker(spec(code), environment(), code, tmp_path / "probe.log", None)
        try:
            await worker.start()
        finally:
            await worker.stop()

    with pytest.raises(SandboxError) as error:
        asyncio.run(scenario())
    message = str(error.value)
    assert "eu-west-1 Probe" in message and "probe.handler" in message
    assert "not_a_module_anywhere" in message


def test_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    code = tmp_path / "asset"
    code.mkdir()
    (code / "probe.py").write_text(
        "import os\n\ndef handler(event, context):\n"
        "    if event.get('die'):\n        os._exit(3)\n    return {'pid': os.getpid()}\n"
    )

    async def scenario() -> tuple:
        worker = Worker(spec(code), environment(), code, tmp_path / "probe.log", None)
        await worker.start()
        try:
            before = await worker.invoke({})
            died = await worker.invoke({"die": True})
            after = await worker.invoke({})
            return before, died, after
        finally:
            await worker.stop()

    before, died, after = asyncio.run(scenario())
    assert before.ok and after.ok and not died.ok
    # The replacement is a new process that answers like the first one did.
    assert set(after.result) == set(before.result) == {"pid"}
    assert isinstance(after.result["pid"], int)
    assert before.result["pid"] != after.result["pid"]
    assert died.result is None and died.error_type
