"""The lines a user types: ``/command argument`` or a message (one parser for both transports).

The WebSocket session (clients/session.py) and the HTTP fallback (clients/http_client.py) run
the same commands; what a transport cannot do it answers itself (``/who`` over HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass

HELP = (
    "commands: /join ROOM  /leave [ROOM]  /history [N]  /who [NEXT]  /ping  /raw JSON"
    "  /upload PATH  /save N [PATH]  /sendfile  /quit; other lines are sent to the current room"
)

#: Spellings accepted for a verb.
ALIASES = {"exit": "quit", "presence": "who"}
#: Verbs that mean nothing without an argument.
NEEDS_ARGUMENT = frozenset({"join", "raw", "upload", "save"})
VERBS = frozenset(
    {"quit", "join", "leave", "history", "who", "ping", "raw", "upload", "save", "sendfile"}
)


@dataclass(frozen=True, slots=True)
class Command:
    """``verb`` is ``send`` (the line is a message), one of VERBS, or ``help`` (anything else)."""

    verb: str
    argument: str = ""

    @property
    def limit(self) -> int | None:
        """``/history N``: N when it is a number."""
        return int(self.argument) if self.argument.isdigit() else None


def parse_command(line: str) -> Command | None:
    """The command a typed line asks for; None for a blank line."""
    line = line.rstrip("\n")
    if not line.strip():
        return None
    if not line.startswith("/"):
        return Command("send", line)
    verb, _, argument = line[1:].partition(" ")
    verb, argument = ALIASES.get(verb, verb), argument.strip()
    if verb not in VERBS or (verb in NEEDS_ARGUMENT and not argument):
        return Command("help")
    return Command(verb, argument)
