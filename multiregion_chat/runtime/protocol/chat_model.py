"""The chat data model shared by storage, the bus and the handlers (docs/contracts.md):
room names, senders, chat messages and presence events, with their bus event
schemas (``chat.message``, ``chat.presence``) and how clients see them.

It depends on no wire-frame code, so the storage modules can use it without the
protocol: validating client frames is :mod:`runtime.protocol.frames`.
"""

from __future__ import annotations

import re
from typing import Any, Final, NamedTuple

from multiregion_chat.runtime.protocol.claims import (
    MAX_NAME_CHARS,
    MAX_USER_ID_CHARS,
    valid_name,
    valid_user_id,
)
from multiregion_chat.runtime.protocol.ids import is_valid_id
from multiregion_chat.runtime.protocol.json_codec import (
    MAX_BODY_DEPTH,
    compact_json,
    value_too_deep,
)

__all__ = [
    "MAX_USER_ID_CHARS",
    "PRESENCE_EVENTS",
    "ROOM_PATTERN",
    "ChatMessage",
    "PresenceEvent",
    "Sender",
    "check_not_future",
    "check_origin",
    "valid_room",
]

ROOM_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
PRESENCE_EVENTS: Final = frozenset({"joined", "left"})
REGION_PATTERN: Final = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}", re.ASCII)


def valid_room(value: object) -> bool:
    return isinstance(value, str) and ROOM_PATTERN.fullmatch(value) is not None


# --- chat messages (bus events, history, ``message`` frames) -----------------


class Sender(NamedTuple):
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
    def from_dict(value: object, what: str = "sender") -> Sender:
        """Validate a sender/member from a bus event with the token's identity rules
        (runtime.protocol.claims: length limits and control characters, the same as a token's)."""
        if not isinstance(value, dict):
            raise ValueError(f"{what} must be an object")
        user_id, name, region = value.get("userId"), value.get("name"), value.get("region")
        if not valid_user_id(user_id):
            raise ValueError(
                f"{what}.userId must be 1-{MAX_USER_ID_CHARS} characters, no control characters"
            )
        if not valid_name(name):
            raise ValueError(
                f"{what}.name must be at most {MAX_NAME_CHARS} characters, no control characters"
            )
        if not isinstance(region, str) or REGION_PATTERN.fullmatch(region) is None:
            raise ValueError(f"{what}.region must be an AWS region name")
        return Sender(user_id=str(user_id), name=str(name) if name else None, region=region)


def check_origin(
    origin_region: str, sender_region: str, regions: frozenset[str], what: str = "sender"
) -> None:
    """A bus event comes from a configured region and speaks for a user there."""
    if origin_region not in regions:
        raise ValueError(f"detail.originRegion {origin_region[:32]!r} is not a configured region")
    if sender_region != origin_region:
        raise ValueError(f"detail.{what}.region must equal detail.originRegion")


def check_not_future(at_ms: int, now_ms: int, skew_ms: int, what: str) -> None:
    """Refuse a timestamp later than now plus the allowed clock skew (a forgery
    that would order after every genuine event)."""
    if at_ms > now_ms + skew_ms:
        raise ValueError(f"{what} is {at_ms - now_ms} ms in the future")


class ChatMessage(NamedTuple):
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
    def from_detail(detail: object, max_body_bytes: int) -> ChatMessage:
        """Validate a ``chat.message`` event detail; ValueError says what is wrong.

        ``max_body_bytes``: the ``send`` limit (``MAX_BODY_BYTES``), measured
        the same way (compact UTF-8 JSON). A bigger body from the bus would be
        stored, and then be a history page of its own that no reply can hold.
        """
        if not isinstance(detail, dict):
            raise ValueError("detail must be an object")
        room, id_ = detail.get("room"), detail.get("id")
        origin, sent_at = detail.get("originRegion"), detail.get("sentAt")
        if not valid_room(room):
            raise ValueError("detail.room is not a valid room name")
        if not is_valid_id(id_):
            raise ValueError("detail.id is not a message id")
        if not isinstance(origin, str) or REGION_PATTERN.fullmatch(origin) is None:
            raise ValueError("detail.originRegion must be an AWS region name")
        if not isinstance(sent_at, str) or not 1 <= len(sent_at) <= 40:
            raise ValueError("detail.sentAt must be a timestamp string")
        if "body" not in detail:
            raise ValueError("detail.body is missing")
        if value_too_deep(detail["body"], MAX_BODY_DEPTH):
            raise ValueError(f"detail.body nests deeper than {MAX_BODY_DEPTH} levels")
        try:  # it is stored and posted as UTF-8 JSON; refuse now, not after the write
            body_bytes = len(compact_json(detail["body"]).encode("utf-8"))
        except (UnicodeEncodeError, RecursionError, ValueError):
            # ValueError: NaN/Infinity (allow_nan=False) among others.
            raise ValueError("detail.body is not encodable as UTF-8 JSON") from None
        if body_bytes > max_body_bytes:
            raise ValueError(
                f"detail.body is {body_bytes} bytes as compact JSON; the limit is {max_body_bytes}"
            )
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


class PresenceEvent(NamedTuple):
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
        if not isinstance(origin, str) or REGION_PATTERN.fullmatch(origin) is None:
            raise ValueError("detail.originRegion must be an AWS region name")
        if not valid_room(room):
            raise ValueError("detail.room is not a valid room name")
        if event not in PRESENCE_EVENTS:
            raise ValueError("detail.event must be 'joined' or 'left'")
        member = Sender.from_dict(detail.get("member"), "member")
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
