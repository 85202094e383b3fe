"""Code of a team's own function: its folder plus this project's ``chat`` runtime package.

A team's handler (a client route, a bus consumer) lives in the team's own
repository, but should validate frames, log, count metrics and reach the
tables exactly like the built-in handlers: with :mod:`chat` (``lambdas/chat``).
The asset is therefore the team's folder with ``chat/`` copied next to it, one
folder like the built-in handlers' asset (so the local sandbox runs it
unchanged), compiled for the runtime like theirs (:mod:`stacks.code_asset`).

The asset hash covers both trees: a change to the team's code or to the
runtime package yields a new asset.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from stacks.code_asset import CodeSource, python_code
from stacks.functions import LAMBDAS_DIR
from stacks.lambda_function import RUNTIME

__all__ = ["RUNTIME_PACKAGE", "extension_code"]

# The runtime package every handler imports (``from chat import ...``).
RUNTIME_PACKAGE = LAMBDAS_DIR / "chat"


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
    return python_code(
        [CodeSource(folder=folder), CodeSource(folder=RUNTIME_PACKAGE, into="chat")],
        runtime=RUNTIME,
    )
