"""An attachment's bytes on the wire (docs/protocol.md, "Attachments"): the ``upload`` frame,
the presigned POST of the ``upload_slot`` it gets, the reference a ``send`` carries, and the
GET of a ``download_url``. One implementation for the CLI (clients/attachments.py), the bench
(bench/attachments.py) and the smoke test (tools/smoke/attachment.py); the web page has its
own in JavaScript.
"""

from __future__ import annotations

from typing import Any

import aiohttp

__all__ = [
    "TRANSFER_SECONDS",
    "TransferError",
    "attachment_reference",
    "fetch",
    "post_to_slot",
    "upload_request",
]

TRANSFER_SECONDS = 300.0  # the slot's and the URL's lifetime: a slow link still finishes


class TransferError(Exception):
    """Storage refused the transfer or could not be reached; the text says which."""


def upload_request(room: str, size: int, content_type: str, name: str) -> dict[str, Any]:
    """The ``upload`` frame that asks ``room`` for a slot of ``size`` bytes."""
    return {
        "action": "upload",
        "room": room,
        "contentType": content_type,
        "size": size,
        "name": name,
    }


def attachment_reference(
    slot: dict[str, Any], size: int, content_type: str, name: str
) -> dict[str, Any]:
    """``body.attachment`` of the ``send`` that follows a successful POST to ``slot``."""
    return {"key": slot["key"], "size": size, "contentType": content_type, "name": name}


async def post_to_slot(
    slot: dict[str, Any],
    content: bytes,
    *,
    name: str,
    content_type: str,
    timeout: float = TRANSFER_SECONDS,
) -> None:
    """POST ``content`` with the slot's ``fields`` (the file last, as S3 wants) to its ``url``."""
    form = aiohttp.FormData()
    for field, value in (slot.get("fields") or {}).items():
        form.add_field(field, value)
    form.add_field("file", content, filename=name, content_type=content_type)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.post(slot["url"], data=form) as answer,
        ):
            if answer.status >= 300:
                raise TransferError(f"storage answered {answer.status}: {await answer.text()}")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransferError(str(error) or type(error).__name__) from error


async def fetch(url: str, *, timeout: float = TRANSFER_SECONDS) -> bytes:
    """The bytes a presigned GET ``url`` serves."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(url) as answer,
        ):
            if answer.status != 200:
                raise TransferError(f"storage answered {answer.status}")
            return await answer.read()
    except (aiohttp.ClientError, TimeoutError) as error:
        raise TransferError(str(error) or type(error).__name__) from error
