"""Human-readable lines for server frames: what the CLI client prints."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from multiregion_chat.clients.safe_text import printable


def _s(value: Any) -> str:
    """A field from the server, as text that cannot steer the terminal (clients/safe_text.py)."""
    return printable(str(value))


def _clock(sent_at: str | None) -> str:
    if not sent_at:
        return "--:--:--"
    try:
        return datetime.fromisoformat(sent_at.replace("Z", "+00:00")).strftime("%H:%M:%S")
    except (TypeError, ValueError, AttributeError):
        return _s(sent_at)


def _who(member: Any) -> str:
    if not isinstance(member, dict):
        return _s(member)
    user = member.get("userId", "?")
    name = member.get("name")
    label = f"{_s(name)} ({_s(user)})" if name and name != user else _s(user)
    return f"{label}@{_s(member.get('region', '?'))}"


def _page_note(frame: dict[str, Any], next_key: str) -> str:
    """What a member page leaves out: more pages, the count, a quiet (big) room."""
    note = ""
    if frame.get(next_key):
        count = _s(frame.get("memberCount", "?"))
        note += f" ... ({count} in all; /who {_s(frame[next_key])} for more)"
    if frame.get("live") is False:
        count = _s(frame.get("memberCount", "?"))
        note += f"\n* big room ({count} members): no live join/leave events"
    return note


def _message(frame: dict[str, Any], verbose: bool) -> str | None:
    body = frame.get("body")
    text = body if isinstance(body, str) else json.dumps(body)
    sender = frame.get("sender") or {}
    room = _s(frame.get("room", ""))
    return f"[{_clock(frame.get('sentAt'))}] #{room} {_who(sender)}: {_s(text)}"


def _joined(frame: dict[str, Any], verbose: bool) -> str | None:
    members = ", ".join(_who(m) for m in frame.get("members") or []) or "nobody"
    room = _s(frame.get("room", ""))
    lines = [f"* joined #{room}; here: {members}{_page_note(frame, 'membersNext')}"]
    lines += [render_entry(m) for m in frame.get("missed") or []]
    if frame.get("more"):
        lines.append("* (more were missed than shown; /history for older ones)")
    return "\n".join(lines)


def _presence(frame: dict[str, Any], verbose: bool) -> str | None:
    members = ", ".join(_who(m) for m in frame.get("members") or []) or "nobody"
    return f"* in #{_s(frame.get('room', ''))}: {members}{_page_note(frame, 'next')}"


def _members(frame: dict[str, Any], verbose: bool) -> str | None:
    # A room switched between live member events and none.
    count = _s(frame.get("memberCount", "?"))
    mode = "on" if frame.get("live") else "off (big room; /who to list)"
    return f"* #{_s(frame.get('room', ''))} has {count} members; live join/leave events {mode}"


def _history(frame: dict[str, Any], verbose: bool) -> str | None:
    lines = [render_entry(m) for m in frame.get("messages") or []]
    return "\n".join(lines) if lines else f"* no history in #{_s(frame.get('room', ''))}"


_BY_TYPE: dict[str, Callable[[dict[str, Any], bool], str | None]] = {
    "message": _message,
    "joined": _joined,
    "left": lambda frame, verbose: f"* left #{_s(frame.get('room', ''))}",
    "member": lambda frame, verbose: (
        f"* {_who(frame.get('member') or {})} {_s(frame.get('event', '?'))}"
        f" #{_s(frame.get('room', ''))}"
    ),
    "presence": _presence,
    "members": _members,
    "history": _history,
    "error": lambda frame, verbose: f"! {_s(frame.get('code'))}: {_s(frame.get('message'))}",
    "ack": lambda frame, verbose: f"  (sent {_s(frame.get('id'))})" if verbose else None,
    "pong": lambda frame, verbose: "* pong",
}


def render(frame: Any, verbose: bool = False) -> str | None:
    """One human-readable line (or a few) for a server frame; None to show nothing."""
    if not isinstance(frame, dict):
        return f"? {json.dumps(frame)}"
    by_type = _BY_TYPE.get(str(frame.get("type")))
    if by_type is not None:
        return by_type(frame, verbose)
    if "message" in frame and "connectionId" in frame:  # an API Gateway error
        return f"! gateway: {_s(frame['message'])}"
    return f"? {json.dumps(frame)}"


def render_entry(message: Any) -> str:
    """A ``joined.missed`` / ``history`` entry: a ``message`` frame without ``type``."""
    return render({**message, "type": "message"} if isinstance(message, dict) else message) or ""
