"""Bytecode for the runtime's CPython at synth (infra/bytecode.py) and the code assets
that carry it (infra/code_asset.py)."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_

from multiregion_chat.infra import bytecode, code_asset
from multiregion_chat.infra.bundling import CACHE_ENV
from multiregion_chat.infra.extension_code import extension_code

PY = "3.14"
HAS_PYODIDE = bytecode.compiler_tag(PY) != "no-bytecode"
needs_pyodide = pytest.mark.skipif(not HAS_PYODIDE, reason="npm ci installs Pyodide")


def write_package(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("def add(a, b):\n    return a + b\n")
    return root


def fake_node(tmp_path: Path, stdout: str, exit_code: int = 0) -> list[str]:
    """A stand-in for Node that prints ``stdout`` and exits ``exit_code`` (and counts runs)."""
    script = tmp_path / "fake_node.py"
    runs = tmp_path / "node-runs"
    script.write_text(
        "import pathlib, sys\n"
        f"runs = pathlib.Path({str(runs)!r})\n"
        "runs.write_text(str(int(runs.read_text()) + 1) if runs.exists() else '1')\n"
        f"print({stdout!r})\n"
        f"sys.exit({exit_code})\n"
    )
    return [sys.executable, str(script)]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pyodide_version_names_its_cpython() -> None:
    assert bytecode.Pyodide(Path("/p"), "314.0.7").python_version == "3.14"
    assert bytecode.Pyodide(Path("/p"), "313.1.0").python_version == "3.13"
    assert bytecode.Pyodide(Path("/p"), "0.27.7").python_version == ""  # 0.x: unknown


def test_the_pinned_pyodide_runs_the_functions_runtime() -> None:
    """package.json pins the Pyodide whose CPython is the functions' runtime."""
    from multiregion_chat.infra.lambda_function import RUNTIME

    pinned = json.loads((bytecode.REPO_ROOT / "package.json").read_text())["devDependencies"]
    version = bytecode.Pyodide(Path("."), pinned["pyodide"]).python_version
    assert version == bytecode.runtime_python_version(RUNTIME)


@needs_pyodide
def test_compiles_unchecked_hash_bytecode_with_deployed_paths(tmp_path: Path) -> None:
    root = write_package(tmp_path / "code")
    assert bytecode.compile_tree(root, python_version=PY, deployed_at="/var/task")
    pyc = root / "pkg" / "__pycache__" / "mod.cpython-314.pyc"
    data = pyc.read_bytes()
    (flags,) = struct.unpack("<I", data[4:8])
    assert flags == 0b01  # PEP 552: hash-based, source not checked
    assert b"/var/task/pkg/mod.py" in data  # tracebacks name the deployed file
    assert b"/code/" not in data  # not the build host's path


def test_without_a_matching_pyodide_the_code_ships_as_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "pyodide"
    other.mkdir()
    (other / "package.json").write_text(json.dumps({"version": "313.0.0"}))
    for configured, why in ((tmp_path / "missing", "no Pyodide found"), (other, "CPython 3.13")):
        monkeypatch.setenv(bytecode.PYODIDE_ENV, str(configured))
        bytecode._warn_once.cache_clear()
        root = write_package(tmp_path / f"code-{configured.name}")
        assert bytecode.compiler_tag(PY) == "no-bytecode"
        assert not bytecode.compile_tree(root, python_version=PY, deployed_at="/var/task")
        assert not list(root.rglob("*.pyc"))
        warning = capsys.readouterr().err
        assert "ships without bytecode for CPython 3.14" in warning and why in warning


@pytest.fixture
def fake_pyodide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "pyodide"
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps({"version": "314.0.7"}))
    monkeypatch.setenv(bytecode.PYODIDE_ENV, str(folder))
    return folder


@pytest.mark.usefixtures("fake_pyodide")
@pytest.mark.parametrize(
    ("stdout", "exit_code", "message"),
    [
        ("Error: Cannot find module pyodide.mjs", 1, "Cannot find module"),
        ('{"version": "3.13.2", "cacheTag": "cpython-313", "failed": []}', 0, "cpython-313"),
        ("not json", 0, "failed"),
    ],
)
def test_a_failing_compiler_stops_the_synth_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str, exit_code: int, message: str
) -> None:
    monkeypatch.setattr(bytecode, "NODE", fake_node(tmp_path, stdout, exit_code))
    with pytest.raises(bytecode.BytecodeError, match=message):
        bytecode.compile_tree(tmp_path, python_version=PY, deployed_at="/var/task")


def test_code_key_follows_the_code_not_host_leftovers(tmp_path: Path) -> None:
    root = write_package(tmp_path / "code")
    source = code_asset.CodeSource(folder=root, ignore=("requirements.txt",))
    key = code_asset.code_key([source], PY)
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"host")
    (root / "requirements.txt").write_text("aiohttp==1\n")
    (root / ".mypy_cache").mkdir()
    assert code_asset.code_key([source], PY) == key
    assert [inside for _, inside in source.files()] == ["pkg/__init__.py", "pkg/mod.py"]
    (root / "pkg" / "mod.py").write_text("def add(a, b):\n    return b + a\n")
    assert code_asset.code_key([source], PY) != key
    assert code_asset.code_key([source], "3.13") != code_asset.code_key([source], PY)
    nested = code_asset.CodeSource(folder=root, into="lib")
    assert next(nested.files())[1] == "lib/pkg/__init__.py"


def synth_function(outdir: Path, code: lambda_.Code) -> Path:
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Fn", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    lambda_.Function(
        stack, "Fn", code=code, handler="pkg.mod.add", runtime=lambda_.Runtime.PYTHON_3_14
    )
    app.synth()
    (asset,) = outdir.glob("asset.*")
    return asset


@pytest.mark.usefixtures("cache", "fake_pyodide")
def test_code_is_compiled_once_then_copied_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok = '{"version": "3.14.2", "cacheTag": "cpython-314", "failed": []}'
    monkeypatch.setattr(bytecode, "NODE", fake_node(tmp_path, ok))
    root = write_package(tmp_path / "code")
    code = code_asset.python_code(
        [code_asset.CodeSource(folder=root)], runtime=lambda_.Runtime.PYTHON_3_14
    )
    asset = synth_function(tmp_path / "out1", code)
    assert (asset / "pkg" / "mod.py").is_file()
    assert (tmp_path / "node-runs").read_text() == "1"
    monkeypatch.setattr(bytecode, "NODE", ["/nonexistent/node"])  # any compile would fail
    again = code_asset.python_code(
        [code_asset.CodeSource(folder=root)], runtime=lambda_.Runtime.PYTHON_3_14
    )
    assert (synth_function(tmp_path / "out2", again) / "pkg" / "mod.py").is_file()


def test_missing_code_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        code_asset.python_code(
            [code_asset.CodeSource(folder=tmp_path / "nope")], runtime=lambda_.Runtime.PYTHON_3_14
        )


@needs_pyodide
@pytest.mark.usefixtures("cache")
def test_extension_code_carries_the_runtime_package_compiled(tmp_path: Path) -> None:
    team = tmp_path / "team"
    (team / "moderation").mkdir(parents=True)
    (team / "moderation" / "__init__.py").write_text("")
    (team / "moderation" / "handler.py").write_text("def handler(event, context):\n    pass\n")
    asset = synth_function(tmp_path / "out", extension_code(team))
    assert (asset / "moderation" / "__pycache__" / "handler.cpython-314.pyc").is_file()
    protocol = asset / "multiregion_chat" / "runtime" / "protocol"
    assert (protocol / "__pycache__" / "frames.cpython-314.pyc").is_file()
    assert not (protocol / "__pycache__" / "frames.cpython-311.pyc").exists()


@needs_pyodide
def test_function_code_that_does_not_compile_stops_the_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_package(tmp_path / "code")
    (root / "pkg" / "broken.py").write_text('print "python 2"\n')
    with pytest.raises(bytecode.BytecodeError, match="does not compile"):
        bytecode.compile_tree(root, python_version=PY, deployed_at="/var/task", strict=True)
    # a layer package's stray file only warns: it stays source-only, the rest is compiled
    assert bytecode.compile_tree(root, python_version=PY, deployed_at="/opt/python")
    assert "do not compile" in capsys.readouterr().err
    assert (root / "pkg" / "__pycache__" / "mod.cpython-314.pyc").is_file()
    assert not (root / "pkg" / "__pycache__" / "broken.cpython-314.pyc").exists()


@needs_pyodide
def test_the_compile_script_is_part_of_the_compiler_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    before = bytecode.compiler_tag(PY)
    monkeypatch.setattr(bytecode, "_COMPILE_SCRIPT", bytecode._COMPILE_SCRIPT + "\n// changed")
    assert bytecode.compiler_tag(PY) != before
