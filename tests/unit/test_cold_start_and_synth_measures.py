"""The measuring functions of bench/synth.py and bench/cold_start.py, and what init imports.

Fresh processes throughout: what a module imports at init is only visible in a
process that has not imported it yet (this test process has, via conftest).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cold_start, synth
from tests.unit.lambda_process import run_fresh


def _fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter with the Lambda environment; its last JSON line."""
    result: dict[str, object] = run_fresh(code)
    return result


def test_handlers_are_discovered_from_the_handlers_folder(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "two.py").write_text("def _impl(e, c): ...\nhandler = _impl\n")
    (tmp_path / "helper.py").write_text("def not_a_handler(): ...\n")
    assert cold_start.discover_handlers(tmp_path) == ["one", "two"]
    assert "client_message_handler" in cold_start.discover_handlers()


def test_cold_start_reports_every_handler_beside_boto3() -> None:
    found = cold_start.measure_cold_start(
        1, handlers=["connection_handler"], extra_modules=["json"]
    )
    assert found["boto3_ms"] > 0 and found["connection_handler_ms"] > 0 and found["json_ms"] >= 0
    assert found["worst"] == "connection_handler"
    # Each import faults its new pages in: the count that shows a frame stack re-mapped.
    assert found["boto3_minor_faults"] > 1000 and found["connection_handler_minor_faults"] > 1000
    assert found["worst_ratio_vs_boto3"] == pytest.approx(
        found["connection_handler_ms"] / found["boto3_ms"], rel=0.01
    )


def test_a_failing_import_is_an_error_not_a_figure() -> None:
    with pytest.raises(RuntimeError, match="no_such_module"):
        cold_start.measure_module("no_such_module")


def test_the_authorizer_never_imports_the_xray_sdk() -> None:
    found = _fresh(
        "import sys, json, multiregion_chat.runtime.handlers.authorizer\n"
        "print(json.dumps({'xray': 'aws_xray_sdk.core' in sys.modules}))"
    )
    assert found == {"xray": False}


def test_a_traced_handler_patches_botocore_only() -> None:
    found = _fresh(
        "import sys, json, multiregion_chat.runtime.handlers.client_message_handler\n"
        "from aws_xray_sdk.core.patcher import _PATCHED_MODULES\n"
        "print(json.dumps({'patched': sorted(_PATCHED_MODULES),\n"
        "                  'requests': 'requests' in sys.modules}))"
    )
    assert found == {"patched": ["botocore"], "requests": False}


def test_measure_command_sums_the_process_tree_and_fails_loudly(tmp_path: Path) -> None:
    # A parent holding ~40 MiB whose child holds ~80 MiB: the tree peak sees both.
    child = "b = bytearray(80 << 20); import time; time.sleep(0.5)"
    parent = (
        "import subprocess, sys; a = bytearray(40 << 20); "
        f"subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    )
    found = synth.measure_command([sys.executable, "-c", parent], tmp_path)
    assert found["peak_mib"] > 120
    assert found["wall_s"] >= 0.5 and found["cpu_s"] > 0
    with pytest.raises(subprocess.CalledProcessError):
        synth.measure_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)


def test_region_sets_start_with_the_default_three() -> None:
    assert synth.regions_for(3) == ["us-east-1", "eu-west-1", "ap-northeast-1"]
    assert len(set(synth.regions_for(20))) == 20
    with pytest.raises(ValueError):
        synth.regions_for(21)


def test_layer_roots_are_the_layer_packages() -> None:
    roots = cold_start.layer_roots()
    names = {Path(root).name for root in roots}
    assert {"aws_lambda_powertools", "aiohttp", "pydantic_core", "typing_extensions.py"} <= names
    assert not names & {"boto3", "botocore"}  # the runtime's, with bytecode


def test_without_bytecode_the_function_code_and_layer_compile_from_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build without bytecode: every import compiles /var/task and the layer from
    source, except boto3 (the runtime's); --bytecode: cached bytecode everywhere."""
    calls: list[tuple[str, tuple[str, ...]]] = []

    def fake(name: str, env: object = None, **kwargs: object) -> dict[str, float]:
        calls.append((name, tuple(kwargs.get("sourced", ()))))  # type: ignore[arg-type]
        return {"wall_ms": 1.0, "cpu_ms": 1.0}

    monkeypatch.setattr(cold_start, "measure_module", fake)
    result = cold_start.measure_cold_start(
        1, handlers=["connection_handler"], deployed_bytecode=False
    )
    assert result["bytecode"] is False
    measured = dict(calls[2:])  # after the warm-up round
    assert measured["boto3"] == ()
    assert str(cold_start.PACKAGE) + "/" in measured["connection_handler"]
    assert any(p.endswith("aws_lambda_powertools/") for p in measured["connection_handler"])
    calls.clear()
    assert cold_start.measure_cold_start(
        1, handlers=["connection_handler"], deployed_bytecode=True
    )["bytecode"]
    assert all(sourced == () for _, sourced in calls)


@pytest.mark.parametrize("deploys", [True, False])
def test_by_default_the_measure_follows_what_a_synth_here_deploys(
    monkeypatch: pytest.MonkeyPatch, deploys: bool
) -> None:
    monkeypatch.setattr(cold_start, "deploys_bytecode", lambda: deploys)
    monkeypatch.setattr(
        cold_start, "measure_module", lambda *a, **k: {"wall_ms": 1.0, "cpu_ms": 1.0}
    )
    result = cold_start.measure_cold_start(1, handlers=["connection_handler"])
    assert result["bytecode"] is deploys


def test_sourced_modules_skip_cached_bytecode(tmp_path: Path) -> None:
    """The child's hook: a module under a sourced prefix compiles and writes no .pyc."""
    package = tmp_path / "probe_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 1\n")
    for sourced in (str(package) + "/", str(tmp_path / "elsewhere") + "/"):
        shutil.rmtree(package / "__pycache__", ignore_errors=True)
        subprocess.run(
            [sys.executable, "-c", cold_start._CHILD, "probe_pkg", "0", json.dumps([sourced])],
            env={"PYTHONPATH": str(tmp_path), "PATH": str(Path(sys.executable).parent)},
            check=True,
            capture_output=True,
            timeout=120,
        )
        written = (package / "__pycache__").is_dir()
        assert written is (sourced != str(package) + "/")


def test_a_deferred_module_loaded_at_init_is_named() -> None:
    """The delivery engine at ClientMessageHandler's module load would cost about 1 ms (lost
    in the init figures' noise), so the bench checks it by name."""
    assert cold_start.deferred_loaded(
        "client_message_handler", ["multiregion_chat.runtime.delivery.engine", "boto3"]
    ) == ["multiregion_chat.runtime.delivery.engine"]
    assert (
        cold_start.deferred_loaded(
            "event_bus_message_handler", ["multiregion_chat.runtime.delivery.engine"]
        )
        == []
    )
    assert cold_start.deferred_loaded("authorizer", ["jwt", "cryptography"]) == [
        "cryptography",
        "jwt",
    ]


def test_no_handler_loads_a_deferred_module_at_init() -> None:
    found = cold_start.measure_cold_start(1, deployed_bytecode=True)
    assert found["deferred_loaded_at_init"] == 0, {
        name: found[f"{name}_deferred_loaded"] for name in cold_start.discover_handlers()
    }
    assert found["ratio_vs_boto3"].keys() == set(cold_start.discover_handlers())
    slowest = max(found[f"{name}_ms"] for name in cold_start.discover_handlers())
    assert found["worst_ratio_vs_boto3_nogc"] == round(slowest / found["boto3_nogc_ms"], 2)


# Standard library only, loaded before a handler's first line turns the collector off.
_BEFORE_INIT_PHASE = {
    "multiregion_chat",
    "multiregion_chat.runtime",
    "multiregion_chat.runtime.handlers",
    "multiregion_chat.runtime.platform",
    "multiregion_chat.runtime.platform.init_phase",
}


@pytest.mark.parametrize("handler", cold_start.discover_handlers())
def test_a_handler_that_loads_boto3_imports_it_before_the_rest(handler: str) -> None:
    """Python 3.11-3.13 allocate the frame stack in 16 KiB chunks and free a chunk as soon as the
    calls leave it: botocore's and urllib3's regular expressions compiled 20-odd frames deeper
    (boto3 reached through Powertools' parameters or runtime.platform.aws_clients) cross a chunk
    edge thousands of times, 15-40 ms of mmap/munmap and page faults (docs/performance.md)."""
    found = _fresh(
        "import sys, json\n"
        "started = []\n"
        "class Record:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        started.append(name)\n"
        "sys.meta_path.insert(0, Record())\n"
        f"import {cold_start.importable(handler)}\n"
        f"light = {sorted(_BEFORE_INIT_PHASE | {cold_start.importable(handler)})!r}\n"
        "heavy = [n for n in started if n not in light and n.split('.')[0] in\n"
        "         {'boto3', 'botocore', 'aws_lambda_powertools', 'multiregion_chat', 'urllib3'}]\n"
        "print(json.dumps({'first': heavy[0] if heavy else None,\n"
        "                  'boto3': 'boto3' in sys.modules}))"
    )
    if handler == "health_handler":
        assert found == {"first": "aws_lambda_powertools", "boto3": False}
    else:
        assert found == {"first": "boto3", "boto3": True}


@pytest.mark.parametrize("handler", cold_start.discover_handlers())
def test_a_handler_builds_its_init_without_the_cyclic_gc_and_freezes_it(handler: str) -> None:
    """The collections during the imports are about a tenth of init (docs/performance.md);
    what init built is frozen, so re-enabling the collector does not make the first
    invocation traverse it all."""
    found = _fresh(
        "import gc, sys, json\n"
        "seen = {}\n"
        "class Record:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        seen.setdefault(name, gc.isenabled())\n"
        "sys.meta_path.insert(0, Record())\n"
        f"import {cold_start.importable(handler)}\n"
        f"before = {sorted(_BEFORE_INIT_PHASE | {cold_start.importable(handler)})!r}\n"
        "before += ['__future__', 'gc']\n"
        "print(json.dumps({'during': sorted({v for k, v in seen.items() if k not in before}),\n"
        "                  'after': gc.isenabled(), 'frozen': gc.get_freeze_count() > 10000}))"
    )
    assert found == {"during": [False], "after": True, "frozen": True}
