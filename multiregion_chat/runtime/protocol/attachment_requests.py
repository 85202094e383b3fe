"""The ``upload`` and ``download`` frames and the attachment a ``send`` body may reference
(docs/protocol.md, "Attachments"): their shapes, checked without AWS.

Standard library only (besides the frame field reader's protocol), so :mod:`runtime.protocol.frames`
can build the requests and :mod:`runtime.attachments.transfers` can act on them.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple, Protocol

__all__ = [
    "AttachmentRef",
    "Download",
    "Upload",
    "attachment_ref",
    "parse_download",
    "parse_upload",
]

MAX_NAME_CHARS: Final = 255
MAX_KEY_CHARS: Final = 512
# A media type as ``type/subtype``, lower case, without parameters: S3 stores it verbatim and
# the POST policy compares it exactly, so one spelling per type keeps both simple.
_CONTENT_TYPE: Final = re.compile(
    r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}"
)
CONTENT_TYPE_RULE: Final = "a lower-case media type like 'image/png' (type/subtype, no parameters)"


class _Fields(Protocol):
    """What :class:`runtime.protocol.frames.FrameFields` offers (not imported: frames imports
    us)."""

    obj: dict[str, Any]

    def bad(self, message: str) -> Exception: ...

    def room(self) -> str: ...


class Upload(NamedTuple):
    room: str
    content_type: str
    size: int
    name: str | None = None


class Download(NamedTuple):
    room: str
    key: str
    name: str | None = None


class AttachmentRef(NamedTuple):
    """``body.attachment`` of a ``send``: the key the upload slot named, and what the
    sender says about the object (checked against it when given)."""

    key: str
    content_type: str | None = None
    size: int | None = None


def _name(fields: _Fields) -> str | None:
    name = fields.obj.get("name")
    if name is None:
        return None
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or "\x00" in name:
        raise fields.bad(f"'name' must be a string of 1 to {MAX_NAME_CHARS} characters")
    return name


def _size(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def _key(value: object) -> str | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_CHARS:
        return None
    return value


def parse_upload(fields: _Fields) -> Upload:
    room = fields.room()
    content_type = fields.obj.get("contentType")
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise fields.bad(f"'contentType' must be {CONTENT_TYPE_RULE}")
    size = _size(fields.obj.get("size"))
    if size is None:
        raise fields.bad("'size' must be a positive integer (bytes)")
    return Upload(room=room, content_type=content_type, size=size, name=_name(fields))


def parse_download(fields: _Fields) -> Download:
    room = fields.room()
    key = _key(fields.obj.get("key"))
    if key is None:
        raise fields.bad(f"'key' must be a string of 1 to {MAX_KEY_CHARS} characters")
    return Download(room=room, key=key, name=_name(fields))


def attachment_ref(body: object) -> AttachmentRef | None:
    """The attachment ``body`` references, None when it references none.

    ValueError (its message says what is wrong) when ``body.attachment`` is there but is
    not ``{"key": str, "contentType"?: str, "size"?: int, "name"?: str}``.
    """
    if not isinstance(body, dict) or "attachment" not in body:
        return None
    attachment = body["attachment"]
    if not isinstance(attachment, dict):
        raise ValueError("'body.attachment' must be an object with a 'key'")
    key = _key(attachment.get("key"))
    if key is None:
        raise ValueError(f"'body.attachment.key' must be a string of 1 to {MAX_KEY_CHARS} chars")
    content_type = attachment.get("contentType")
    if content_type is not None and not (
        isinstance(content_type, str) and _CONTENT_TYPE.fullmatch(content_type)
    ):
        raise ValueError(f"'body.attachment.contentType' must be {CONTENT_TYPE_RULE}")
    size = attachment.get("size")
    if size is not None and _size(size) is None:
        raise ValueError("'body.attachment.size' must be a positive integer (bytes)")
    name = attachment.get("name")
    if name is not None and not (isinstance(name, str) and 1 <= len(name) <= MAX_NAME_CHARS):
        raise ValueError(f"'body.attachment.name' must be a string of 1 to {MAX_NAME_CHARS} chars")
    return AttachmentRef(key=key, content_type=content_type, size=size)
