"""Bytecode for the functions' CPython, compiled at synth without that CPython installed.

Why ship bytecode: Lambda's ``/var/task`` (function code) and ``/opt`` (layers)
are read-only, so every module shipped without a ``.pyc`` is compiled from
source on *every* cold start (Powertools, pydantic, aiohttp, our own code:
``bench/cold_start.py`` measures the difference). A ``.pyc`` is specific to
one CPython minor version (its magic number and the ``cpython-314`` cache
tag), and the machine that synthesizes usually runs another Python; getting
CPython 3.14 itself would mean python.org downloads or Docker, neither of
which a synth may need.

How: Pyodide is CPython compiled to WebAssembly, published on npm with the
CPython minor in its version (``pyodide@314.x`` is CPython 3.14), and Node is
already required by CDK. The app pins it in ``package.json``; this module
runs CPython's own ``compileall`` inside it over the host directory
(Emscripten's NODEFS mount). Nothing here compiles by hand.

The ``.pyc`` files are hash-based and unchecked (PEP 552): the code of a
Lambda version never changes, so the runtime need not stat or hash the
source, and the files do not depend on mtimes (zip extraction changes them).
Paths in code objects are the deployed ones (``/var/task/...``,
``/opt/python/...``), so tracebacks read as if compiled there.

Without a matching Pyodide (``npm ci`` not run, this project installed as a
package into an app without it, or a runtime whose minor Pyodide does not
match), the code ships without bytecode as it did before, and the synth
prints one warning saying so: slower cold starts, nothing broken. The
compiler's identity (:func:`compiler_tag`) is part of every cache key and
asset hash, so the two kinds of build never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from aws_cdk import aws_lambda as lambda_

__all__ = [
    "NODE",
    "PYODIDE_ENV",
    "BytecodeError",
    "Pyodide",
    "compile_tree",
    "compiler_tag",
    "find_pyodide",
    "runtime_python_version",
]

PYODIDE_ENV = "CHAT_PYODIDE"  # a pyodide package folder, overriding the lookup
# The checkout this package sits in (multiregion_chat/infra/ -> the repository root); installed
# from a wheel, a folder without node_modules, and the working directory's is used instead.
REPO_ROOT = Path(__file__).resolve().parents[2]
# The command that runs Node (tests replace it).
NODE: list[str] = ["node"]

# Loads Pyodide from the folder given, mounts each host directory at its deployed
# path and runs compileall there. argv: pyodide folder, then (host dir, deployed path)
# pairs. Prints one JSON line: {"version": ..., "cacheTag": ..., "failed": [...]}.
_COMPILE_SCRIPT = r"""
import { pathToFileURL } from "node:url";
import { join } from "node:path";
const [pyodideDir, ...pairs] = process.argv.slice(1);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: pyodideDir + "/" });
const mounts = [];
for (let i = 0; i < pairs.length; i += 2) {
  pyodide.FS.mkdirTree(pairs[i + 1]);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: pairs[i] }, pairs[i + 1]);
  mounts.push(pairs[i + 1]);
}
pyodide.globals.set("mounts", pyodide.toPy(mounts));
const result = pyodide.runPython(`
import compileall, json, py_compile, sys
failed = []
for root in mounts:
    # quiet=1: only errors are printed; a file that does not compile stays source-only
    if not compileall.compile_dir(
        root, quiet=1, workers=1,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    ):
        failed.append(root)
json.dumps({"version": sys.version.split()[0], "cacheTag": sys.implementation.cache_tag,
            "failed": failed})
`);
console.log(result);
"""


def runtime_python_version(runtime: lambda_.Runtime) -> str:
    """``"3.14"`` for ``python3.14``; a clear error for any other runtime."""
    name = runtime.name
    if not name.startswith("python3."):
        raise ValueError(f"not a Python runtime: {name!r}")
    return name.removeprefix("python")


class BytecodeError(RuntimeError):
    """Pyodide was found but could not compile (Node failed, or it is not the CPython it said)."""


@dataclass(frozen=True)
class Pyodide:
    """A Pyodide package folder and the CPython minor it runs (``"3.14"``)."""

    folder: Path
    version: str  # the npm version, e.g. "314.0.7"

    @property
    def python_version(self) -> str:
        major = self.version.split(".", 1)[0]  # "314" -> "3.14"; "0" (0.x releases) -> none
        return f"{major[0]}.{major[1:]}" if len(major) >= 3 else ""


def find_pyodide() -> Pyodide | None:
    """``$CHAT_PYODIDE``, else this repository's ``node_modules``, else the current directory's."""
    configured = os.environ.get(PYODIDE_ENV, "").strip()
    candidates = (
        [Path(configured)]
        if configured
        else [REPO_ROOT / "node_modules" / "pyodide", Path.cwd() / "node_modules" / "pyodide"]
    )
    for folder in candidates:
        try:
            version = json.loads((folder / "package.json").read_text(encoding="utf-8"))["version"]
        except (OSError, ValueError, KeyError):
            continue
        return Pyodide(folder.resolve(), str(version))
    return None


def _matching(python_version: str) -> Pyodide | None:
    found = find_pyodide()
    return found if found and found.python_version == python_version else None


def compiler_tag(python_version: str) -> str:
    """What compiles bytecode for ``python_version`` here: part of cache keys and asset hashes."""
    found = _matching(python_version)
    if found is None:
        return "no-bytecode"
    # the script is part of the compiler: a change to how it compiles is a new build
    script = hashlib.sha256(_COMPILE_SCRIPT.encode("utf-8")).hexdigest()[:12]
    return f"pyodide-{found.version}-{script}"


@cache
def _warn_once(python_version: str) -> None:
    found = find_pyodide()
    why = (
        f"Pyodide {found.version} at {found.folder} runs CPython {found.python_version or '?'}"
        if found
        else f"no Pyodide found (${PYODIDE_ENV}, {REPO_ROOT / 'node_modules'}, ./node_modules)"
    )
    print(
        f"warning: the Lambda code ships without bytecode for CPython {python_version}: {why}. "
        f"Cold starts compile every module. `npm ci` in this project (its package.json pins "
        f"the Pyodide of the functions' runtime), or ${PYODIDE_ENV} naming one, fixes it.",
        file=sys.stderr,
    )


def compile_tree(
    root: Path, *, python_version: str, deployed_at: str, strict: bool = False
) -> bool:
    """Write ``__pycache__`` bytecode for every ``.py`` under ``root`` (in place) for
    CPython ``python_version``, as if ``root`` were at ``deployed_at``.

    False (and one warning per synth) when no matching Pyodide is available. A
    file that does not compile stays source-only with a warning, or, with
    ``strict`` (the function code: it would fail at import), stops the synth.
    """
    pyodide = _matching(python_version)
    if pyodide is None:
        _warn_once(python_version)
        return False
    completed = subprocess.run(
        [
            *NODE,
            "--input-type=module",
            "-e",
            _COMPILE_SCRIPT,
            str(pyodide.folder),
            str(root.resolve()),
            deployed_at,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if completed.returncode == 0 and lines else None
    except ValueError:
        result = None
    if result is None:
        said = (completed.stderr or completed.stdout).strip()[-800:]
        raise BytecodeError(
            f"compiling {root} with Pyodide {pyodide.version} ({pyodide.folder}) failed "
            f"(exit {completed.returncode}): {said}"
        )
    expected_tag = "cpython-" + python_version.replace(".", "")
    if result["cacheTag"] != expected_tag:
        raise BytecodeError(
            f"Pyodide {pyodide.version} runs {result['cacheTag']}, not {expected_tag}"
        )
    if result["failed"] and strict:
        raise BytecodeError(
            f"code under {root} does not compile with CPython {result['version']}:\n"
            + completed.stdout.strip()[-2000:]
        )
    if result["failed"]:
        # compileall printed the files; they stay source-only (as pip --no-compile left them)
        print(
            f"warning: some files under {root} do not compile with CPython {result['version']}:\n"
            + completed.stdout.strip()[-2000:],
            file=sys.stderr,
        )
    return True
