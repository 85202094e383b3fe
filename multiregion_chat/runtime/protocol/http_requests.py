"""``POST /rooms/{room}/messages`` of the HTTP fallback (docs/protocol.md, "HTTP fallback"):
the same field rules and error codes as the ``send`` frame (:mod:`runtime.protocol.frames`)."""

from __future__ import annotations

from typing import Any

from multiregion_chat.runtime.protocol.frames import (
    BAD_REQUEST,
    FrameFields,
    ProtocolError,
    Send,
    check_frame_size,
    decode_payload,
)

__all__ = ["decode_http_body", "http_post_request", "parse_http_post"]


def decode_http_body(
    raw: str | bytes | None, *, max_body_bytes: int, is_base64: bool
) -> dict[str, Any]:
    """The POST body as a JSON object, decoded once; its size is checked before it is read.

    Not JSON, not an object -> ``bad_request``; longer than a frame may be
    (:func:`runtime.protocol.frames.max_frame_chars`) -> ``too_large``.
    """
    check_frame_size(raw, max_body_bytes, what="request body")
    obj = decode_payload(raw, is_base64, what="request body")
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "request body must be a JSON object")
    return obj


def http_post_request(obj: dict[str, Any], *, room: object, max_body_bytes: int) -> Send:
    """The ``send`` of a decoded body: the room, then ``body`` (``too_large`` past
    ``max_body_bytes`` as compact JSON). Other keys are ignored."""
    checked_room = FrameFields({"room": room}, None).room()
    return Send(room=checked_room, body=FrameFields(obj, None).body(max_body_bytes))


def parse_http_post(
    raw: str | bytes | None, *, room: object, max_body_bytes: int, is_base64: bool = False
) -> Send:
    """Validate a whole ``POST /rooms/{room}/messages``: :func:`decode_http_body`, then
    :func:`http_post_request`."""
    obj = decode_http_body(raw, max_body_bytes=max_body_bytes, is_base64=is_base64)
    return http_post_request(obj, room=room, max_body_bytes=max_body_bytes)
