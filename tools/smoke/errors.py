"""Errors of the smoke test and how an AWS error is shown in one line."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from websockets.exceptions import InvalidStatus

__all__ = ["SmokeSetupError", "aws_reason", "describe", "refusal"]


class SmokeSetupError(Exception):
    """The check cannot start at all (bad arguments, unreadable endpoints file): exit 2."""


def aws_reason(error: Exception) -> str:
    """``Code: Message`` of a botocore ClientError, else the error's text."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__


def describe(error: BaseException) -> str:
    """A connection or request error in one line."""
    if isinstance(error, InvalidStatus):
        return f"HTTP {error.response.status_code} at the handshake"
    if isinstance(error, TimeoutError):
        return "timed out"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def refusal(reply: dict[str, Any], wanted: str) -> str | None:
    """None when ``reply`` is a ``wanted`` frame, else why not (``code: message``)."""
    if reply.get("type") == wanted:
        return None
    if reply.get("type") == "error":
        return f"{reply.get('code')}: {reply.get('message')}"
    return f"unexpected reply {reply.get('type')!r}"
