"""The wire protocol (docs/protocol.md): client frame validation, server frames.

Validation is plain Python rather than Powertools Parser/pydantic models: the
protocol fixes the error code of each failure (``bad_request`` vs
``unknown_action`` vs ``too_large``) and forbids coercion (``"5"`` is not a
limit, ``true`` is not an integer), which is simpler to state exactly here
than to map back out of pydantic's error list; it also keeps pydantic off the
cold-start path.

Rules beyond the protocol text (see "Runtime notes" in docs/contracts.md):

* Unknown extra fields are ignored (forward compatibility).
* An optional field (``ref``, ``after``, ``limit``, ``cursor``, ``memberLimit``)
  given as ``null`` counts as absent. ``send``'s ``body`` must be present but
  may be any JSON value, ``null`` included.
* ``NaN``/``Infinity`` literals and lone surrogates are not JSON: ``bad_request``.
* Checks run in this order: JSON object -> ``ref`` -> ``action`` (missing or
  not a string: ``bad_request``; unknown: ``unknown_action``) -> fields in the
  order listed in the protocol -> body size. ``ref`` is echoed in every error
  raised after the ``ref`` check passed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Final

from chat.ids import is_valid_id

__all__ = [
    "ACTIONS",
    "PRESENCE_EVENTS",
    "ChatMessage",
    "History",
    "Join",
    "Leave",
    "Ping",
    "Presence",
    "PresenceEvent",
    "ProtocolError",
    "Request",
    "Send",
    "Sender",
    "compact_json",
    "error_frame",
    "frame",
    "parse_client_frame",
    "parse_http_post",
    "valid_room",
]

ROOM_PATTERN: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)
MAX_REF_CHARS: Final = 64
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 100
# Member pages (``presence``, ``joined.members``): at most this many entries,
# and the default when no limit is sent; 0 asks for the count only.
MAX_MEMBER_LIMIT: Final = 500
MAX_CURSOR_CHARS: Final = 128  # a cursor is a user id (the last one of the page)
ACTIONS: Final = frozenset({"join", "leave", "send", "history", "presence", "ping"})
PRESENCE_EVENTS: Final = frozenset({"joined", "left"})
MAX_USER_ID_CHARS: Final = 128

# Error codes (docs/protocol.md)
BAD_REQUEST: Final = "bad_request"
UNKNOWN_ACTION: Final = "unknown_action"
TOO_LARGE: Final = "too_large"
NOT_MEMBER: Final = "not_member"
FORBIDDEN: Final = "forbidden"
RATE_LIMITED: Final = "rate_limited"
INTERNAL: Final = "internal"


class ProtocolError(Exception):
    """A request the server answers with an ``error`` frame."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref

    def to_frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.ref)


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    after: str | None = None
    member_limit: int = MAX_MEMBER_LIMIT  # size of the first page of ``members``


@dataclass(frozen=True, slots=True)
class Leave:
    room: str


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    body: Any


@dataclass(frozen=True, slots=True)
class History:
    room: str
    after: str | None = None
    limit: int = DEFAULT_HISTORY_LIMIT


@dataclass(frozen=True, slots=True)
class Presence:
    room: str
    limit: int = MAX_MEMBER_LIMIT
    cursor: str | None = None  # ``next`` of the previous page


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Request = Join | Leave | Send | History | Presence | Ping


def compact_json(value: Any) -> str:
    """The compact encoding the size limit is measured on (and history stores)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def valid_room(value: object) -> bool:
    return isinstance(value, str) and ROOM_PATTERN.fullmatch(value) is not None


def frame(type_: str, ref: str | None = None, **fields: Any) -> dict[str, Any]:
    """A server frame ``{"type": type_, **fields}``, plus ``ref`` when given."""
    out: dict[str, Any] = {"type": type_, **fields}
    if ref is not None:
        out["ref"] = ref
    return out


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return frame("error", ref, code=code, message=message)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(raw: str | bytes | None, is_base64: bool, what: str = "frame") -> Any:
    if raw is None:
        raise ProtocolError(BAD_REQUEST, f"{what} is empty; expected a JSON object")
    try:
        if is_base64:
            raw = base64.b64decode(raw, validate=True)
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, binascii.Error, RecursionError):
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise ProtocolError(BAD_REQUEST, f"{what} is not valid JSON") from None


class _Fields:
    """Typed access to a frame's fields, raising protocol errors with the ref."""

    def __init__(self, obj: dict[str, Any], ref: str | None) -> None:
        self.obj = obj
        self.ref = ref

    def bad(self, message: str) -> ProtocolError:
        return ProtocolError(BAD_REQUEST, message, self.ref)

    def room(self) -> str:
        if "room" not in self.obj:
            raise self.bad("missing field 'room'")
        room = self.obj["room"]
        if not valid_room(room):
            raise self.bad("'room' must be a string matching ^[A-Za-z0-9_.:-]{1,64}$")
        return str(room)

    def after(self) -> str | None:
        after = self.obj.get("after")
        if after is None:
            return None
        if not is_valid_id(after):
            raise self.bad("'after' must be a message id (26 Crockford base32 characters)")
        return str(after)

    def limit(self) -> int:
        limit = self.obj.get("limit")
        if limit is None:
            return DEFAULT_HISTORY_LIMIT
        # bool is a subclass of int in Python; JSON true is not a number.
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise self.bad(f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}")
        if not 1 <= limit <= MAX_HISTORY_LIMIT:
            raise self.bad(f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}")
        return limit

    def member_limit(self, key: str) -> int:
        limit = self.obj.get(key)
        if limit is None:
            return MAX_MEMBER_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise self.bad(f"'{key}' must be an integer from 0 to {MAX_MEMBER_LIMIT}")
        if not 0 <= limit <= MAX_MEMBER_LIMIT:
            raise self.bad(f"'{key}' must be an integer from 0 to {MAX_MEMBER_LIMIT}")
        return limit

    def cursor(self) -> str | None:
        cursor = self.obj.get("cursor")
        if cursor is None:
            return None
        if not isinstance(cursor, str) or not 1 <= len(cursor) <= MAX_CURSOR_CHARS:
            raise self.bad(
                f"'cursor' must be a string of 1 to {MAX_CURSOR_CHARS} characters "
                "(the 'next' of a presence page)"
            )
        return cursor

    def body(self, max_body_bytes: int) -> Any:
        if "body" not in self.obj:
            raise self.bad("missing field 'body'")
        body = self.obj["body"]
        try:
            size = len(compact_json(body).encode("utf-8"))
        except (UnicodeEncodeError, RecursionError, ValueError):
            raise self.bad("'body' is not encodable as UTF-8 JSON") from None
        if size > max_body_bytes:
            raise ProtocolError(
                TOO_LARGE,
                f"'body' is {size} bytes as compact JSON; the limit is {max_body_bytes}",
                self.ref,
            )
        return body


def parse_client_frame(
    raw: str | bytes | None, *, max_body_bytes: int, is_base64: bool = False
) -> tuple[Request, str | None]:
    """Validate one client frame; returns ``(request, ref)`` or raises ProtocolError."""
    obj = _decode(raw, is_base64)
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    ref = obj.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS):
        raise ProtocolError(
            BAD_REQUEST, f"'ref' must be a string of at most {MAX_REF_CHARS} characters"
        )
    fields = _Fields(obj, ref)
    if "action" not in obj:
        raise fields.bad("missing field 'action'")
    action = obj["action"]
    if not isinstance(action, str):
        raise fields.bad("'action' must be a string")
    request: Request
    match action:
        case "join":
            request = Join(
                room=fields.room(),
                after=fields.after(),
                member_limit=fields.member_limit("memberLimit"),
            )
        case "leave":
            request = Leave(room=fields.room())
        case "send":
            request = Send(room=fields.room(), body=fields.body(max_body_bytes))
        case "history":
            request = History(room=fields.room(), after=fields.after(), limit=fields.limit())
        case "presence":
            request = Presence(
                room=fields.room(), limit=fields.member_limit("limit"), cursor=fields.cursor()
            )
        case "ping":
            request = Ping()
        case _:
            shown = action if len(action) <= 64 else action[:64] + "..."
            raise ProtocolError(
                UNKNOWN_ACTION,
                f"unknown action {shown!r}; expected one of {', '.join(sorted(ACTIONS))}",
                ref,
            )
    return request, ref


def parse_http_post(
    raw: str | bytes | None, *, room: object, max_body_bytes: int, is_base64: bool = False
) -> Send:
    """Validate ``POST /rooms/{room}/messages``: the room, then ``{"body": ...}``.

    The same rules (and error codes) as the ``send`` frame: bad room, not
    JSON, not an object or no ``body`` -> ``bad_request``; a body whose compact
    encoding exceeds ``max_body_bytes`` -> ``too_large``. Other keys are ignored.
    """
    fields = _Fields({"room": room}, None)
    checked_room = fields.room()
    obj = _decode(raw, is_base64, what="request body")
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "request body must be a JSON object")
    return Send(room=checked_room, body=_Fields(obj, None).body(max_body_bytes))


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
            return frame("member", room=self.room, event="joined", member=current)
        return frame("member", room=self.room, event="left", member=self.member.to_dict())

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
