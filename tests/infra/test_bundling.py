"""infra.bundling: a dependencies layer built for arm64 by pip (no Docker), cached by key."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from multiregion_chat.infra import bundling, bytecode
from multiregion_chat.infra.code_asset import RUNTIME_REQUIREMENTS

REQUIREMENTS = RUNTIME_REQUIREMENTS
ARM = lambda_.Architecture.ARM_64
PY = lambda_.Runtime.PYTHON_3_14

# Stands in for pip: writes a package into --target and counts its runs in a file.
FAKE_PIP = """
import pathlib, sys
args = sys.argv[1:]
target = pathlib.Path(args[args.index("--target") + 1])
(target / "fakepkg").mkdir(parents=True)
(target / "fakepkg" / "__init__.py").write_text(" ".join(args))
runs = pathlib.Path("{runs}")
runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
"""
# Stands in for pip with the registry out of reach: what pip prints, exit 1.
OFFLINE_PIP = """
import sys
print("WARNING: Retrying (Retry(total=4)) after connection broken by NewConnectionError")
print("ERROR: Could not find a version that satisfies the requirement "
      "pydantic-core==2.50.5 (from versions: none)", file=sys.stderr)
print("ERROR: No matching distribution found for pydantic-core==2.50.5", file=sys.stderr)
sys.exit(1)
"""
# What the Lambda Python runtime provides: never in the layer (it would shadow them).
RUNTIME_PROVIDED = {"boto3", "botocore"}
# The functions' platform, as packaging's markers see it.
TARGET_MARKERS = {
    "python_version": "3.14",
    "python_full_version": "3.14.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
}


def pins(requirements: Path = REQUIREMENTS) -> dict[str, tuple[str, set[str]]]:
    """Canonical name -> (pinned version, extras) of every requirement line."""
    found: dict[str, tuple[str, set[str]]] = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"not pinned: {line}"
        found[canonicalize_name(requirement.name)] = (specifier.version, set(requirement.extras))
    return found


def synth_layer(outdir: Path, requirements: Path) -> tuple[dict[str, Any], Path]:
    """A one-layer stack synthesized into ``outdir``: its template and asset directory."""
    app = cdk.App(outdir=str(outdir))
    stack = cdk.Stack(app, "Layer", env=cdk.Environment(account="123456789012", region="eu-west-1"))
    bundling.dependencies_layer(
        stack, "Deps", requirements=requirements, architecture=ARM, runtime=PY
    )
    app.synth()
    template = json.loads((outdir / "Layer.template.json").read_text())
    (layer,) = [
        r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::LayerVersion"
    ]
    (asset,) = outdir.glob("asset.*")
    return layer, asset


@pytest.fixture
def fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip replaced by a script; a fresh cache. Returns the run-counter file."""
    runs = tmp_path / "pip-runs"
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP.replace("{runs}", str(runs)))
    monkeypatch.setattr(bundling, "PIP", [sys.executable, str(script)])
    monkeypatch.setenv(bundling.CACHE_ENV, str(tmp_path / "cache"))
    # no compiler: these fake layers need no bytecode (tests/infra/test_bytecode.py has it)
    monkeypatch.setenv(bytecode.PYODIDE_ENV, str(tmp_path / "no-pyodide"))
    return runs


def test_pip_target_follows_architecture_and_runtime() -> None:
    assert bundling.pip_target(ARM, PY) == ("manylinux2014_aarch64", "3.14")
    assert bundling.pip_target(lambda_.Architecture.X86_64, lambda_.Runtime.PYTHON_3_12) == (
        "manylinux2014_x86_64",
        "3.12",
    )
    with pytest.raises(ValueError):
        bundling.pip_target(ARM, lambda_.Runtime.NODEJS_22_X)


def test_key_changes_with_each_input() -> None:
    base = bundling.layer_key("aiohttp==3.14.5\n", "manylinux2014_aarch64", "3.14")
    assert base == bundling.layer_key("aiohttp==3.14.5\n", "manylinux2014_aarch64", "3.14")
    assert base != bundling.layer_key("aiohttp==3.14.4\n", "manylinux2014_aarch64", "3.14")
    assert base != bundling.layer_key("aiohttp==3.14.5\n", "manylinux2014_x86_64", "3.14")
    assert base != bundling.layer_key("aiohttp==3.14.5\n", "manylinux2014_aarch64", "3.13")


def test_second_build_uses_the_cache_without_pip(
    fake_pip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fakepkg==1\n")
    first = bundling.build_layer_tree(requirements, "manylinux2014_aarch64", "3.14")
    assert fake_pip.read_text() == "1"
    args = (first / "python" / "fakepkg" / "__init__.py").read_text()
    assert "--platform manylinux2014_aarch64 --only-binary=:all:" in args
    assert "--implementation cp --python-version 3.14" in args
    monkeypatch.setattr(bundling, "PIP", ["/nonexistent/pip"])  # any pip run would fail
    assert bundling.build_layer_tree(requirements, "manylinux2014_aarch64", "3.14") == first
    # a synth from the cache into a fresh cdk.out: no pip either
    layer, asset = synth_layer(tmp_path / "out", requirements)
    assert (asset / "python" / "fakepkg" / "__init__.py").is_file()
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.14"]
    # changed requirements: a new key, so pip runs again
    monkeypatch.setattr(bundling, "PIP", [sys.executable, str(tmp_path / "fake_pip.py")])
    requirements.write_text("fakepkg==2\n")
    second = bundling.build_layer_tree(requirements, "manylinux2014_aarch64", "3.14")
    assert second != first and fake_pip.read_text() == "2"


def test_an_interrupted_build_is_not_used(fake_pip: Path, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fakepkg==1\n")
    key = bundling.layer_key(requirements.read_text(), "manylinux2014_aarch64", "3.14")
    (bundling.cache_root() / key / "python").mkdir(parents=True)  # no completion marker
    tree = bundling.build_layer_tree(requirements, "manylinux2014_aarch64", "3.14")
    assert (tree / "python" / "fakepkg").is_dir() and fake_pip.read_text() == "1"


def test_a_build_racing_another_synth_keeps_the_finished_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two synths building one key: the second to finish keeps the first's complete entry
    (which a third may be copying) instead of deleting it."""
    monkeypatch.setenv(bundling.CACHE_ENV, str(tmp_path / "cache"))
    entry = bundling.cache_root() / "k"

    def build(staging: Path) -> None:
        (staging / "mine").write_text("late")
        # meanwhile another synth finished the same key
        (entry / "python").mkdir(parents=True)
        (entry / ".complete").write_text("k\n")

    assert bundling.cached_tree("k", build) == entry
    assert (entry / "python").is_dir() and not (entry / "mine").exists()
    assert [p.name for p in bundling.cache_root().iterdir()] == ["k"]  # no staging left


@pytest.fixture(scope="session")
def real_layer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The real requirements installed by pip for arm64, once per session (network)."""
    cache = tmp_path_factory.mktemp("layer-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(bundling.CACHE_ENV, str(cache))
        _, asset = synth_layer(tmp_path_factory.mktemp("out"), REQUIREMENTS)
        yield asset


@pytest.mark.slow
def test_layer_holds_aiohttp_built_for_aarch64(real_layer: Path) -> None:
    site = real_layer / "python"
    assert (site / "aiohttp" / "__init__.py").is_file()
    native = [p.name for p in site.rglob("*.so")]
    assert any(name.endswith("cpython-314-aarch64-linux-gnu.so") for name in native), native
    assert not any("x86_64" in name for name in native)
    assert (site / "aws_lambda_powertools" / "__init__.py").is_file()
    # compiled for the runtime (infra/bytecode.py): /opt is read-only in Lambda
    if bytecode.compiler_tag("3.14") != "no-bytecode":
        assert (site / "aiohttp" / "__pycache__" / "__init__.cpython-314.pyc").is_file()
        uncompiled = [
            source
            for source in site.rglob("*.py")
            if not (source.parent / "__pycache__" / f"{source.stem}.cpython-314.pyc").is_file()
        ]
        assert not uncompiled
    assert any(name.startswith("_pydantic_core.cpython-314-aarch64") for name in native), native
    assert not (site / "botocore").exists() and not (site / "boto3").exists()
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[canonicalize_name(name)] = version
    # every installed distribution is pinned, at its pin, and nothing else
    assert installed == {name: version for name, (version, _) in pins().items()}


def test_requirements_are_the_whole_closure() -> None:
    """The layer is installed with --no-deps: every dependency of every pinned
    distribution (with the extras asked for, on python 3.14 linux aarch64) is
    pinned too, or provided by the runtime. Read from the venv's metadata, which
    requirements-dev.txt installs from the same file."""
    pinned = pins()
    missing = []
    for name, (version, extras) in pinned.items():
        distribution = metadata.distribution(name)
        assert distribution.version == version, f"venv has {name} {distribution.version}"
        for text in distribution.requires or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({**TARGET_MARKERS, "extra": extra})
                for extra in (extras or {""})
            )
            dependency = canonicalize_name(requirement.name)
            if not wanted or dependency in RUNTIME_PROVIDED:
                continue
            if dependency not in pinned:
                missing.append(f"{name} needs {text}")
            elif pinned[dependency][0] not in requirement.specifier:
                missing.append(f"{name} needs {text}, pinned {pinned[dependency][0]}")
    assert missing == []
    assert "aws-lambda-powertools" in pinned and pinned["aws-lambda-powertools"][1] == {
        "tracer",
        "parser",
    }
    assert not RUNTIME_PROVIDED & set(pinned)


def test_dev_requirements_include_the_runtime_pins() -> None:
    """One source of pins: the tests' venv installs runtime/requirements.txt itself."""
    dev = (Path(__file__).resolve().parents[2] / "requirements-dev.txt").read_text()
    assert "-r multiregion_chat/runtime/requirements.txt" in dev.splitlines()
    assert not re.search(r"^(aws-lambda-powertools|aiohttp)\b", dev, re.MULTILINE | re.IGNORECASE)


def test_build_uses_no_deps_wheels_only_for_the_target(fake_pip: Path, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fakepkg==1\n")
    tree = bundling.build_layer_tree(requirements, "manylinux2014_aarch64", "3.14")
    args = (tree / "python" / "fakepkg" / "__init__.py").read_text().split()
    assert "--no-deps" in args and "--only-binary=:all:" in args


def test_offline_cold_cache_fails_synth_naming_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "offline_pip.py"
    script.write_text(OFFLINE_PIP)
    monkeypatch.setattr(bundling, "PIP", [sys.executable, str(script)])
    monkeypatch.setenv(bundling.CACHE_ENV, str(tmp_path / "cold-cache"))
    with pytest.raises(bundling.LayerBuildError) as error:
        bundling.build_layer_tree(REQUIREMENTS, "manylinux2014_aarch64", "3.14")
    message = str(error.value)
    assert error.value.missing == ["pydantic-core==2.50.5"]
    assert "no wheel of pydantic-core==2.50.5 for cp314 manylinux2014_aarch64" in message
    assert "registry reachable" in message and str(tmp_path / "cold-cache") in message
    assert "\n" not in message
    # Nothing half-built is left to be mistaken for a cache entry.
    assert list((tmp_path / "cold-cache").iterdir()) == []
    # Through CDK's local bundling, synth stops with the same words.
    with pytest.raises(Exception, match=re.escape("no wheel of pydantic-core==2.50.5")):
        synth_layer(tmp_path / "out", REQUIREMENTS)
