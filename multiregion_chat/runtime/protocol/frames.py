"""Client frames and server frames of the wire protocol (docs/protocol.md).

The chat data the frames carry (rooms, senders, messages, presence events)
is :mod:`runtime.protocol.chat_model`; ``POST /rooms/{room}/messages`` is
:mod:`runtime.protocol.http_requests`;
the strict JSON both decode is :mod:`runtime.protocol.json_codec`.

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

import binascii
from typing import Any, Final, NamedTuple

from multiregion_chat.runtime.protocol.actions import BUILTIN_ACTIONS
from multiregion_chat.runtime.protocol.attachment_requests import (
    Download,
    Upload,
    parse_download,
    parse_upload,
)
from multiregion_chat.runtime.protocol.chat_model import valid_room
from multiregion_chat.runtime.protocol.claims import MAX_TOKEN_CHARS
from multiregion_chat.runtime.protocol.ids import is_valid_id
from multiregion_chat.runtime.protocol.json_codec import (
    MAX_DEPTH,
    TooDeepError,
    compact_json,
    loads_strict,
)

__all__ = [
    "ACTIONS",
    "Download",
    "FrameFields",
    "History",
    "Join",
    "Leave",
    "Ping",
    "Presence",
    "ProtocolError",
    "Refresh",
    "Request",
    "Send",
    "Upload",
    "check_frame_size",
    "decode_payload",
    "error_frame",
    "frame",
    "history_limit",
    "max_frame_chars",
    "parse_client_frame",
    "parse_envelope",
    "parse_request",
]

MAX_REF_CHARS: Final = 64
DEFAULT_HISTORY_LIMIT: Final = 50
MAX_HISTORY_LIMIT: Final = 100
# Member pages (``presence``, ``joined.members``): at most this many entries,
# and the default when no limit is sent; 0 asks for the count only.
MAX_MEMBER_LIMIT: Final = 500
MAX_CURSOR_CHARS: Final = 128  # a cursor is a user id (the last one of the page)
ACTIONS: Final = frozenset(BUILTIN_ACTIONS)
# A fresh token on ``refresh``: the verifier's own limit (one definition).
MAX_REFRESH_TOKEN_CHARS: Final = MAX_TOKEN_CHARS
# ``action``, ``ref``, ``room``, ``seq`` and the JSON around them, with room to spare.
FRAME_ENVELOPE_CHARS: Final = 4096
MAX_ESCAPE_CHARS: Final = 6  # the longest JSON spelling of one byte: \u00XX

# Error codes (docs/protocol.md)
BAD_REQUEST: Final = "bad_request"
UNKNOWN_ACTION: Final = "unknown_action"
TOO_LARGE: Final = "too_large"
NOT_MEMBER: Final = "not_member"
FORBIDDEN: Final = "forbidden"
RATE_LIMITED: Final = "rate_limited"
INTERNAL: Final = "internal"
TOKEN_EXPIRED: Final = "token_expired"
TOKEN_INVALID: Final = "token_invalid"


class ProtocolError(Exception):
    """A request the server answers with an ``error`` frame."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref

    def to_frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.ref)


class Join(NamedTuple):
    room: str
    after: str | None = None
    member_limit: int = MAX_MEMBER_LIMIT  # size of the first page of ``members``


class Leave(NamedTuple):
    room: str


class Send(NamedTuple):
    room: str
    body: Any


class History(NamedTuple):
    room: str
    after: str | None = None
    limit: int = DEFAULT_HISTORY_LIMIT


class Presence(NamedTuple):
    room: str
    limit: int = MAX_MEMBER_LIMIT
    cursor: str | None = None  # ``next`` of the previous page


class Ping(NamedTuple):
    pass


class Refresh(NamedTuple):
    token: str

    def __repr__(self) -> str:
        return "Refresh(token=...)"  # never in a log line


Request = Join | Leave | Send | History | Presence | Ping | Refresh | Upload | Download


def frame(type_: str, ref: str | None = None, **fields: Any) -> dict[str, Any]:
    """A server frame ``{"type": type_, **fields}``, plus ``ref`` when given."""
    out: dict[str, Any] = {"type": type_, **fields}
    if ref is not None:
        out["ref"] = ref
    return out


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return frame("error", ref, code=code, message=message)


def decode_payload(raw: str | bytes | None, is_base64: bool, what: str = "frame") -> Any:
    if raw is None:
        raise ProtocolError(BAD_REQUEST, f"{what} is empty; expected a JSON object")
    try:
        return loads_strict(raw, is_base64)
    except TooDeepError:
        raise ProtocolError(
            BAD_REQUEST, f"{what} nests deeper than {MAX_DEPTH} arrays/objects"
        ) from None
    except (ValueError, binascii.Error, RecursionError):
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise ProtocolError(BAD_REQUEST, f"{what} is not valid JSON") from None


def history_limit(limit: object, ref: str | None = None) -> int:
    """The ``limit`` of a history read: the ``history`` frame's and ``GET .../messages``' alike.

    Absent (None) -> ``DEFAULT_HISTORY_LIMIT``; else an integer from 1 to
    ``MAX_HISTORY_LIMIT`` or ``bad_request`` (HttpHandler turns a query
    string's digits into an int first; a frame's ``"5"`` is no integer).
    """
    if limit is None:
        return DEFAULT_HISTORY_LIMIT
    # bool is a subclass of int in Python; JSON true is not a number.
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_HISTORY_LIMIT:
        raise ProtocolError(
            BAD_REQUEST, f"'limit' must be an integer from 1 to {MAX_HISTORY_LIMIT}", ref
        )
    return limit


class FrameFields:
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
        return history_limit(self.obj.get("limit"), self.ref)

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


def parse_envelope(
    raw: str | bytes | None, *, is_base64: bool = False
) -> tuple[dict[str, Any], str | None, str]:
    """``(frame, ref, action)`` of any client frame, built-in or a team's own action.

    The first checks of every frame, in the protocol's order: a JSON object,
    then ``ref`` (a string of at most ``MAX_REF_CHARS``), then ``action`` (a
    string); errors raised after the ``ref`` check echo it.
    """
    obj = decode_payload(raw, is_base64)
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object")
    ref = obj.get("ref")
    if ref is not None and not (isinstance(ref, str) and len(ref) <= MAX_REF_CHARS):
        raise ProtocolError(
            BAD_REQUEST, f"'ref' must be a string of at most {MAX_REF_CHARS} characters"
        )
    if "action" not in obj:
        raise ProtocolError(BAD_REQUEST, "missing field 'action'", ref)
    action = obj["action"]
    if not isinstance(action, str):
        raise ProtocolError(BAD_REQUEST, "'action' must be a string", ref)
    return obj, ref, action


def max_frame_chars(max_body_bytes: int) -> int:
    """The longest raw frame (or HTTP body) read at all: ``too_large`` beyond, before any parse.

    Room for the largest field a frame may carry (a body of ``max_body_bytes``
    or a ``refresh`` token) written as escaped as JSON allows (``\\u00XX``: six
    characters for each byte the compact measure counts), plus the envelope, so
    no valid frame is refused. Parsing is linear (:mod:`runtime.protocol.json_codec`), so
    this bounds the CPU a frame can cost before anything else about it is known.
    """
    return MAX_ESCAPE_CHARS * max(max_body_bytes, MAX_REFRESH_TOKEN_CHARS) + FRAME_ENVELOPE_CHARS


def check_frame_size(raw: str | bytes | None, max_body_bytes: int, what: str = "frame") -> None:
    """``too_large`` (no ``ref``: nothing was read) when ``raw`` is longer than
    :func:`max_frame_chars`."""
    limit = max_frame_chars(max_body_bytes)
    if raw is not None and len(raw) > limit:
        raise ProtocolError(
            TOO_LARGE, f"{what} is {len(raw)} characters; the limit is {limit}", None
        )


def parse_client_frame(
    raw: str | bytes | None, *, max_body_bytes: int, is_base64: bool = False
) -> tuple[Request, str | None]:
    """Validate one client frame; returns ``(request, ref)`` or raises ProtocolError."""
    check_frame_size(raw, max_body_bytes)
    obj, ref, action = parse_envelope(raw, is_base64=is_base64)
    return parse_request(obj, ref, action, max_body_bytes=max_body_bytes), ref


def parse_request(
    obj: dict[str, Any], ref: str | None, action: str, *, max_body_bytes: int
) -> Request:
    """The request of a decoded envelope (:func:`parse_envelope`); raises ProtocolError."""
    fields = FrameFields(obj, ref)
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
        case "refresh":
            token = obj.get("token")
            if not isinstance(token, str) or not 1 <= len(token) <= MAX_REFRESH_TOKEN_CHARS:
                raise fields.bad("'token' must be a token string (a JWT)")
            request = Refresh(token=token)
        case "upload":
            request = parse_upload(fields)
        case "download":
            request = parse_download(fields)
        case _:
            shown = action if len(action) <= 64 else action[:64] + "..."
            raise ProtocolError(
                UNKNOWN_ACTION,
                f"unknown action {shown!r}; expected one of {', '.join(sorted(ACTIONS))}",
                ref,
            )
    return request
