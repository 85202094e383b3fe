"""Limits on what one reply and one connection may hold (docs/protocol.md, "Limits").

* Replies fit API Gateway's WebSocket message limit: "Message payload size
  128 KB" (API Gateway quotas for configuring and running a WebSocket API;
  API Gateway itself splits what it sends into frames of at most 32 KB).
  ``MAX_REPLY_BYTES`` takes 128 KB as decimal kilobytes, the stricter reading,
  and replies are encoded as :func:`encode_reply` does (compact UTF-8 JSON,
  like the fan-out's frames). :func:`fit_messages` keeps the longest prefix of
  a message list that fits and says whether it cut, so ``history`` and
  ``joined.missed`` end early with ``more: true`` and the client asks again
  from the last id it got. ``maxBodyBytes`` is capped (infra/config.py) so one
  message at the largest body always fits, with a member page beside it, and
  bus events over it are dropped (EventBusMessageHandler). A stored message
  that does not fit even alone (from before that check, or a limit lowered
  since) is replaced by :func:`omitted_body`, the message without its body:
  a page never comes back empty with ``more: true``, which would send the
  client asking for the same page until the message expires.
* A connection may be in at most ``MAX_ROOMS_PER_CONNECTION`` rooms: ``ping``
  renews every membership (an UpdateItem per room) and ``$disconnect`` removes
  them (a Query and a PutEvents per room), so the cap bounds what one frame can
  make the server do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from multiregion_chat.runtime.protocol.frames import ProtocolError, error_frame

__all__ = [
    "MAX_REPLY_BYTES",
    "RATE_LIMITED",
    "TOO_MANY_ROOMS",
    "RateLimitedFrameError",
    "TooManyRoomsError",
    "check_room_cap",
    "encode_reply",
    "encoded_size",
    "fit_messages",
    "omitted_body",
]

MAX_REPLY_BYTES: Final = 128_000
# ``bodyOmitted`` of a message shown without its body (docs/protocol.md).
BODY_TOO_LARGE: Final = "too_large"
RATE_LIMITED: Final = "rate_limited"
TOO_MANY_ROOMS: Final = "too_many_rooms"


def encode_reply(frame: dict[str, Any]) -> str:
    """A server frame as sent: compact JSON, UTF-8 (not ASCII-escaped, so no 6-byte ``\\uXXXX``)."""
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encoded_size(value: Any) -> int:
    return len(encode_reply(value).encode("utf-8"))


def omitted_body(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` with ``body`` null and ``bodyOmitted: "too_large"``: its id, sender
    and time still reach the client, so the next page starts after it."""
    return {**message, "body": None, "bodyOmitted": BODY_TOO_LARGE}


def fit_messages(
    frame: dict[str, Any], key: str, messages: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """The longest prefix of ``messages`` that, as ``frame[key]``, keeps the frame
    within ``MAX_REPLY_BYTES``; and whether any message was left out.

    At least one message comes back whenever there is one: a first message
    too big for the reply on its own is sent as :func:`omitted_body`.
    """
    # "more": false is the longer spelling: the frame only shrinks when it becomes true.
    room_left = MAX_REPLY_BYTES - encoded_size({**frame, key: [], "more": False})
    kept: list[dict[str, Any]] = []
    for message in messages:
        room_left -= encoded_size(message) + 1  # the separating comma
        if room_left < 0:
            if not kept:  # ids, sender and time are bounded: this always fits
                kept.append(omitted_body(message))
            break
        kept.append(message)
    return kept, len(kept) < len(messages)


class RateLimitedFrameError(ProtocolError):
    """``rate_limited`` with its retry hint ``retryAfterMs``."""

    def __init__(self, retry_after_ms: int, message: str, ref: str | None = None) -> None:
        super().__init__(RATE_LIMITED, message, ref)
        self.retry_after_ms = retry_after_ms

    def to_frame(self) -> dict[str, Any]:
        reply = error_frame(self.code, self.message, self.ref)
        reply["retryAfterMs"] = self.retry_after_ms
        return reply


class TooManyRoomsError(ProtocolError):
    def __init__(self, cap: int, ref: str | None = None) -> None:
        super().__init__(
            TOO_MANY_ROOMS,
            f"a connection may be in at most {cap} rooms; leave one first",
            ref,
        )


def check_room_cap(rooms: frozenset[str] | set[str], room: str, cap: int, ref: str | None) -> None:
    """TooManyRoomsError when joining ``room`` would put the connection over ``cap``.

    Re-joining a room the connection is already in is always allowed. This is
    the cheap early answer from the META read ``join`` makes anyway; the write
    itself is conditioned on the cap too (``connection_store.join_room``), so
    two joins racing on one connection cannot both pass.
    """
    if room not in rooms and len(rooms) >= cap:
        raise TooManyRoomsError(cap, ref)
