"""The same-region fast path: a small room's local members get a message without the bus hop.

Every message still goes on the bus (every other region gets it by replication), but the
EventBridge -> Lambda hop costs about 150 ms at p50 and 390 ms at p99 (docs/performance.md,
"Latency"), which members in the sender's own region need not wait for. So, once the bus
has accepted a message, ClientMessageHandler calls :func:`deliver_locally`, which for a room
with at most ``LOCAL_FAST_PATH_MAX_MEMBERS`` local connections (0: off):

1. reads one page of the room's local members to see that the room is small (a big room
   keeps the bus path and its sharded fan-out; nothing is written);
2. writes the history item, conditional on the id being new: the same de-duplication point
   as EventBusMessageHandler's, so whichever of the two writes first delivers, and the
   other finds the item and does not post again (each local member gets the frame once);
3. reads the members again, now after the write, so a member whose ``join`` lands in
   between gets the message either live or in ``joined.missed`` (the bus path's order:
   history first, then the members);
4. posts the ``message`` frame to them through the delivery engine (:mod:`runtime.delivery.engine`),
   loaded here on first use so ClientMessageHandler's cold start does not pay for it.

The sender's ``ack`` waits for this. A numbered send runs it inside its turn
(:mod:`runtime.store.sequence_store`), so seq n's posts are made before seq n+1 is even
published and every receiver sees the sender's order. A failure is logged and counted, never
raised: the bus accepted the message, so before the history write the origin region's
EventBusMessageHandler delivers it as usual, and after it the recovery is the bus path's
after a crash mid fan-out: the message is in history and a client resumes with ``after``.
"""

from __future__ import annotations

from multiregion_chat.runtime.auth import token_expiry
from multiregion_chat.runtime.platform import runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.presence import transitions
from multiregion_chat.runtime.protocol.chat_model import ChatMessage
from multiregion_chat.runtime.protocol.json_codec import compact_json
from multiregion_chat.runtime.store import history_store, room_store

__all__ = ["deliver_locally"]


def deliver_locally(message: ChatMessage) -> str:
    """Serve ``message`` to this region's members of a small room; what happened: ``off``,
    ``above_limit``, ``already_stored`` (the bus path was first), ``delivered`` or ``failed``."""
    limit = runtime_settings.get_settings().local_fast_path_max_members
    if limit <= 0:
        return "off"
    room = message.room
    try:
        first_page = next(room_store.iter_room_connections(room, limit + 1), [])
        if len(first_page) > limit:
            return "above_limit"
        if not history_store.put_message(message):
            return "already_stored"
        ids = [cid for page in token_expiry.live_connection_ids(room, limit + 1) for cid in page]
        if ids:
            # The delivery engine (and aiohttp) only when there is someone to post to.
            from multiregion_chat.runtime.delivery import engine

            result = engine.deliver(
                room,
                compact_json(message.to_frame()).encode("utf-8"),
                connection_ids=ids,
                on_gone=transitions.cleanup_gone,
            )
            count("FastPathPosts", result.delivered)
            if result.failed or result.unsent:
                count("FailedDeliveries", result.failed + len(result.unsent))
    except Exception:
        logger.exception("local delivery failed; history and resume cover it")
        count("FastPathFailures")
        return "failed"
    count("FastPathMessages")
    return "delivered"
