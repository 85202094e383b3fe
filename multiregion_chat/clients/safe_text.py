"""Text from the server made safe for a terminal: controls and bidi marks shown, not obeyed.

Message bodies, names, user ids and room names come from other users. Printed raw, a body could
move the cursor or rewrite earlier lines (CSI), set the window title or write the clipboard
(OSC 52), or reorder what the reader sees (bidi overrides), and a newline inside it could forge
a line that looks like another user's message. Every such character is replaced by a visible
escape (``\\x1b``, ``\\n``, ``\\u202e``); everything else (other scripts, emoji) is left alone.
"""

from __future__ import annotations

__all__ = ["UNSAFE_CHARACTERS", "printable", "printable_lines"]

_C0 = range(0x00, 0x20)  # includes ESC, BEL, BS, CR, LF, TAB
_DEL_AND_C1 = range(0x7F, 0xA0)  # DEL, and C1 (U+009B is a one-character CSI)
_BIDI = (
    *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
    *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
    0x200E,  # LRM
    0x200F,  # RLM
    0x061C,  # ALM
)
_LINE_BREAKS = (0x2028, 0x2029)  # LINE / PARAGRAPH SEPARATOR: a new line in some terminals

UNSAFE_CHARACTERS: frozenset[int] = frozenset((*_C0, *_DEL_AND_C1, *_BIDI, *_LINE_BREAKS))


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_TABLE = {code: _escape(code) for code in UNSAFE_CHARACTERS}
_TABLE_KEEPING_NEWLINES = {code: text for code, text in _TABLE.items() if code != ord("\n")}


def printable(text: str) -> str:
    """``text`` with every control, bidi and line-break character as a visible escape."""
    return text.translate(_TABLE)


def printable_lines(text: str) -> str:
    """:func:`printable`, but the newlines between lines stay (for output already made of
    escaped fields)."""
    return text.translate(_TABLE_KEEPING_NEWLINES)
