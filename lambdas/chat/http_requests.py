"""``POST /rooms/{room}/messages`` of the HTTP fallback (docs/protocol.md, "HTTP fallback"):
the same field rules and error codes as the ``send`` frame (:mod:`chat.frames`)."""

from __future__ import annotations

from chat.frames import BAD_REQUEST, FrameFields, ProtocolError, Send, decode_payload

__all__ = ["parse_http_post"]


def parse_http_post(
    raw: str | bytes | None, *, room: object, max_body_bytes: int, is_base64: bool = False
) -> Send:
    """Validate ``POST /rooms/{room}/messages``: the room, then ``{"body": ...}``.

    The same rules (and error codes) as the ``send`` frame: bad room, not
    JSON, not an object or no ``body`` -> ``bad_request``; a body whose compact
    encoding exceeds ``max_body_bytes`` -> ``too_large``. Other keys are ignored.
    """
    fields = FrameFields({"room": room}, None)
    checked_room = fields.room()
    obj = decode_payload(raw, is_base64, what="request body")
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_REQUEST, "request body must be a JSON object")
    return Send(room=checked_room, body=FrameFields(obj, None).body(max_body_bytes))
