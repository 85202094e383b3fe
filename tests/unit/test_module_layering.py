"""Storage and the data model never depend on the wire protocol (docs/contracts.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CHAT = Path(__file__).resolve().parents[2] / "lambdas" / "chat"
WIRE = {"chat.frames", "chat.http_requests"}
PROTOCOL_FREE = ["dynamo", "connection_store", "room_store", "history_store", "model", "json_codec"]


def chat_imports(module: str) -> set[str]:
    """The ``chat.*`` modules that ``lambdas/chat/<module>.py`` imports (at any depth)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((CHAT / f"{module}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "chat":
                found |= {f"chat.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("chat.")}


def closure(module: str) -> set[str]:
    seen: set[str] = set()
    pending = [f"chat.{module}"]
    while pending:
        name = pending.pop()
        if name in seen or not (CHAT / f"{name.removeprefix('chat.')}.py").exists():
            continue
        seen.add(name)
        pending.extend(chat_imports(name.removeprefix("chat.")))
    return seen


@pytest.mark.parametrize("module", PROTOCOL_FREE)
def test_storage_and_model_do_not_import_the_wire_protocol(module: str) -> None:
    assert not closure(module) & WIRE
