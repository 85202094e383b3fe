"""The team's support room, shared by its app and its client tooling."""

from __future__ import annotations

SUPPORT_ROOM = "help"


def support_chat_command(region: str, user: str) -> list[str]:
    """The project's CLI client in the support room (``pip install 'multiregion-chat[client]'``
    installs it)."""
    return [
        "python",
        "-m",
        "multiregion_chat.clients.chat",
        "--region",
        region,
        "--room",
        SUPPORT_ROOM,
        "--user",
        user,
    ]
