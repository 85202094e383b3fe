"""HTTP fallback (handler ``runtime.handlers.http_handler.handler``): API Gateway HTTP API, payload
2.0.

Routes (docs/protocol.md, "HTTP fallback"):

* ``POST /rooms/{room}/messages`` with ``{"body": <any JSON>}`` -> 202 ``{"id"}``.
  Validated like the WebSocket ``send`` (same rules, same codes; ``too_large``
  is 413) and published exactly like it (:func:`runtime.platform.bus.publish_message`:
  same event, sender region = this region). There is no connection, so no
  membership is required. The sender is the token authorizer's user
  (``requestContext.authorizer.lambda``: ``userId``, ``name``, ``rooms``;
  docs/contracts.md, "Identity"); there is no query-string identity.
* ``GET /rooms/{room}/messages?after=<id>&limit=<1-100>&wait=<0-20>`` -> 200
  ``{"messages": [...], "more": bool}``; messages are shaped like ``history``
  entries. With ``wait`` > 0 and nothing after ``after`` it long-polls: it
  holds one of the user's ``MAX_LONG_POLLS_PER_USER`` leases (none free: 429
  ``rate_limited``) and probes cheaply, backing off from
  ``HTTP_POLL_INTERVAL_MS`` (:mod:`runtime.delivery.long_poll`), until something arrives
  or ``wait`` seconds (bounded by the invocation's remaining time minus
  ``LONG_POLL_MARGIN_MS``) pass.

Both routes charge the user's request budget (:mod:`runtime.quota.client_budget`, shared
with the user's WebSocket frames): over it, 429 ``rate_limited`` with
``Retry-After`` (seconds) and ``retryAfterMs``.

Both routes run behind the authorizer: a request without its identity is 400
``bad_request``; a room the token's ``rooms`` do not allow is 403
``forbidden`` (checked right after the room name).

``GET /health/<key>`` (the global endpoint's health check) is not served here but by
HealthHandler (``health_handler``): this function's executions are capped and
long polls hold them, which must not fail the region's health check.

Why not Powertools' ``APIGatewayHttpResolver``: it would own the two
behaviours this API needs exactly as they are and the resolver does
differently: a 405 with ``Allow`` for a known path with another method (the
resolver answers 404), and the ``$default`` catch-all route, whose room comes
from the raw path (the resolver matches its own route table and would need
the same regular expression). Every failure must also carry the protocol's
``{"code", "message"}``, so its 404/exception handlers would all be
overridden; two routes do not pay for that.

Dispatch uses ``requestContext.http.method`` and ``pathParameters.room``; when
the route is ``$default`` (a catch-all integration) the room comes from the
path ``.../rooms/<room>/messages``. Unknown path: 404, known path with another
method: 405 (``Allow: GET, POST``); both with code ``bad_request`` so that
clients only ever see the protocol's error codes. Errors are
``{"code", "message"}``; the handler never raises (unexpected -> 500
``internal``).
"""

from __future__ import annotations

# ruff: noqa: E402  (the collector is off before the other imports: multiregion_chat.runtime.platform.init_phase)
from multiregion_chat.runtime.platform import init_phase

init_phase.begin()

import json
import re
import time
from typing import Any
from urllib.parse import unquote

import boto3  # noqa: F401  # first, shallow: frame-stack chunks (docs/performance.md)
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from multiregion_chat.runtime.auth.identity import Identity, InvalidIdentityError, resolve
from multiregion_chat.runtime.delivery import long_poll
from multiregion_chat.runtime.platform import bus, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger, metrics, tracer
from multiregion_chat.runtime.protocol.attachment_requests import attachment_ref
from multiregion_chat.runtime.protocol.chat_model import Sender, valid_room
from multiregion_chat.runtime.protocol.claims import room_allowed
from multiregion_chat.runtime.protocol.frames import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL,
    TOO_LARGE,
    ProtocolError,
    history_limit,
)
from multiregion_chat.runtime.protocol.http_requests import decode_http_body, http_post_request
from multiregion_chat.runtime.protocol.ids import is_valid_id
from multiregion_chat.runtime.protocol.reply_limits import RATE_LIMITED
from multiregion_chat.runtime.quota import client_budget
from multiregion_chat.runtime.store import history_store, sequence_store

__all__ = ["LONG_POLL_MARGIN_MS", "MAX_WAIT_SECONDS", "handler"]

MAX_WAIT_SECONDS = 20
LONG_POLL_MARGIN_MS = 1500  # kept free of the invocation's time to answer
_PATH = re.compile(r"(?:^|/)rooms/([^/]+)/messages/?$")
_LIMIT = re.compile(r"[0-9]{1,3}")
_WAIT = re.compile(r"[0-9]{1,2}(?:\.[0-9]{1,3})?")
STATUS = {
    BAD_REQUEST: 400,
    FORBIDDEN: 403,
    TOO_LARGE: 413,
    sequence_store.SEQUENCE_GAP: 409,
    RATE_LIMITED: 429,
    INTERNAL: 500,
}

# Looked up at call time so tests can replace them.
sleep = time.sleep
monotonic = time.monotonic


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.retry_after_ms: int | None = None


def _response(
    status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {
            "content-type": "application/json",
            "cache-control": "no-store",
            **(headers or {}),
        },
        "body": json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        "isBase64Encoded": False,
    }


def _route(event: dict[str, Any]) -> tuple[str, str]:
    """``(method, raw room)`` of a messages request, or HttpError 404/405."""
    request_context = event.get("requestContext") or {}
    route_key = event.get("routeKey") or ""
    method = ((request_context.get("http") or {}).get("method") or "").upper()
    if not method and " " in route_key:
        method = route_key.split(" ", 1)[0].upper()
    room = (event.get("pathParameters") or {}).get("room")
    if room is None:
        path = event.get("rawPath") or (request_context.get("http") or {}).get("path") or ""
        found = _PATH.search(path)
        if not found:
            raise HttpError(404, BAD_REQUEST, "no such resource; use /rooms/{room}/messages")
        room = found.group(1)
    if method not in ("GET", "POST"):
        raise HttpError(
            405, BAD_REQUEST, "method not allowed; use GET or POST", {"allow": "GET, POST"}
        )
    # A valid room never contains '%', so decoding cannot turn a bad name into a good one
    # that was not meant; it only undoes clients that percent-encode ':'.
    return method, unquote(room) if isinstance(room, str) else room


def _identity(event: dict[str, Any]) -> Identity:
    authorizer = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda")
    try:
        return resolve(authorizer)
    except InvalidIdentityError as error:
        raise ProtocolError(BAD_REQUEST, str(error)) from None


def _check_room(who: Identity, room: object) -> None:
    """403 when the room is valid but the token does not allow it (invalid: left to the caller)."""
    if valid_room(room) and not room_allowed(who.rooms, str(room)):
        count("ForbiddenRequests")
        raise ProtocolError(FORBIDDEN, f"your token does not allow room {room!r}")


def _charge(who: Identity) -> None:
    """The user's request budget (shared with its WebSocket frames); 429 over it."""
    try:
        client_budget.enforce(who.user_id)
    except client_budget.RateLimitedError as error:
        raise _too_many(error.message, error.retry_after_ms) from None


def _too_many(message: str, retry_after_ms: int) -> HttpError:
    seconds = max(1, -(-retry_after_ms // 1000))
    error = HttpError(429, RATE_LIMITED, message, {"retry-after": str(seconds)})
    error.retry_after_ms = retry_after_ms
    return error


def _sequence_key(who: Identity, fields: dict[str, Any]) -> tuple[str, int] | None:
    """``(key, seq)`` of a numbered post (``clientId`` and ``seq``), None for an unnumbered one."""
    client_id, seq = sequence_store.read_client_id(fields), sequence_store.read_seq(fields)
    if client_id is None and seq is None:
        return None
    if client_id is None or seq is None:
        raise ProtocolError(BAD_REQUEST, "'clientId' and 'seq' go together")
    return sequence_store.client_key(who.user_id, client_id), seq


def _refuse_attachment(body: Any) -> None:
    """A body referencing an attachment is accepted over the WebSocket only, where the reference is
    checked (runtime.attachments.transfers); unchecked here, it could name another user's object."""
    try:
        found = attachment_ref(body) is not None
    except ValueError:
        found = True
    if found:
        raise ProtocolError(
            BAD_REQUEST, "a body with an 'attachment' is accepted over the WebSocket only"
        )


def _post(event: dict[str, Any], room: object, context: LambdaContext) -> dict[str, Any]:
    settings = runtime_settings.get_settings()
    who = _identity(event)
    _charge(who)
    _check_room(who, room)
    # Decoded once, after the charge; its size is checked before it is read.
    fields = decode_http_body(
        event.get("body"),
        max_body_bytes=settings.max_body_bytes,
        is_base64=bool(event.get("isBase64Encoded")),
    )
    numbered = _sequence_key(who, fields)
    try:
        request = http_post_request(fields, room=room, max_body_bytes=settings.max_body_bytes)
        _refuse_attachment(request.body)
    except ProtocolError as error:
        if numbered is None:
            raise
        raise sequence_store.reject(
            *numbered, error, sequence_store.budget_seconds(context)
        ) from None
    sender = Sender(user_id=who.user_id, name=who.name, region=settings.region)

    def publish(message_id: str | None) -> str:
        try:
            return bus.publish_message(request.room, sender, request.body, message_id).id
        except bus.PublishError:
            raise ProtocolError(INTERNAL, "message not accepted; please retry") from None

    if numbered is None:
        return _response(202, {"id": publish(None)})
    key, seq = numbered
    message_id = sequence_store.accept(
        key,
        seq,
        publish,
        None,
        sequence_store.budget_seconds(context),
        digest=sequence_store.message_digest(request.room, request.body),
    )
    return _response(202, {"id": message_id, "seq": seq})


def _query_param(query: dict[str, Any], name: str) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        return None  # an empty parameter counts as absent
    if not isinstance(value, str):
        raise ProtocolError(BAD_REQUEST, f"'{name}' must be a string")
    return value


def _get_params(event: dict[str, Any]) -> tuple[str | None, int, float]:
    query = event.get("queryStringParameters") or {}
    after = _query_param(query, "after")
    if after is not None and not is_valid_id(after):
        raise ProtocolError(
            BAD_REQUEST, "'after' must be a message id (26 Crockford base32 characters)"
        )
    raw_limit = _query_param(query, "limit")
    # The same rule as the history frame's (runtime.protocol.frames.history_limit), on the digits.
    limit = history_limit(
        int(raw_limit) if raw_limit is not None and _LIMIT.fullmatch(raw_limit) else raw_limit
    )
    raw_wait = _query_param(query, "wait")
    wait = 0.0
    if raw_wait is not None:
        if not _WAIT.fullmatch(raw_wait) or float(raw_wait) > MAX_WAIT_SECONDS:
            raise ProtocolError(
                BAD_REQUEST, f"'wait' must be a number of seconds from 0 to {MAX_WAIT_SECONDS}"
            )
        wait = float(raw_wait)
    return after, limit, wait


def _wait_budget(wait: float, context: LambdaContext) -> float:
    """Seconds the long poll may last: ``wait``, capped by the invocation's time left."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return wait
    return max(0.0, min(wait, (remaining() - LONG_POLL_MARGIN_MS) / 1000))


def _get(event: dict[str, Any], room: object, context: LambdaContext) -> dict[str, Any]:
    who = _identity(event)
    if not valid_room(room):
        raise ProtocolError(BAD_REQUEST, "room must match ^[A-Za-z0-9_.:-]{1,64}$")
    assert isinstance(room, str)
    _charge(who)
    _check_room(who, room)
    after, limit, wait = _get_params(event)
    budget = _wait_budget(wait, context)
    messages, more = history_store.query_messages(room, after, limit, consistent=True)
    if messages or budget <= 0:
        return _response(200, {"messages": messages, "more": more})
    lease = long_poll.acquire(who.user_id, budget + LONG_POLL_MARGIN_MS / 1000)
    if lease is None:
        count("LongPollsRefused")
        cap = runtime_settings.get_settings().max_long_polls_per_user
        raise _too_many(f"too many long polls open; at most {cap} per user", 1000)
    try:
        messages, more, probes = _wait_for_messages(room, after, limit, monotonic() + budget)
    finally:
        long_poll.release(lease)
    logger.info("long poll answered", extra={"probes": probes, "messages": len(messages)})
    return _response(200, {"messages": messages, "more": more})


def _wait_for_messages(
    room: str, after: str | None, limit: int, deadline: float
) -> tuple[list[dict[str, Any]], bool, int]:
    """Probe cheaply until a message after ``after`` exists or ``deadline``; then read it."""
    next_interval = long_poll.backoff_intervals()
    probes = 0
    while (left := deadline - monotonic()) > 0:
        sleep(min(next_interval(), left))
        probes += 1
        if long_poll.has_messages_after(room, after):
            messages, more = history_store.query_messages(room, after, limit, consistent=True)
            if messages:
                return messages, more, probes
    return [], False, probes


@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry message bodies
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    count("HttpRequests")
    try:
        if not isinstance(event, dict):
            raise HttpError(404, BAD_REQUEST, "not an HTTP API request")
        method, room = _route(event)
        logger.append_keys(method=method, room=str(room)[:64])
        if method == "POST":
            return _post(event, room, context)
        return _get(event, room, context)
    except HttpError as error:
        count("ClientErrors")
        payload: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.retry_after_ms is not None:
            payload["retryAfterMs"] = error.retry_after_ms
        return _response(error.status, payload, error.headers)
    except ProtocolError as error:
        logger.info("request answered with an error", extra={"code": error.code})
        count("ClientErrors" if error.code != INTERNAL else "InternalErrors")
        document = {k: v for k, v in error.to_frame().items() if k not in ("type", "ref")}
        return _response(STATUS.get(error.code, 400), document)
    except Exception:
        logger.exception("request failed")
        count("InternalErrors")
        return _response(500, {"code": INTERNAL, "message": "internal error"})


init_phase.end()
