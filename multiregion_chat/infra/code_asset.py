"""A function's code asset: source folders copied into one tree, with the runtime's bytecode.

Lambda's ``/var/task`` is read-only, so code shipped without ``.pyc`` files
is compiled on every cold start; :mod:`infra.bytecode` compiles it for the
functions' CPython at synth. Every function's code goes through here: the
built-in handlers (:func:`runtime_source`: the package root's ``__init__`` and
``runtime/``) and a team's own (its folder plus that same source,
:mod:`infra.extension_code`).

Assembled by CDK *local* bundling (a copy and the compiler, no Docker) into
the layer cache (:func:`infra.bundling.cached_tree`), keyed, like the
asset's CUSTOM hash, by every included file's path and bytes, the runtime
and the compiler: a synth with unchanged code copies the cached tree and runs
no compiler, and the template changes only when the code (or the compiler)
does. One folder, so the local sandbox runs it unchanged: a Python other
than 3.14 ignores the ``cpython-314`` bytecode; a 3.14 one uses it (its code
objects name ``/var/task/...``, so a traceback there shows no source lines).
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from multiregion_chat.infra.bundling import cached_tree
from multiregion_chat.infra.bytecode import compile_tree, compiler_tag, runtime_python_version

__all__ = [
    "ALWAYS_IGNORED",
    "FUNCTION_ROOT",
    "HANDLERS_PACKAGE",
    "PACKAGE_DIR",
    "RUNTIME_REQUIREMENTS",
    "CodeSource",
    "code_key",
    "handler_path",
    "python_code",
    "runtime_source",
]

FUNCTION_ROOT = "/var/task"  # where Lambda puts the function code
# Build leftovers of the host, never code (and host bytecode is not the runtime's).
ALWAYS_IGNORED = ("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache")

PACKAGE_DIR = (
    Path(__file__).resolve().parent.parent
)  # multiregion_chat/, in a checkout or installed
HANDLERS_PACKAGE = "multiregion_chat.runtime.handlers"
# The dependencies layer's pins (infra.bundling), never function code.
RUNTIME_REQUIREMENTS = PACKAGE_DIR / "runtime" / "requirements.txt"


@dataclass(frozen=True, kw_only=True)
class CodeSource:
    """A folder copied into the asset at ``into`` ("" = its root), minus ``ignore``
    (names matched at any depth, like ``shutil.ignore_patterns``)."""

    folder: Path
    into: str = ""
    ignore: tuple[str, ...] = ()
    # Only these entries of the folder's top level (files or folders); empty: all of it.
    only: tuple[str, ...] = ()

    def files(self) -> Iterator[tuple[Path, str]]:
        """(host file, path inside the asset) of every included file, in a stable order."""
        patterns = ALWAYS_IGNORED + self.ignore
        for path in sorted(self.folder.rglob("*")):
            relative = path.relative_to(self.folder)
            if self.only and relative.parts[0] not in self.only:
                continue
            if not path.is_file() or any(
                fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in patterns
            ):
                continue
            yield path, (Path(self.into) / relative).as_posix()


def runtime_source() -> CodeSource:
    """The runtime every function imports: ``multiregion_chat/__init__.py`` and
    ``runtime/`` (never ``infra`` or ``clients``), at the asset's root."""
    return CodeSource(
        folder=PACKAGE_DIR,
        into=PACKAGE_DIR.name,
        only=("__init__.py", "runtime"),
        ignore=(RUNTIME_REQUIREMENTS.name,),
    )


def handler_path(module: str) -> str:
    """The handler string of a built-in handler module (``runtime/handlers/``)."""
    return f"{HANDLERS_PACKAGE}.{module}.handler"


def code_key(sources: Sequence[CodeSource], python_version: str) -> str:
    digest = hashlib.sha256()
    for part in ("chat-code-v1", python_version, compiler_tag(python_version)):
        digest.update(part.encode("utf-8") + b"\0")
    for source in sources:
        for path, inside in source.files():
            digest.update(inside.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class _CompiledCopy:
    """CDK local bundling: the cached tree of the sources, compiled."""

    def __init__(self, sources: Sequence[CodeSource], python_version: str, key: str) -> None:
        self.sources = sources
        self.python_version = python_version
        self.key = key

    def _build(self, staging: Path) -> None:
        code = staging / "code"
        for source in self.sources:
            for path, inside in source.files():
                (code / inside).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, code / inside)
        code.mkdir(exist_ok=True)
        # strict: a handler that does not compile for the runtime would fail at import
        compile_tree(
            code, python_version=self.python_version, deployed_at=FUNCTION_ROOT, strict=True
        )

    def try_bundle(self, output_dir: str, _options: object = None) -> bool:  # jsii: (dir, opts)
        tree = cached_tree(self.key, self._build)
        shutil.copytree(tree / "code", output_dir, dirs_exist_ok=True)
        return True


def python_code(sources: Sequence[CodeSource], *, runtime: lambda_.Runtime) -> lambda_.Code:
    """The Lambda code of ``sources`` (later ones may add to earlier ones' folders),
    with bytecode for ``runtime`` when a compiler for it is available."""
    if not sources:
        raise ValueError("a function's code needs at least one source folder")
    for source in sources:
        if not source.folder.is_dir():
            raise ValueError(f"code folder {source.folder} does not exist")
    python_version = runtime_python_version(runtime)
    key = code_key(sources, python_version)
    return lambda_.Code.from_asset(
        str(sources[0].folder),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=key,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds (or raises).
            image=DockerImage.from_registry("local-bundling-only"),
            local=cast(ILocalBundling, _CompiledCopy(tuple(sources), python_version, key)),
        ),
    )
