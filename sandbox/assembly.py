"""Reads a CDK cloud assembly (cdk.out): which stacks exist, their regions and templates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.errors import SandboxError

STACK_ARTIFACT = "aws:cloudformation:stack"
ASSEMBLY_ARTIFACT = "cdk:cloud-assembly"


@dataclass(frozen=True)
class StackArtifact:
    """One CloudFormation stack of the assembly."""

    name: str  # the artifact id (the stack's construct id, unique in the assembly)
    stack_name: str  # the CloudFormation stack name
    region: str
    template_path: Path
    assembly_dir: Path  # the folder asset paths are relative to
    template: dict[str, Any]


def _load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SandboxError(f"{what} not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise SandboxError(f"{what} is not readable JSON: {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SandboxError(f"{what} is not a JSON object: {path}")
    return data


def _region_of(environment: str, artifact_id: str) -> str:
    # aws://<account>/<region>; CDK writes unknown-account / unknown-region when unset.
    prefix = "aws://"
    parts = environment[len(prefix) :].split("/") if environment.startswith(prefix) else []
    if len(parts) != 2 or not parts[1] or parts[1].startswith("unknown-"):
        raise SandboxError(
            f"stack {artifact_id}: environment {environment!r} names no region; "
            "the sandbox runs region-bound stacks only (give the stack an env with a region)"
        )
    return parts[1]


def load_stacks(cdk_out: Path) -> list[StackArtifact]:
    """Every stack artifact in ``cdk_out`` and its nested assemblies (CDK stages), in order."""
    if not cdk_out.is_dir():
        raise SandboxError(
            f"no cloud assembly at {cdk_out}: run `npx cdk synth` first (or `make local`), "
            "or pass --cdk-out"
        )
    stacks: list[StackArtifact] = []
    _collect(cdk_out, stacks, depth=0)
    if not stacks:
        raise SandboxError(f"{cdk_out}/manifest.json lists no CloudFormation stacks")
    return stacks


def _collect(directory: Path, out: list[StackArtifact], depth: int) -> None:
    manifest = _load_json(directory / "manifest.json", "cloud assembly manifest")
    artifacts = manifest.get("artifacts") or {}
    for artifact_id, artifact in artifacts.items():
        kind = artifact.get("type")
        if kind == ASSEMBLY_ARTIFACT and depth < 4:
            sub = (artifact.get("properties") or {}).get("directoryName")
            if sub:
                _collect(directory / sub, out, depth + 1)
            continue
        if kind != STACK_ARTIFACT:
            continue
        props = artifact.get("properties") or {}
        template_file = props.get("templateFile")
        if not template_file:
            raise SandboxError(f"stack {artifact_id}: manifest entry has no templateFile")
        template_path = directory / template_file
        template = _load_json(template_path, f"template of stack {artifact_id}")
        out.append(
            StackArtifact(
                name=artifact_id,
                stack_name=props.get("stackName") or artifact_id,
                region=_region_of(str(artifact.get("environment", "")), artifact_id),
                template_path=template_path,
                assembly_dir=directory,
                template=template,
            )
        )
