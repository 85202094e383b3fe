"""The chat data model shared by storage, the bus and the handlers (docs/contracts.md):
room names, senders, chat messages and presence events, with their bus event
schemas (``chat.message``, ``chat.presence``) and how clients see them.

It depends on no wire-frame code, so the storage modules can use it without the
protocol: validating client frames is :mod:`chat.frames`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from chat.ids import is_valid_id
from chat.json_codec import compact_json

__all__ = [
    "MAX_USER_ID_CHARS",
    "PRESENCE_EVENTS",
    "ROOM_PATTERN",
    "ChatMessage",
    "PresenceEvent",
    "Sender",
    "valid_room",
]

ROOM_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
PRESENCE_EVENTS: Final = frozenset({"joined", "left"})
MAX_USER_ID_CHARS: Final = 128


def valid_room(value: object) -> bool:
    return isinstance(value, str) and ROOM_PATTERN.fullmatch(value) is not None


# --- chat messages (bus events, history, ``message`` frames) -----------------


@dataclass(frozen=True, slots=True)
class Sender:
    user_id: str
    name: str | None
    region: str

    def to_dict(self) -> dict[str, str]:
        out = {"userId": self.user_id}
        if self.name:
            out["name"] = self.name
        out["region"] = self.region
        return out

    @staticmethod
    def from_dict(value: object) -> Sender:
        if not isinstance(value, dict):
            raise ValueError("sender must be an object")
        user_id, name, region = value.get("userId"), value.get("name"), value.get("region")
        if not isinstance(user_id, str) or not user_id:
            raise ValueError("sender.userId must be a non-empty string")
        if name is not None and not isinstance(name, str):
            raise ValueError("sender.name must be a string")
        if not isinstance(region, str) or not region:
            raise ValueError("sender.region must be a non-empty string")
        return Sender(user_id=user_id, name=name or None, region=region)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message, as published on the bus and kept in history."""

    room: str
    id: str
    sender: Sender
    body: Any
    sent_at: str
    origin_region: str

    def fields(self) -> dict[str, Any]:
        """The message as clients see it (``message`` frame minus ``type``)."""
        return {
            "room": self.room,
            "id": self.id,
            "sender": self.sender.to_dict(),
            "body": self.body,
            "sentAt": self.sent_at,
        }

    def to_frame(self) -> dict[str, Any]:
        return {"type": "message", **self.fields()}

    def detail(self) -> dict[str, Any]:
        """The ``detail`` of the ``chat.message`` bus event (docs/contracts.md)."""
        return {"originRegion": self.origin_region, **self.fields()}

    @staticmethod
    def from_detail(detail: object) -> ChatMessage:
        """Validate a ``chat.message`` event detail; ValueError says what is wrong."""
        if not isinstance(detail, dict):
            raise ValueError("detail must be an object")
        room, id_ = detail.get("room"), detail.get("id")
        origin, sent_at = detail.get("originRegion"), detail.get("sentAt")
        if not valid_room(room):
            raise ValueError("detail.room is not a valid room name")
        if not is_valid_id(id_):
            raise ValueError("detail.id is not a message id")
        if not isinstance(origin, str) or not origin:
            raise ValueError("detail.originRegion must be a non-empty string")
        if not isinstance(sent_at, str) or not sent_at:
            raise ValueError("detail.sentAt must be a non-empty string")
        if "body" not in detail:
            raise ValueError("detail.body is missing")
        try:  # it is stored and posted as UTF-8 JSON; refuse now, not after the write
            compact_json(detail["body"]).encode("utf-8")
        except (UnicodeEncodeError, RecursionError, ValueError):
            raise ValueError("detail.body is not encodable as UTF-8 JSON") from None
        return ChatMessage(
            room=str(room),
            id=str(id_),
            sender=Sender.from_dict(detail.get("sender")),
            body=detail["body"],
            sent_at=sent_at,
            origin_region=origin,
        )


# --- presence (``chat.presence`` bus events, ``member`` frames) --------------


def _ms(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ValueError("detail.at must be epoch milliseconds (a non-negative integer)")
    return value


@dataclass(frozen=True, slots=True)
class PresenceEvent:
    """A user's presence transition in one region, as published on the bus.

    ``refresh`` marks a lease renewal (``ping``): remote regions extend the
    user's presence item; it causes a ``member`` frame only where the user
    was not shown (its "joined" was lost), never in the origin region.
    """

    origin_region: str
    room: str
    event: str  # "joined" | "left"
    member: Sender
    at: int  # epoch ms in the origin region: orders events of one user
    refresh: bool = False

    def detail(self) -> dict[str, Any]:
        """The ``detail`` of the ``chat.presence`` bus event (docs/contracts.md)."""
        out: dict[str, Any] = {
            "originRegion": self.origin_region,
            "room": self.room,
            "event": self.event,
            "member": self.member.to_dict(),
            "at": self.at,
        }
        if self.refresh:
            out["refresh"] = True
        return out

    def to_frame(self, current: dict[str, str] | None = None) -> dict[str, Any]:
        """The ``member`` frame pushed to the room's connections.

        ``current`` is how ``presence`` shows the user *after* the event: if
        the user is still (or again) present - e.g. a "left" from one region
        while connected in another - the frame is "joined" with that entry, so
        the frames always describe changes of the ``presence`` list (one
        entry per user). None: the user is gone, "left" with the event's member.
        """
        if current is not None:
            return {"type": "member", "room": self.room, "event": "joined", "member": current}
        return {
            "type": "member",
            "room": self.room,
            "event": "left",
            "member": self.member.to_dict(),
        }

    @staticmethod
    def from_detail(detail: object) -> PresenceEvent:
        """Validate a ``chat.presence`` event detail; ValueError says what is wrong."""
        if not isinstance(detail, dict):
            raise ValueError("detail must be an object")
        room, event, origin = detail.get("room"), detail.get("event"), detail.get("originRegion")
        if not isinstance(origin, str) or not origin:
            raise ValueError("detail.originRegion must be a non-empty string")
        if not valid_room(room):
            raise ValueError("detail.room is not a valid room name")
        if event not in PRESENCE_EVENTS:
            raise ValueError("detail.event must be 'joined' or 'left'")
        member = Sender.from_dict(detail.get("member"))
        if len(member.user_id) > MAX_USER_ID_CHARS:
            raise ValueError("detail.member.userId is too long")
        refresh = detail.get("refresh", False)
        if not isinstance(refresh, bool):
            raise ValueError("detail.refresh must be a boolean")
        return PresenceEvent(
            origin_region=origin,
            room=str(room),
            event=str(event),
            member=member,
            at=_ms(detail.get("at")),
            refresh=refresh,
        )
