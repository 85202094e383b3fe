"""The three steps of rotating the HS256 signing key with no failed token (docs/operations.md).

``python -m multiregion_chat.clients.rotation stage|promote|retire`` reads the secret's current
value on
standard input and prints the next value; ``aws secretsmanager put-secret-value`` stores it.

* ``stage``: add a new random key as ``next``: the authorizers accept it once their cache
  (5 minutes) renews, nobody signs with it yet.
* ``promote`` (at least 5 minutes after stage): ``next`` becomes ``current`` and the old key
  ``previous``: signers switch to the new key; tokens of the old one stay valid.
* ``retire`` (at least the longest token lifetime plus 5 minutes after promote): drop
  ``previous``; every token signed with it has expired.

A plain-string secret (what the stack generates) is a document with only ``current``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import string
import sys
from typing import Any

__all__ = ["new_key", "next_value"]

KEY_LENGTH = 64  # letters and digits, as the stack's generated secret


def new_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(KEY_LENGTH))


def _document(value: str) -> dict[str, Any]:
    text = value.strip()
    if not text.startswith("{"):
        if not text:
            raise ValueError("the secret is empty")
        return {"current": text}
    document = json.loads(text)
    if not isinstance(document, dict) or not isinstance(document.get("current"), str):
        raise ValueError('the secret\'s JSON has no "current" key')
    return document


def next_value(step: str, value: str, key: str | None = None) -> str:
    """The secret's value after ``step`` (stage, promote, retire) applied to ``value``."""
    document = _document(value)
    if step == "stage":
        if "next" in document:
            raise ValueError("a key is staged already: promote it first")
        document["next"] = key or new_key()
    elif step == "promote":
        if "next" not in document:
            raise ValueError("no staged key: stage one first")
        document = {"current": document["next"], "previous": document["current"]}
    elif step == "retire":
        if "next" in document:
            raise ValueError("a key is staged: promote it before retiring")
        document = {"current": document["current"]}
    else:
        raise ValueError(f"unknown step {step!r}")
    return json.dumps(document, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m multiregion_chat.clients.rotation",
        description="Rotate the token signing key in three steps (docs/operations.md).",
    )
    parser.add_argument("step", choices=("stage", "promote", "retire"))
    args = parser.parse_args(argv)
    try:
        print(next_value(args.step, sys.stdin.read()))
    except ValueError as error:
        print(f"rotation: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
