"""A Lambda layer of pinned Python packages, built for the functions' platform without Docker.

The Lambda runtime lacks some packages the handlers need (Powertools and its
extras, aiohttp for the fan-out engine). They ship as one layer built by CDK
*local* bundling: ``pip install --no-deps --platform <manylinux tag>
--only-binary=:all: --implementation cp --python-version <X.Y> --target
<out>/python -r <requirements>`` downloads the wheels built for the target
(arm64 from an x86 laptop included), so no Docker image is ever pulled (the
``image`` CDK requires is a placeholder). ``--no-deps``: the requirements
file lists the whole closure, minus what the runtime provides (boto3,
botocore), which must not be shadowed by a second copy in the layer.

pip installs with ``--no-compile`` (the host's Python is not the runtime's);
the runtime's CPython then compiles the tree (:mod:`infra.bytecode`), since
``/opt`` is read-only and a layer without ``.pyc`` files compiles on every
cold start.

If pip fails (the registry cannot be reached and the cache is cold, or a pin
has no wheel for the target), synth stops with :class:`LayerBuildError`
naming the requirement pip could not get, the target, and pip's own error.

Cached and offline-repeatable: the pip output goes to
``<cache>/<key>/python`` where ``key`` hashes (requirements text, platform tag,
Python version, bytecode compiler); later synths copy from there without the network. The cache
is ``$CHAT_LAYER_CACHE`` or ``.cache/lambda-layers`` in the working directory (the CDK
app's folder; gitignored here). The
same key is the asset's CUSTOM hash, so CDK skips bundling entirely when
``cdk.out`` already holds the staged asset, and the template only changes when
the requirements (or the target) do. Pin every transitive dependency in the
requirements file: an unpinned one would change under the same key.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from multiregion_chat.infra.bytecode import compile_tree, compiler_tag, runtime_python_version

__all__ = [
    "CACHE_ENV",
    "LAYER_BUILD_FAILED",
    "LayerBuildError",
    "build_layer_tree",
    "cache_root",
    "cached_tree",
    "dependencies_layer",
    "layer_key",
    "pip_target",
]

CACHE_ENV = "CHAT_LAYER_CACHE"
_PLATFORMS = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
LAYER_PATH = "/opt/python"  # where Lambda puts a layer's python/ folder
_COMPLETE = ".complete"  # written last: a cache entry without it is ignored and rebuilt
# The command that runs pip (tests replace it to prove a cached build runs none).
PIP: list[str] = [sys.executable, "-m", "pip"]
# What pip says about a requirement it could not get (offline, or no such wheel).
_MISSING = re.compile(
    r"(?:No matching distribution found for|"
    r"Could not find a version that satisfies the requirement) (\S+)"
)


# How every LayerBuildError message starts (app.py finds it inside jsii's wrapping).
LAYER_BUILD_FAILED = "Building the Lambda dependencies layer"


class LayerBuildError(RuntimeError):
    """pip could not build the layer; the message names what it could not get."""

    def __init__(self, requirements: Path, platform: str, python_version: str, output: str):
        missing = list(dict.fromkeys(_MISSING.findall(output)))
        errors = [line for line in output.splitlines() if line.startswith("ERROR")]
        what = "no wheel of " + ", ".join(missing) if missing else "pip failed"
        super().__init__(
            f"{LAYER_BUILD_FAILED} from {requirements} failed: {what} "
            f"for cp{python_version.replace('.', '')} {platform} (wheels only). "
            f"Is the package registry reachable? With no registry, synth needs the "
            f"cache ${CACHE_ENV} (now {cache_root()}) to hold this layer from an earlier "
            f"synth. pip said: " + (" | ".join(errors[-3:]) or output.strip()[-500:])
        )
        self.missing = missing


def pip_target(architecture: lambda_.Architecture, runtime: lambda_.Runtime) -> tuple[str, str]:
    """``(platform tag, python version)`` of a function's architecture and runtime."""
    platform = _PLATFORMS.get(architecture.name)
    if platform is None:
        raise ValueError(f"no wheel platform for architecture {architecture.name!r}")
    return platform, runtime_python_version(runtime)


def layer_key(requirements: str, platform: str, python_version: str) -> str:
    digest = hashlib.sha256()
    compiler = compiler_tag(python_version)  # a layer with bytecode is another layer
    for part in ("chat-layer-v3", platform, python_version, compiler, requirements):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


def cache_root() -> Path:
    """``$CHAT_LAYER_CACHE``, else ``.cache/lambda-layers`` in the working directory: the CDK
    app's folder (where ``cdk.json`` runs it), never next to the installed package."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    return Path(configured) if configured else Path.cwd() / ".cache" / "lambda-layers"


def cached_tree(key: str, build: Callable[[Path], None]) -> Path:
    """The cache entry ``key`` (a directory), running ``build(staging_dir)`` only when
    the cache has no complete entry. An interrupted build is never used."""
    entry = cache_root() / key
    if (entry / _COMPLETE).is_file():
        return entry
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=entry.parent))
    try:
        build(staging)
        (staging / _COMPLETE).write_text(key + "\n", encoding="utf-8")
        if (entry / _COMPLETE).is_file():  # another synth built the same key meanwhile
            shutil.rmtree(staging, ignore_errors=True)
            return entry
        if entry.exists():  # an incomplete leftover of an interrupted build
            shutil.rmtree(entry)
        try:
            staging.rename(entry)
        except OSError:  # lost a race to another synth's rename: theirs is as good
            if not (entry / _COMPLETE).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return entry


def build_layer_tree(requirements: Path, platform: str, python_version: str) -> Path:
    """The cached layer tree (a directory holding ``python/``) for these inputs,
    running pip (and the bytecode compiler) only when the cache has no complete entry."""

    def build(staging: Path) -> None:
        completed = subprocess.run(
            [
                *PIP,
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",  # the file is the closure (module docstring)
                "--no-compile",  # the build host's Python is not the runtime's: see below
                "--platform",
                platform,
                "--only-binary=:all:",
                "--implementation",
                "cp",
                "--python-version",
                python_version,
                "--target",
                str(staging / "python"),
                "-r",
                str(requirements),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            raise LayerBuildError(
                requirements, platform, python_version, completed.stdout + completed.stderr
            )
        # The runtime's own CPython compiles it (infra/bytecode.py); /opt is read-only.
        compile_tree(staging / "python", python_version=python_version, deployed_at=LAYER_PATH)

    key = layer_key(requirements.read_text(encoding="utf-8"), platform, python_version)
    return cached_tree(key, build)


@jsii.implements(ILocalBundling)
class _PipLayerBundling:
    """CDK local bundling: copy the cached layer tree into the asset's output."""

    def __init__(self, requirements: Path, platform: str, python_version: str) -> None:
        self.requirements = requirements
        self.platform = platform
        self.python_version = python_version

    def try_bundle(self, output_dir: str, _options: object = None) -> bool:  # jsii: (dir, opts)
        tree = build_layer_tree(self.requirements, self.platform, self.python_version)
        shutil.copytree(tree / "python", Path(output_dir) / "python", dirs_exist_ok=True)
        return True


def dependencies_layer(
    scope: Construct,
    construct_id: str,
    *,
    requirements: Path,
    architecture: lambda_.Architecture,
    runtime: lambda_.Runtime,
    description: str | None = None,
) -> lambda_.LayerVersion:
    """A layer with ``requirements`` installed for ``architecture`` and ``runtime``."""
    platform, python_version = pip_target(architecture, runtime)
    key = layer_key(requirements.read_text(encoding="utf-8"), platform, python_version)
    code = lambda_.Code.from_asset(
        str(requirements.parent),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=key,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds (or raises).
            image=DockerImage.from_registry("local-bundling-only"),
            local=cast(ILocalBundling, _PipLayerBundling(requirements, platform, python_version)),
        ),
    )
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=code,
        compatible_runtimes=[runtime],
        compatible_architectures=[architecture],
        description=description or f"{requirements.name} for {runtime.name} {platform}",
    )
