"""Code of a team's own function: its folder plus this project's ``chat`` runtime package.

A team's handler (a client route, a bus consumer) lives in the team's own
repository, but should validate frames, log, count metrics and reach the
tables exactly like the built-in handlers: with :mod:`chat` (``lambdas/chat``).
The asset is therefore the team's folder with ``chat/`` copied next to it,
assembled by CDK *local* bundling (a directory copy, no Docker). One folder,
like the built-in handlers' asset, so the local sandbox runs it unchanged.

The asset hash covers both trees: a change to the team's code or to the
runtime package yields a new asset.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from stacks.functions import LAMBDAS_DIR

__all__ = ["RUNTIME_PACKAGE", "extension_code"]

# The runtime package every handler imports (``from chat import ...``).
RUNTIME_PACKAGE = LAMBDAS_DIR / "chat"
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".mypy_cache")


def _tree_digest(digest: hashlib._Hash, root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")


def _asset_hash(code_dir: Path) -> str:
    digest = hashlib.sha256(b"chat-extension-v1\0")
    _tree_digest(digest, code_dir)
    _tree_digest(digest, RUNTIME_PACKAGE)
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class _CopyWithRuntime:
    """CDK local bundling: the team's folder, then ``chat/`` beside it."""

    def __init__(self, code_dir: Path) -> None:
        self.code_dir = code_dir

    def try_bundle(self, output_dir: str, _options: object = None) -> bool:  # jsii: (dir, opts)
        out = Path(output_dir)
        shutil.copytree(self.code_dir, out, dirs_exist_ok=True, ignore=_IGNORED)
        shutil.copytree(RUNTIME_PACKAGE, out / "chat", dirs_exist_ok=True, ignore=_IGNORED)
        return True


def extension_code(code_dir: str | Path) -> lambda_.Code:
    """The Lambda code of ``code_dir`` with the ``chat`` runtime package added.

    ``code_dir`` must not contain a ``chat`` folder of its own (it would be
    overwritten): name the team's package anything else.
    """
    folder = Path(code_dir).resolve()
    if not folder.is_dir():
        raise ValueError(f"handler code folder {folder} does not exist")
    if (folder / "chat").exists():
        raise ValueError(f"{folder} has its own 'chat' folder; the runtime package goes there")
    return lambda_.Code.from_asset(
        str(folder),
        asset_hash_type=AssetHashType.CUSTOM,
        asset_hash=_asset_hash(folder),
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds (or raises).
            image=DockerImage.from_registry("local-bundling-only"),
            local=cast(ILocalBundling, _CopyWithRuntime(folder)),
        ),
    )
