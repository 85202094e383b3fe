"""The CLI's attachments (docs/protocol.md, "Attachments"): ``/upload PATH`` and ``/save N [PATH]``.

``/upload`` asks the room for an ``upload_slot``, POSTs the file straight to the presigned
URL (the chat never carries the bytes), then sends a message that references the key.
Attachments in messages that arrive are numbered as they are printed (``* attachment N``);
``/save N`` asks this region for a ``download_url`` (this region's copy, or the origin's while
replication is behind) and writes the bytes to PATH, or to the file's own name (its last path
part only) in the current directory. An existing file is never replaced.
A text refused as ``too_large`` is kept: ``/sendfile`` sends it as ``message.txt`` instead.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from multiregion_chat.clients.transfer import (
    TransferError,
    attachment_reference,
    fetch,
    post_to_slot,
    upload_request,
)

__all__ = ["Attachment", "AttachmentShelf", "save", "send_refused_as_file", "upload"]


class Session(Protocol):
    """What :class:`clients.session.ChatSession` offers (not imported: it imports us)."""

    room: str
    attachments: AttachmentShelf
    refused_text: str | None  # the last text refused as too large

    def emit(self, text: str) -> None: ...

    async def request(
        self, frame: dict[str, Any], *, quiet: bool = False, seconds: float | None = None
    ) -> dict[str, Any] | None: ...

    async def send_message(self, room: str, body: Any) -> None: ...


@dataclass(frozen=True)
class Attachment:
    room: str
    key: str
    name: str | None
    size: int | None


class AttachmentShelf:
    """The attachments seen, numbered from 1 in the order they were shown."""

    def __init__(self) -> None:
        self.items: list[Attachment] = []

    def note(self, frame: dict[str, Any]) -> str | None:
        """The ``* attachment N`` line for a ``message`` that references one, else None."""
        body = frame.get("body")
        reference = body.get("attachment") if isinstance(body, dict) else None
        if not isinstance(reference, dict) or not isinstance(reference.get("key"), str):
            return None
        name = reference.get("name") if isinstance(reference.get("name"), str) else None
        size = reference.get("size") if isinstance(reference.get("size"), int) else None
        self.items.append(Attachment(str(frame.get("room")), reference["key"], name, size))
        number = len(self.items)
        what = f"{name or 'a file'}" + (f", {size} bytes" if size is not None else "")
        return f"* attachment {number}: {what}; /save {number} to download it"


def _content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    return guessed.lower() if guessed else "application/octet-stream"


async def upload(session: Session, argument: str) -> None:
    path = Path(argument).expanduser()
    if not path.is_file():
        session.emit(f"! upload: {argument!r} is not a file")
        return
    content = path.read_bytes()
    if not content:
        session.emit("! upload: the file is empty")
        return
    await _upload_content(session, content, path.name, _content_type(path), path.name)


async def send_refused_as_file(session: Session) -> None:
    """``/sendfile``: the last text refused as ``too_large``, sent as a text/plain file."""
    text = session.refused_text
    if not text:
        session.emit("! sendfile: no message was refused as too large")
        return
    session.refused_text = None
    content = text.encode("utf-8")
    await _upload_content(session, content, "message.txt", "text/plain", "(a long message)")


async def _upload_content(
    session: Session, content: bytes, name: str, content_type: str, text: str
) -> None:
    """``upload``, the presigned POST of ``content``, a ``send`` referencing it."""
    room = session.room
    slot = await session.request(upload_request(room, len(content), content_type, name), quiet=True)
    if slot is None or slot.get("type") != "upload_slot":
        reason = f"{slot.get('code')}: {slot.get('message')}" if slot else "no reply"
        session.emit(f"! upload refused ({reason})")
        return
    try:
        await post_to_slot(slot, content, name=name, content_type=content_type)
    except TransferError as error:
        session.emit(f"! upload: {error}")
        return
    reference = attachment_reference(slot, len(content), content_type, name)
    await session.send_message(room, {"text": text, "attachment": reference})


def _target(argument: str, attachment: Attachment) -> Path:
    if argument:
        given = Path(argument).expanduser()
        return given / Path(attachment.name or "").name if given.is_dir() else given
    # Only the last part of a name another user chose: never a path outside this directory.
    return Path(Path(attachment.name or "").name or attachment.key.rsplit("/", 1)[-1])


async def save(session: Session, argument: str) -> None:
    number_text, _, path_text = argument.partition(" ")
    shelf = session.attachments.items
    if not number_text.isdigit() or not 1 <= int(number_text) <= len(shelf):
        session.emit(f"! save: give a number from 1 to {len(shelf)} (the '* attachment N' lines)")
        return
    attachment = shelf[int(number_text) - 1]
    target = _target(path_text.strip(), attachment)
    if target.exists():
        session.emit(f"! save: {target} exists; give another PATH")
        return
    frame = {"action": "download", "room": attachment.room, "key": attachment.key}
    answer = await session.request(frame, quiet=True)
    if answer is None or answer.get("type") != "download_url":
        reason = f"{answer.get('code')}: {answer.get('message')}" if answer else "no reply"
        session.emit(f"! save refused ({reason})")
        return
    try:
        content = await fetch(answer["url"])
    except TransferError as error:
        session.emit(f"! save: {error}")
        return
    with target.open("xb") as sink:  # "x": a file that appeared meanwhile is not replaced
        sink.write(content)
    session.emit(f"* saved {len(content)} bytes to {target} (from {answer.get('region')})")
