"""stacks.bundling: a dependencies layer built for arm64 by pip (no Docker), cached by key."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_lambda as lambda_

from stacks import bundling

REQUIREMENTS = bundling.REPO_ROOT / "lambdas" / "requirements.txt"
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
    pins = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in REQUIREMENTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[name.lower().replace("_", "-")] = version
    assert installed == pins  # every installed distribution is pinned, at its pin
