"""Per-sender order: numbered sends are accepted, and get their ids, in number order.

API Gateway invokes the route once per frame, concurrently, and may invoke it
again for the same frame; without help the id (and so every receiver's order)
follows whichever invocation runs first. A sender that numbers its sends
(``seq`` 1, 2, 3, ... per WebSocket connection, or per ``clientId`` of an HTTP
client) gets them accepted strictly in that order, pipelined or not:

* Send ``seq`` waits (bounded by ``SEQUENCE_WAIT_MS``) until ``seq - 1`` is
  final, then *claims* ``seq`` with its id, publishes, and *commits*. So seq
  ``n + 1`` is put on the bus only after seq ``n`` was, and every region
  receives a sender's messages in its order (EventBridge keeps no order of its
  own between two PutEvents, but the second starts after the first returned).
* The id is chosen above the previous one's (:func:`runtime.protocol.ids.new_id_after`),
  so ids follow the sender's order whatever the clocks of the containers that
  minted them.
* A frame sent again (a retry, or API Gateway invoking twice) is idempotent: a committed
  ``seq`` answers the same ``ack`` (the same id) without publishing; a claimed one whose
  publish failed publishes the claimed id again, which history de-duplicates. A claim still
  running is waited out first (bounded like a gap, then taken over: its invocation may have
  died): publishing it again at once would commit ``seq`` while the first invocation still
  posts to this region's members, and ``seq + 1``'s posts could pass them. The claim and the
  ack are bound to a digest of the message (:func:`message_digest`: room and body), so a
  ``seq`` sent again with another room or body is refused (``bad_request``) instead of
  getting the first message's id: one id never names two messages.
* A gap that does not fill in time answers ``sequence_gap`` (with
  ``expected``, the seq the sender must send next); nothing is published.
* A numbered send refused for good (``not_member``, ``too_large``,
  ``bad_request``) still takes its place in the order (:func:`reject`), so the
  sends after it are not stuck; a retry gets the same error. ``internal``
  does not: the sender retries the same ``seq``.

One item per sender in the connections table::

    CONN#<connectionId> | CLIENT#<userId>#<clientId>  /  SEQ
      last       N  the last seq whose outcome is final (absent: none yet)
      lastId     S  the id of the last accepted message
      pending    N  the seq being published (always last + 1) ...
      pendingId  S  ... and its id, reused by a retry ...
      pendingDigest S  ... for the same message only (:func:`message_digest`)
      pendingFailed BOOL  its publish failed (``internal``): a retry takes over at once
      acks       M  seq -> "<id> <digest>" ("!<code>" for a refused seq), the last ACK_WINDOW
      expiresAt  N  TTL: a connection's lease; a day for an HTTP client

Written by hand: a conditional counter is two DynamoDB updates; no library
keeps a per-key order with a bounded wait across Lambda containers.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from multiregion_chat.runtime.platform import aws_clients, runtime_settings
from multiregion_chat.runtime.protocol.frames import BAD_REQUEST, INTERNAL, ProtocolError, frame
from multiregion_chat.runtime.protocol.ids import epoch_seconds, new_id_after
from multiregion_chat.runtime.protocol.json_codec import compact_json
from multiregion_chat.runtime.store.layout import connections_table, is_conditional_failure

__all__ = [
    "ACK_WINDOW",
    "MAX_SEQ",
    "SEQUENCE_GAP",
    "SequenceGap",
    "accept",
    "budget_seconds",
    "client_key",
    "connection_key",
    "item_key",
    "message_digest",
    "read_client_id",
    "read_seq",
    "reject",
]

SEQUENCE_GAP = "sequence_gap"
MAX_SEQ = 2**53 - 1  # exact in a JavaScript number
# Committed seqs a retry can still be answered for. Each entry is ~35 bytes of the item, and
# every update is billed by the item size (1 KB per write unit): 64 keeps it near 2-3 KB.
ACK_WINDOW = 64
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
SK = "SEQ"
BUDGET_MARGIN_MS = 2000  # of an invocation's time, kept to publish and answer after a wait
FIRST_PAUSE_S = 0.005
MAX_PAUSE_S = 0.1
QUEUE_PAUSE_S = 0.02  # per send ahead of the first missing one
MAX_QUEUED_PAUSE_S = 0.5
HTTP_CLIENT_TTL_SECONDS = 86_400
REFUSED = "!"  # an acks entry of a refused seq: "!" + the error code

# Looked up at call time so tests can replace them.
sleep = time.sleep
monotonic = time.monotonic


class SequenceGap(ProtocolError):
    """``seq`` waited for an earlier seq that did not come: ``expected`` is the one missing."""

    def __init__(self, seq: int, expected: int, waited_ms: int, ref: str | None) -> None:
        super().__init__(
            SEQUENCE_GAP,
            f"seq {seq} waited {waited_ms} ms for seq {expected}, which did not come;"
            f" send seq {expected} (and what follows it) again",
            ref,
        )
        self.expected = expected

    def to_frame(self) -> dict[str, Any]:
        return frame(
            "error", self.ref, code=self.code, message=self.message, expected=self.expected
        )


def budget_seconds(context: object) -> float | None:
    """What an invocation can spend waiting: its remaining time minus BUDGET_MARGIN_MS."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining):
        return None
    return max(0.0, (remaining() - BUDGET_MARGIN_MS) / 1000)


def connection_key(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def client_key(user_id: str, client_id: str) -> str:
    """An HTTP client's sequence: per user, so nobody else can advance (or stall) it."""
    return f"CLIENT#{user_id}#{client_id}"


def read_seq(obj: dict[str, Any], ref: str | None = None) -> int | None:
    """The frame's ``seq`` (None when absent or null); ``bad_request`` if not 1..2^53-1."""
    seq = obj.get("seq")
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= MAX_SEQ:
        raise ProtocolError(BAD_REQUEST, "'seq' must be an integer from 1 to 2^53-1", ref)
    return seq


def read_client_id(obj: dict[str, Any]) -> str | None:
    """An HTTP post's ``clientId`` (None when absent); ``bad_request`` if malformed."""
    client_id = obj.get("clientId")
    if client_id is None:
        return None
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise ProtocolError(BAD_REQUEST, "'clientId' must match ^[A-Za-z0-9_-]{1,64}$")
    return client_id


def message_digest(room: str, body: Any) -> str:
    """What a claim and an ack are bound to: 16 characters of SHA-256 over the room and
    the body's compact JSON (a resent ``seq`` must carry the same message)."""
    digest = hashlib.sha256(compact_json([room, body]).encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:12]).decode("ascii")


class _State(NamedTuple):
    last: int = 0
    last_id: str | None = None
    pending: int | None = None
    pending_id: str | None = None
    pending_digest: str | None = None
    pending_failed: bool = False
    acks: Mapping[int, str] = MappingProxyType({})  # read only: one shared empty default


def item_key(pk: str) -> dict[str, Any]:
    """The key of sender ``pk``'s sequence item (a frame reads it with its other items,
    runtime.intake.frame_state)."""
    return {"pk": {"S": pk}, "sk": {"S": SK}}


def _read(pk: str) -> _State:
    table = connections_table()
    answer = aws_clients.dynamodb().get_item(TableName=table, Key=item_key(pk), ConsistentRead=True)
    return _state(answer.get("Item") or {})


def _state(item: dict[str, Any]) -> _State:
    if not item:
        return _State()
    acks = {}
    for name, value in (item.get("acks", {}).get("M") or {}).items():
        if name.isdigit() and "S" in value:
            acks[int(name)] = value["S"]
    pending = item.get("pending", {}).get("N")
    return _State(
        last=int(item.get("last", {}).get("N", "0")),
        last_id=item.get("lastId", {}).get("S"),
        pending=int(pending) if pending is not None else None,
        pending_id=item.get("pendingId", {}).get("S"),
        pending_digest=item.get("pendingDigest", {}).get("S"),
        pending_failed=bool(item.get("pendingFailed", {}).get("BOOL", False)),
        acks=acks,
    )


def _conditional(call: Callable[[], object]) -> bool:
    """Run one conditional write: False when its condition failed."""
    try:
        call()
    except ClientError as error:
        if is_conditional_failure(error):
            return False
        raise
    return True


def _expires_at(pk: str) -> int:
    settings = runtime_settings.get_settings()
    ttl = HTTP_CLIENT_TTL_SECONDS if pk.startswith("CLIENT#") else settings.connection_ttl_seconds
    return epoch_seconds() + ttl


def _claim(pk: str, seq: int, message_id: str, digest: str) -> bool:
    """Mark ``seq`` as being published with ``message_id`` (for the message of ``digest``);
    False if someone was first."""
    return _conditional(
        lambda: aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=item_key(pk),
            UpdateExpression=(
                "SET #last = if_not_exists(#last, :zero), pending = :seq, pendingId = :id,"
                " pendingDigest = :digest, acks = if_not_exists(acks, :empty), expiresAt = :exp"
            ),
            ConditionExpression=(
                "(attribute_not_exists(#last) OR #last = :prev) AND attribute_not_exists(pending)"
            ),
            ExpressionAttributeNames={"#last": "last"},
            ExpressionAttributeValues={
                ":zero": {"N": "0"},
                ":prev": {"N": str(seq - 1)},
                ":seq": {"N": str(seq)},
                ":id": {"S": message_id},
                ":digest": {"S": digest},
                ":empty": {"M": {}},
                ":exp": {"N": str(_expires_at(pk))},
            },
        )
    )


def _commit(pk: str, seq: int, outcome: str) -> None:
    """Make ``seq``'s outcome (an id, or "!code") final; a no-op if it already is."""
    names = {"#last": "last", "#seq": str(seq)}
    values: dict[str, Any] = {
        ":prev": {"N": str(seq - 1)},
        ":seq": {"N": str(seq)},
        ":outcome": {"S": outcome},
        ":exp": {"N": str(_expires_at(pk))},
        ":empty": {"M": {}},
    }
    sets = "#last = :seq, acks.#seq = :outcome, expiresAt = :exp"
    if not outcome.startswith(REFUSED):
        sets += ", lastId = :id"
        values[":id"] = {"S": outcome.split(" ", 1)[0]}
    removes = "pending, pendingId, pendingDigest, pendingFailed"
    if seq > ACK_WINDOW:
        names["#old"] = str(seq - ACK_WINDOW)
        removes += ", acks.#old"
    # A refused seq 1 may have had no claim: create the map first (one update cannot SET a
    # map and one of its keys). An accepted one was claimed, which created it.
    if seq == 1 and outcome.startswith(REFUSED):
        _conditional(
            lambda: aws_clients.dynamodb().update_item(
                TableName=connections_table(),
                Key=item_key(pk),
                UpdateExpression=(
                    "SET acks = if_not_exists(acks, :empty), #last = if_not_exists(#last, :zero)"
                ),
                ExpressionAttributeNames={"#last": "last"},
                ExpressionAttributeValues={":empty": {"M": {}}, ":zero": {"N": "0"}},
            )
        )
    values.pop(":empty")
    _conditional(
        lambda: aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=item_key(pk),
            UpdateExpression=f"SET {sets} REMOVE {removes}",
            ConditionExpression="#last = :prev",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    )


def _mark_failed(pk: str, seq: int) -> None:
    """Let a retry of ``seq`` take its claim over at once: the publish failed, nobody is
    posting it."""
    _conditional(
        lambda: aws_clients.dynamodb().update_item(
            TableName=connections_table(),
            Key=item_key(pk),
            UpdateExpression="SET pendingFailed = :true",
            ConditionExpression="pending = :seq",
            ExpressionAttributeValues={":true": {"BOOL": True}, ":seq": {"N": str(seq)}},
        )
    )


def _await_claim(pk: str, seq: int, budget_s: float | None) -> None:
    """Wait while another invocation of ``seq`` holds its claim (and may still be posting),
    until it is final or failed, or for at most ``SEQUENCE_WAIT_MS`` (or ``budget_s``): then
    its invocation is taken to have died and the caller takes the claim over."""
    wait_s = runtime_settings.get_settings().sequence_wait_ms / 1000
    started = monotonic()
    limit = started + (wait_s if budget_s is None else min(wait_s, budget_s))
    pause = FIRST_PAUSE_S
    while True:
        now = monotonic()
        if now >= limit:
            return
        sleep(min(pause, limit - now))
        pause = min(MAX_PAUSE_S, pause * 2)
        state = _read(pk)
        if state.last >= seq or state.pending != seq or state.pending_failed:
            return


def _turn(
    pk: str, seq: int, ref: str | None, budget_s: float | None, item: dict[str, Any] | None = None
) -> _State:
    """Wait until every seq before ``seq`` is final; the state then. A state with
    ``last >= seq`` means ``seq`` is final already.

    The wait is bounded twice: SequenceGap when the sender's sequence makes no progress (no
    seq before ``seq`` becomes final or claimed) for ``SEQUENCE_WAIT_MS``, or when
    ``budget_s`` (what the invocation can spare) runs out. A deep pipeline therefore waits as
    long as the sends ahead of it keep moving, and a missing one is reported after the wait.
    ``item``: the sequence item as just read consistently, which the first look uses.
    """
    wait_s = runtime_settings.get_settings().sequence_wait_ms / 1000
    started = stalled_since = monotonic()
    progress: tuple[int, int | None] | None = None
    pause = FIRST_PAUSE_S
    while True:
        state = _read(pk) if item is None else _state(item)
        item = None
        if seq <= state.last + 1:
            return state
        now = monotonic()
        if (state.last, state.pending) != progress:
            progress, stalled_since, pause = (state.last, state.pending), now, FIRST_PAUSE_S
        limit = stalled_since + wait_s
        if budget_s is not None:
            limit = min(limit, started + budget_s)
        if now >= limit:
            raise SequenceGap(seq, state.last + 1, round((now - stalled_since) * 1000), ref)
        # A send far back in the queue polls less often: the ones ahead take a while anyway,
        # and every poll is a read the ones ahead compete with.
        behind = seq - state.last - 1
        sleep(min(max(pause, QUEUE_PAUSE_S * (behind - 1)), MAX_QUEUED_PAUSE_S, limit - now))
        pause = min(MAX_PAUSE_S, pause * 2)


def _reused(seq: int, ref: str | None) -> ProtocolError:
    return ProtocolError(
        BAD_REQUEST,
        f"seq {seq} was sent before with another room or body; number each message anew",
        ref,
    )


def _replay(state: _State, seq: int, ref: str | None, digest: str | None = None) -> str:
    """The final outcome of ``seq`` again: its id, or its error raised (also when the
    frame is not the message ``seq`` was accepted for)."""
    outcome = state.acks.get(seq)
    if outcome is None:
        raise ProtocolError(
            BAD_REQUEST,
            f"seq {seq} was used before and is older than the last {ACK_WINDOW} seqs;"
            f" the next seq is {state.last + 1}",
            ref,
        )
    if outcome.startswith(REFUSED):
        code = outcome.removeprefix(REFUSED)
        raise ProtocolError(code, f"seq {seq} was refused before ({code})", ref)
    message_id, _, accepted_digest = outcome.partition(" ")
    if digest is not None and accepted_digest and accepted_digest != digest:
        raise _reused(seq, ref)
    return message_id


def accept(
    pk: str,
    seq: int,
    publish: Callable[[str], object],
    ref: str | None = None,
    budget_s: float | None = None,
    item: dict[str, Any] | None = None,
    digest: str = "",
) -> str:
    """Publish sender ``pk``'s send number ``seq`` in its order; the message's id.

    ``budget_s``: the longest this call may wait for the sends before it (the invocation's
    remaining time minus a margin).

    ``publish(message_id)`` checks what is left to check and puts the message on
    the bus. If it raises ``internal`` (the bus refused), ``seq`` stays claimed
    with that id for the retry; any other ProtocolError refuses ``seq`` for good
    (:func:`reject`). Raises SequenceGap, or replays an earlier refusal of ``seq``.
    ``item``: the sequence item as just read consistently (spares the first read).
    ``digest``: :func:`message_digest` of the message; a claim or ack of ``seq`` for
    another message refuses this one (``bad_request``).
    """
    waited_for_claim = False
    while True:
        state = _turn(pk, seq, ref, budget_s, item)
        item = None
        if seq <= state.last:
            return _replay(state, seq, ref, digest)
        message_id = state.pending_id if state.pending == seq else None
        if message_id is not None and state.pending_digest not in (None, digest):
            raise _reused(seq, ref)  # the claim stays for the message it was made for
        if message_id is not None and not state.pending_failed and not waited_for_claim:
            _await_claim(pk, seq, budget_s)  # a duplicate of a frame still being published
            waited_for_claim = True
            continue
        if message_id is None:
            message_id = new_id_after(state.last_id)
            if not _claim(pk, seq, message_id, digest):
                continue  # a duplicate of this frame claimed it first: publish its id
        break
    try:
        publish(message_id)
    except ProtocolError as error:
        if error.code != INTERNAL:
            _commit(pk, seq, REFUSED + error.code)
        else:
            _mark_failed(pk, seq)
        raise
    _commit(pk, seq, f"{message_id} {digest}" if digest else message_id)
    return message_id


def reject(
    pk: str,
    seq: int,
    error: ProtocolError,
    budget_s: float | None = None,
    item: dict[str, Any] | None = None,
) -> ProtocolError:
    """Record that ``seq`` is refused with ``error`` when its turn comes; the error to answer.

    For errors found before :func:`accept` could run (the frame's own fields). A
    gap before ``seq`` answers SequenceGap instead (the sender resends from
    there); a ``seq`` already final answers ``error`` and changes nothing.
    """
    if error.code == INTERNAL:
        return error
    try:
        state = _turn(pk, seq, error.ref, budget_s, item)
    except SequenceGap as gap:
        return gap
    if seq > state.last:
        _commit(pk, seq, REFUSED + error.code)
    return error
