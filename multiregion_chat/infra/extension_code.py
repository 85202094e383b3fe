"""Code of a team's own function: its folder plus this project's runtime.

A team's handler (a client route, a bus consumer) lives in the team's own
repository, but should validate frames, log, count metrics and reach the
tables exactly like the built-in handlers: with :mod:`multiregion_chat.runtime`.
The asset is therefore the team's folder with ``multiregion_chat/`` (the package
root's ``__init__`` and ``runtime/``) copied next to it, one
folder like the built-in handlers' asset (so the local sandbox runs it
unchanged), compiled for the runtime like theirs (:mod:`infra.code_asset`).

The asset hash covers both trees: a change to the team's code or to the
runtime package yields a new asset.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

from multiregion_chat.infra.code_asset import PACKAGE_DIR, CodeSource, python_code, runtime_source
from multiregion_chat.infra.lambda_function import RUNTIME

__all__ = ["extension_code"]


def extension_code(code_dir: str | Path) -> lambda_.Code:
    """The Lambda code of ``code_dir`` with the runtime (``multiregion_chat/``) added.

    ``code_dir`` must not contain a ``multiregion_chat`` folder of its own (it
    would be overwritten).
    """
    folder = Path(code_dir).resolve()
    if not folder.is_dir():
        raise ValueError(f"handler code folder {folder} does not exist")
    if (folder / PACKAGE_DIR.name).exists():
        raise ValueError(
            f"{folder} has its own {PACKAGE_DIR.name!r} folder; the runtime package goes there"
        )
    return python_code([CodeSource(folder=folder), runtime_source()], runtime=RUNTIME)
