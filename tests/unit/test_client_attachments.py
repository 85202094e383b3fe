"""The CLI's attachment pieces without a server: numbering, where /save writes, the commands."""

from __future__ import annotations

from pathlib import Path

from multiregion_chat.clients.attachments import Attachment, AttachmentShelf, _target
from multiregion_chat.clients.commands import Command, parse_command


def test_attachments_are_numbered_as_shown_and_other_messages_are_not() -> None:
    shelf = AttachmentShelf()
    assert shelf.note({"type": "message", "room": "r", "body": "text"}) is None
    assert shelf.note({"room": "r", "body": {"attachment": "not an object"}}) is None
    reference = {"key": "rooms/r/us-east-1/u/1", "name": "a.png", "size": 3}
    line = shelf.note({"room": "r", "body": {"attachment": reference}})
    assert line == "* attachment 1: a.png, 3 bytes; /save 1 to download it"
    second = shelf.note({"room": "q", "body": {"attachment": {"key": "rooms/q/x/u/2"}}})
    assert second == "* attachment 2: a file; /save 2 to download it"
    assert [a.room for a in shelf.items] == ["r", "q"]


def test_save_writes_only_the_last_part_of_a_name_another_user_chose(tmp_path: Path) -> None:
    hostile = Attachment("r", "rooms/r/us-east-1/u/01ID", "../../etc/passwd", 1)
    assert _target("", hostile) == Path("passwd")
    assert _target(str(tmp_path), hostile) == tmp_path / "passwd"
    assert _target(str(tmp_path / "x.bin"), hostile) == tmp_path / "x.bin"
    nameless = Attachment("r", "rooms/r/us-east-1/u/01ID", None, None)
    assert _target("", nameless) == Path("01ID")


def test_upload_and_save_need_an_argument() -> None:
    assert parse_command("/upload a.txt") == Command("upload", "a.txt")
    assert parse_command("/save 2 out.bin") == Command("save", "2 out.bin")
    assert parse_command("/upload") == Command("help")
    assert parse_command("/save") == Command("help")


def test_sendfile_takes_no_argument() -> None:
    assert parse_command("/sendfile") == Command("sendfile")
