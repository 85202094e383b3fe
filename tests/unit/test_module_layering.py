"""The package's layering rules: who may import whom (docs/architecture.md, "Code layout").

The runtime's groups form a stack: a module may import the runtime only from its own group and
the groups below it. ``protocol`` at the bottom is standard library only, so the stacks and the
clients can share it (the action list, message ids) without boto3. The runtime never imports the
CDK side or the clients; the clients never need the AWS-bound runtime.
"""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "multiregion_chat"
RUNTIME = "multiregion_chat.runtime"
# Bottom to top.
RUNTIME_LAYERS = (
    "protocol",
    "platform",
    "store",
    "quota",
    "presence",
    "auth",
    "delivery",
    "intake",
    "attachments",
    "handlers",
)
WIRE = {f"{RUNTIME}.protocol.frames", f"{RUNTIME}.protocol.http_requests"}
# Storage and the data model never depend on the wire protocol (docs/contracts.md).
PROTOCOL_FREE = [
    f"{RUNTIME}.store.layout",
    f"{RUNTIME}.store.connection_store",
    f"{RUNTIME}.store.room_store",
    f"{RUNTIME}.store.history_store",
    f"{RUNTIME}.protocol.chat_model",
    f"{RUNTIME}.protocol.json_codec",
]

# The delivery engine is the transport only: whom to post to and what a gone connection means
# are handed to it by its callers, so it runs (tests, the fan-out bench) without DynamoDB.
ENGINE = f"{RUNTIME}.delivery.engine"
ENGINE_THIRD_PARTY = {"aiohttp", "yarl", "botocore"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module ``module`` imports, at any depth of its code (function-local too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from package import module` imports the module
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return frozenset(found)


def own(names: frozenset[str]) -> set[str]:
    return {name for name in names if name in MODULES and name != "multiregion_chat"}


def closure(module: str) -> set[str]:
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen or name not in MODULES:
            continue
        seen.add(name)
        pending.extend(own(imports(name)))
    return seen


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["multiregion_chat", "runtime"] or len(parts) < 3:
        return None
    return RUNTIME_LAYERS.index(parts[2])


def test_every_runtime_module_is_in_a_layer() -> None:
    runtime = [name for name in MODULES if name.startswith(f"{RUNTIME}.")]
    assert len(runtime) > 40
    assert all(layer(name) is not None for name in runtime)


@pytest.mark.parametrize("module", [name for name in MODULES if layer(name) is not None])
def test_a_runtime_module_imports_only_its_own_layer_and_those_below(module: str) -> None:
    mine = layer(module)
    assert mine is not None
    above = {name for name in own(imports(module)) if (layer(name) or 0) > mine}
    assert above == set(), f"{module} ({RUNTIME_LAYERS[mine]}) imports a higher layer"
    outside = {
        name
        for name in imports(module)
        if name.split(".")[0] in {"aws_cdk", "constructs", "cdk_nag"}
        or name.startswith(("multiregion_chat.infra", "multiregion_chat.clients"))
    }
    assert outside == set()


@pytest.mark.parametrize("module", [name for name in MODULES if layer(name) == 0])
def test_the_protocol_layer_is_standard_library_only(module: str) -> None:
    third_party = {
        name
        for name in imports(module)
        if not name.startswith(f"{RUNTIME}.protocol")
        and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert third_party == set()


@pytest.mark.parametrize("module", PROTOCOL_FREE)
def test_storage_and_model_do_not_import_the_wire_protocol(module: str) -> None:
    assert not closure(module) & WIRE


@pytest.mark.parametrize(
    "side", ["multiregion_chat.infra", "multiregion_chat.clients", "multiregion_chat"]
)
def test_the_cdk_side_and_the_clients_share_only_the_protocol(side: str) -> None:
    """Synth and the clients never load boto3-bound runtime code."""
    members = [name for name in MODULES if name == side or name.startswith(f"{side}.")]
    members = [name for name in members if not name.startswith(f"{RUNTIME}")]
    reached = {name for member in members for name in own(imports(member))}
    assert {name for name in reached if name.startswith(RUNTIME)} <= {
        name for name in MODULES if name.startswith(f"{RUNTIME}.protocol") or name == RUNTIME
    }


def test_the_delivery_engine_reaches_only_the_platform() -> None:
    """Nothing of storage, presence or tokens, directly or through another module."""
    reached = closure(ENGINE) - {ENGINE}
    assert reached
    beyond = {name for name in reached if layer(name) != RUNTIME_LAYERS.index("platform")}
    assert beyond == set(), f"{ENGINE} reaches beyond the platform"


def test_the_delivery_engine_needs_only_aiohttp_and_botocore() -> None:
    third_party = {
        name.split(".")[0]
        for name in imports(ENGINE)
        if not name.startswith(f"{RUNTIME}.") and name.split(".")[0] not in sys.stdlib_module_names
    }
    assert third_party <= ENGINE_THIRD_PARTY
