"""Cold init of each Lambda handler module beside bare ``import boto3``.

``python -m bench.cold_start [--runs N] [--extra MODULE] [--first-call]``.

A function's init phase is its module's import: the imports plus whatever
runs at module scope (Powertools objects, clients). Each figure is one fresh
Python process importing one module with the package root first on ``sys.path``
and the environment Lambda gives a function (``LAMBDA_TASK_ROOT``,
``AWS_LAMBDA_FUNCTION_NAME``, the X-Ray daemon address, ..., plus the app's
variables from infra/functions.py with placeholder values). Without
``LAMBDA_TASK_ROOT`` the X-Ray SDK believes it is on a server and builds two
botocore X-Ray clients for centralized sampling at import, about 200 ms that
Lambda never pays, so the environment matters.

Handlers are discovered, not listed: every ``runtime/handlers/*.py`` that defines a top-level
``handler``. Runs are interleaved (boto3, each handler, boto3, ...) so load on the machine hits all
of them alike; one warm-up round first writes the ``__pycache__`` files. Both wall and CPU time
(``time.process_time``) of the import are kept: on a busy machine CPU time is the steadier figure.
Each import also reports which of :data:`DEFERRED_MODULES` it loaded: modules a handler must load on
first use, not at init, unless the table names it as one that needs them there (the delivery engine
``runtime.delivery.engine`` in the two handlers that deliver; aiohttp, PyJWT and ``cryptography`` in
none). A handler that loads one anyway is listed under ``<handler>_deferred_loaded`` and counted in
``deferred_loaded_at_init`` (target 0): such an import can cost little on its own
(``runtime.delivery.engine`` is about 1 ms: aiohttp is its lazy part) and hide in the noise of the
init figures, so it is checked by name.

Minor page faults are counted too: CPython 3.11-3.13 keep the frame stack in 16 KiB chunks and unmap
a chunk as soon as the calls leave it (CPython gh-142183, fixed in March 2026 by keeping one,
backported to 3.14 and 3.13 patch releases), so a module whose regular expressions compile right at
a chunk's edge maps and unmaps it thousands of times, each time faulting its pages in again.
botocore's and urllib3's did, 20-odd frames deeper than here, in every handler that reached boto3
through Powertools or ``runtime.platform.aws_clients``: 15-40 ms of their inits. The handlers import
boto3 first for that reason (docs/performance.md); a handler with thousands more faults than boto3
has found another edge.

``first_call=True`` also times the first ``handler`` call of a no-op event in
the same process (what moves from init to the first invocation when something
is imported lazily); that call may fail on the missing AWS services, which is
fine: only the time to reach that point is wanted.

Bytecode, as deployed: Lambda's ``/var/task`` and ``/opt`` are read-only, so
whatever ships without ``.pyc`` files compiles from source on every cold
start. The app compiles the function code and the dependencies layer for the
runtime at synth (infra/bytecode.py, with Pyodide) when Pyodide is
installed (``npm ci``), and ships source only otherwise. By default this
measures what this checkout would deploy (``bytecode`` in the result says
which); ``--no-bytecode`` measures the source-only build (each import
compiles the function code and the layer's packages, boto3 keeps the
runtime's bytecode), ``--bytecode`` forces bytecode everywhere.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "DEFERRED_MODULES",
    "LAMBDA_ENV",
    "deploys_bytecode",
    "discover_handlers",
    "layer_roots",
    "measure_cold_start",
    "measure_module",
]

ROOT = Path(__file__).resolve().parents[1]
# The runtime's package root goes on PYTHONPATH (as /var/task holds ``multiregion_chat/``).
PACKAGE = ROOT / "multiregion_chat"
HANDLERS = PACKAGE / "runtime" / "handlers"
# Its module name, from the folder (the handler strings spell it in infra.code_asset, which
# this bench does not import: aws_cdk would start a jsii kernel for one string).
HANDLERS_PACKAGE = ".".join(HANDLERS.relative_to(ROOT).parts)

# What the Lambda runtime sets (python3.x on arm64, tracing ACTIVE), with
# dummy credentials: nothing here calls AWS.
_RUNTIME_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.14",
    "AWS_LAMBDA_FUNCTION_NAME": "chat-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/chat-bench",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "_AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1",
    "_AWS_XRAY_DAEMON_PORT": "2000",
    "AWS_ACCESS_KEY_ID": "AKIDBENCH",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_SESSION_TOKEN": "bench",
    "TZ": ":UTC",
    # Any AWS call a first invocation makes fails at once (nothing listens there).
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
}
# The app's variables (infra/functions.py), placeholder values.
_APP_ENV = {
    "CONNECTIONS_TABLE": "chat-connections",
    "MESSAGES_TABLE": "chat-messages",
    "EVENT_BUS_NAME": "chat-bus",
    "EVENT_SOURCE": "chat",
    "MAX_BODY_BYTES": "16384",
    "HISTORY_RETENTION_SECONDS": "86400",
    "CONNECTION_TTL_SECONDS": "10800",
    "FANOUT_CONCURRENCY": "16",
    "FANOUT_SHARD_THRESHOLD": "500",
    "FANOUT_SHARD_SIZE": "500",
    "FANOUT_REQUEST_BUDGET": "5000",
    "FANOUT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/chat-fanout",
    "PRESENCE_LIVE_MAX_MEMBERS": "200",
    "CALLBACK_URL": "https://abc123.execute-api.us-east-1.amazonaws.com/prod",
    "SIGNING_SECRET_NAME": "chat/prod/token-signing-secret",
    "HTTP_POLL_INTERVAL_MS": "250",
    "POWERTOOLS_SERVICE_NAME": "chat",
    "POWERTOOLS_METRICS_NAMESPACE": "Chat",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
LAMBDA_ENV: dict[str, str] = {**_RUNTIME_ENV, **_APP_ENV, "LAMBDA_TASK_ROOT": str(ROOT)}

# Module -> the handlers whose init may load it. Every other handler loads it on first use (or
# never): ClientMessageHandler's fast path loads the delivery engine for its first local delivery;
# OIDC's PyJWT comes with runtime.auth.jwks (HS256 deployments verify with hmac); Powertools'
# data_classes and event_handler packages import every event class and resolver they have.
DEFERRED_MODULES: dict[str, tuple[str, ...]] = {
    "multiregion_chat.runtime.delivery.engine": ("event_bus_message_handler", "fanout_worker"),
    "aiohttp": (),
    "jwt": (),
    "cryptography": (),
    "aws_lambda_powertools.utilities.data_classes": (),
    "aws_lambda_powertools.event_handler": (),
}

# Runs in the fresh process: argv = module, first_call ("1"/"0"), JSON list of
# path prefixes whose modules must compile from source (no cached bytecode).
NOGC_PREFIX = "nogc:"
_CHILD = r"""
import sys, time, json, io, contextlib, resource
NOGC_PREFIX = "nogc:"
name, first, sourced = sys.argv[1], sys.argv[2] == "1", tuple(json.loads(sys.argv[3]))
watched = json.loads(sys.argv[4]) if len(sys.argv) > 4 else []
if sourced:
    # SourceLoader.get_code skips the cached .pyc (and writes none) when
    # path_stats fails: exactly Lambda's read-only code without bytecode.
    from importlib.machinery import SourceFileLoader
    _stats = SourceFileLoader.path_stats
    def path_stats(self, path):
        if path.startswith(sourced):
            raise OSError("deployed without bytecode")
        return _stats(self, path)
    SourceFileLoader.path_stats = path_stats
# "nogc:boto3": the import as multiregion_chat.runtime.platform.init_phase runs a handler's
# (collector off, then frozen)
nogc = name.startswith(NOGC_PREFIX)
name = name.removeprefix(NOGC_PREFIX)
import gc, importlib
faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
wall0, cpu0 = time.perf_counter(), time.process_time()
if nogc:
    gc.disable()
module = importlib.import_module(name)
if nogc:
    gc.freeze()
    gc.enable()
wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
result = {"wall_ms": wall * 1e3, "cpu_ms": cpu * 1e3, "minor_faults": faults,
          "loaded": [watch for watch in watched if watch in sys.modules]}
if first and hasattr(module, "handler"):
    class Context:
        function_name = "chat-bench"; memory_limit_in_mb = 1769; aws_request_id = "bench"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:chat-bench"
        def get_remaining_time_in_millis(self): return 1
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            module.handler({}, Context())
        except BaseException:
            pass
    result["first_call_wall_ms"] = (time.perf_counter() - wall0) * 1e3
    result["first_call_cpu_ms"] = (time.process_time() - cpu0) * 1e3
print(json.dumps(result))
"""


def layer_roots(requirements: Path = PACKAGE / "runtime" / "requirements.txt") -> list[str]:
    """Where this Python imports the dependencies layer's packages from: each pinned
    distribution's top-level packages and modules, as path prefixes."""
    roots: set[str] = set()
    for line in requirements.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)(\[[^]]*\])?\s*==", line)
        if not match:
            continue
        distribution = metadata.distribution(match.group(1))
        for file in distribution.files or []:
            top = file.parts[0]
            if top.endswith((".dist-info", "__pycache__")) or top == "..":
                continue
            # Not resolved: the child imports through the same (maybe symlinked) paths.
            path = Path(str(distribution.locate_file(top)))
            roots.add(str(path) + (os.sep if path.is_dir() else ""))
    return sorted(roots)


def discover_handlers(directory: Path = HANDLERS) -> list[str]:
    """Module names of ``directory/*.py`` that define a top-level ``handler``."""
    found = []
    for path in sorted(directory.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            defined = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name == "handler"
            )
            assigned = isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "handler" for target in node.targets
            )
            if defined or assigned:
                found.append(path.stem)
                break
    return found


def importable(name: str) -> str:
    """The module to import for ``name``: a handler's stem names its module in the handlers
    package; anything else (``boto3``, ``nogc:boto3``) is imported as given."""
    return f"{HANDLERS_PACKAGE}.{name}" if (HANDLERS / f"{name}.py").is_file() else name


def measure_module(
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    first_call: bool = False,
    sourced: Sequence[str] = (),
) -> dict[str, Any]:
    """Import ``name`` in a fresh process; its import wall/CPU ms (and first call's), and
    which of :data:`DEFERRED_MODULES` it loaded (``loaded``).

    Modules under the path prefixes ``sourced`` compile from source (module docstring).
    """
    # Only what Lambda sets: nothing of this shell's AWS_*, POWERTOOLS_* (a test
    # run's POWERTOOLS_TRACE_DISABLED would skip the Tracer's cost) or PYTHON*.
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    child_env = {**kept, **(env if env is not None else LAMBDA_ENV), "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="cold-") as cwd:  # nothing from the cwd on sys.path
        completed = subprocess.run(
            [
                sys.executable,
                "-c",
                _CHILD,
                importable(name),
                "1" if first_call else "0",
                json.dumps(list(sourced)),
                json.dumps(sorted(DEFERRED_MODULES)),
            ],
            cwd=cwd,
            env=child_env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"importing {name} failed:\n{completed.stderr}")
    sample: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return sample


def deferred_loaded(handler: str, loaded: Iterable[str]) -> list[str]:
    """The modules of :data:`DEFERRED_MODULES` in ``loaded`` that ``handler``'s init may not
    load."""
    return sorted(
        module
        for module in loaded
        if module in DEFERRED_MODULES and handler not in DEFERRED_MODULES[module]
    )


def deploys_bytecode() -> bool:
    """Whether a synth here compiles the Lambda code for its runtime (Pyodide installed)."""
    from multiregion_chat.infra.bytecode import compiler_tag, runtime_python_version
    from multiregion_chat.infra.lambda_function import RUNTIME

    return compiler_tag(runtime_python_version(RUNTIME)) != "no-bytecode"


def measure_cold_start(
    runs: int = 7,
    *,
    handlers: Sequence[str] | None = None,
    extra_modules: Iterable[str] = (),
    first_call: bool = False,
    deployed_bytecode: bool | None = None,
) -> dict[str, Any]:
    """Median init per handler beside ``import boto3``; ratios vs boto3.

    Keys: ``boto3_ms``, ``boto3_nogc_ms`` (boto3 imported as the handlers build their init:
    collector off, then frozen) and ``<module>_ms`` (wall medians), the same with
    ``_cpu_ms``, ``worst_ratio_vs_boto3`` (wall) and ``worst_cpu_ratio_vs_boto3``,
    ``worst_ratio_vs_boto3_nogc`` (the like-for-like ratio), ``worst`` (the module with the
    highest wall ratio), ``<module>_minor_faults`` (the import's minor page faults, median:
    a handler far above boto3's at about the same memory is re-mapping its frame stack, see
    the module docstring), ``ratio_vs_boto3`` and ``cpu_ratio_vs_boto3`` (per handler),
    ``<handler>_deferred_loaded`` and ``deferred_loaded_at_init`` (module docstring),
    ``runs``; with ``first_call``, also ``<handler>_first_call_ms``. ``extra_modules`` (for
    example ``aiohttp``) are measured the same way but are not handlers, so they take no
    part in the worst ratio. ``deployed_bytecode=False``: the function code and the layer's
    packages compile from source in every import but boto3's; ``True``: bytecode everywhere;
    ``None``: as this checkout deploys (:func:`deploys_bytecode`). ``bytecode`` in the
    result says which."""
    if deployed_bytecode is None:
        deployed_bytecode = deploys_bytecode()
    names = list(handlers if handlers is not None else discover_handlers())
    extras = list(extra_modules)
    # Handlers build their init with the collector off (runtime.platform.init_phase), which speeds
    # up boto3's share of it too: "boto3_nogc" is boto3 imported the same way, the like-for-like
    # baseline of our own modules' overhead (docs/performance.md).
    like_for_like = NOGC_PREFIX + "boto3"
    modules = ["boto3", like_for_like, *names, *extras]
    sourced = [] if deployed_bytecode else [str(PACKAGE) + os.sep, *layer_roots()]
    for module in modules:  # warm-up: __pycache__ written, files in the page cache
        measure_module(module)
    samples: dict[str, list[dict[str, Any]]] = {module: [] for module in modules}
    for _ in range(runs):
        for module in modules:
            call = first_call and module in names
            # boto3 is the runtime's, with bytecode: the baseline stays the same.
            own = sourced if module not in ("boto3", like_for_like) else []
            samples[module].append(measure_module(module, first_call=call, sourced=own))
    result: dict[str, Any] = {"runs": runs, "bytecode": deployed_bytecode}
    samples["boto3_nogc"] = samples.pop(like_for_like)
    for module, values in samples.items():
        result[f"{module}_ms"] = round(statistics.median(v["wall_ms"] for v in values), 1)
        result[f"{module}_cpu_ms"] = round(statistics.median(v["cpu_ms"] for v in values), 1)
        if values and "minor_faults" in values[0]:
            faults = statistics.median(v["minor_faults"] for v in values)
            result[f"{module}_minor_faults"] = round(faults)
        if values and "first_call_wall_ms" in values[0]:
            first = statistics.median(v["first_call_wall_ms"] for v in values)
            result[f"{module}_first_call_ms"] = round(first, 1)
    if names:
        ratios = {name: result[f"{name}_ms"] / result["boto3_ms"] for name in names}
        cpu_ratios = {name: result[f"{name}_cpu_ms"] / result["boto3_cpu_ms"] for name in names}
        result["worst"] = max(ratios, key=lambda name: ratios[name])
        result["worst_ratio_vs_boto3"] = round(max(ratios.values()), 2)
        result["worst_cpu_ratio_vs_boto3"] = round(max(cpu_ratios.values()), 2)
        result["ratio_vs_boto3"] = {name: round(ratio, 2) for name, ratio in ratios.items()}
        result["cpu_ratio_vs_boto3"] = {name: round(r, 2) for name, r in cpu_ratios.items()}
        result["worst_ratio_vs_boto3_nogc"] = round(
            max(result[f"{name}_ms"] for name in names) / result["boto3_nogc_ms"], 2
        )
        found = 0
        for name in names:
            loaded = {module for sample in samples[name] for module in sample.get("loaded", [])}
            result[f"{name}_deferred_loaded"] = deferred_loaded(name, loaded)
            found += len(result[f"{name}_deferred_loaded"])
        result["deferred_loaded_at_init"] = found
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--extra", action="append", default=[], help="another module to time")
    parser.add_argument("--first-call", action="store_true", help="also time the first call")
    parser.add_argument(
        "--bytecode",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bytecode for the function code and the layer, or none (default: as deployed)",
    )
    args = parser.parse_args(argv)
    result = measure_cold_start(
        args.runs,
        extra_modules=args.extra,
        first_call=args.first_call,
        deployed_bytecode=args.bytecode,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
