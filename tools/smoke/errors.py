"""Errors of the smoke test and how an AWS error is shown in one line."""

from __future__ import annotations

from botocore.exceptions import ClientError

__all__ = ["SmokeSetupError", "aws_reason"]


class SmokeSetupError(Exception):
    """The check cannot start at all (bad arguments, unreadable endpoints file): exit 2."""


def aws_reason(error: Exception) -> str:
    """``Code: Message`` of a botocore ClientError, else the error's text."""
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__
