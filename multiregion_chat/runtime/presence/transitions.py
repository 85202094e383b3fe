"""Presence transitions in this region, published as ``chat.presence`` bus events.

A user's presence in a room *in this region* is the set of its live local
connections in the room, kept in one user item (``ROOM#<room>/USER#<userId>``,
one ``c:<connectionId>`` entry per connection; :mod:`runtime.store.connection_store`).
Transitions are published:

* "joined" when a connection's new membership is the user's first in the room
  here (``join``);
* "left" when the user's last membership in the room here goes (``leave``,
  ``$disconnect``, the fan-out's 410 Gone cleanup);
* "joined" with ``refresh: true`` from ``ping`` once the membership's last
  announcement is older than a third of ``CONNECTION_TTL_SECONDS``: other
  regions keep a user's presence as a lease of that length, so a long-lived
  user does not lapse there, and an announcement that failed is repaired.

"First" / "last" come from the atomic update of the user item itself
(:func:`runtime.store.connection_store.join_room` sets the connection's entry and reports
``first`` when no live entry was there;
:func:`runtime.store.connection_store.remove_user_connection`
removes it and reports ``last`` when none is left): one UpdateItem, O(1)
whatever the room size. DynamoDB serialises updates of an item, so of two
concurrent changes exactly one sees the other:

* two first joins at once: exactly one announces;
* join vs. leave of the same user: either the leave sees the join's entry (no
  "left") or the join sees the leave's removal ("left", then "joined").

Entries of connections that died without ``$disconnect`` count as absent once
their expiry (renewed by ``join`` and ``ping``) has passed. A cleanup repeated
after the user item is gone announces "left" again (harmless).

The same first/last decisions move this region's ``memberCount``
(:func:`runtime.presence.roster.add`, before publishing, so a failed publish does not
leave the count behind the memberships).

Duplicates (a repeated cleanup) are harmless: other regions apply events
idempotently and ordered by ``at``; the origin region may push a duplicate
``member`` frame.
Publishing never breaks the client's request: a failure (after the bus
module's retries of rejected entries) is logged and counted as
``PresencePublishFailures``; a failed "joined" is retried by the next
``ping``, a failed "left" lapses with the lease in the other regions.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from multiregion_chat.runtime.platform import bus, runtime_settings
from multiregion_chat.runtime.platform.observability import count, logger
from multiregion_chat.runtime.presence import roster
from multiregion_chat.runtime.protocol.chat_model import PresenceEvent, Sender
from multiregion_chat.runtime.protocol.ids import now_ms
from multiregion_chat.runtime.store import connection_store

__all__ = [
    "PRESENCE_DETAIL_TYPE",
    "after_join",
    "after_leave",
    "announce",
    "cleanup_connection",
    "cleanup_gone",
    "renew",
]

PRESENCE_DETAIL_TYPE = bus.PRESENCE_DETAIL_TYPE
FAILURE_METRIC = "PresencePublishFailures"

_lock = threading.Lock()
_last_at = 0


def _next_at() -> int:
    """Epoch ms, strictly increasing within the process (two events of one user
    in the same millisecond still order)."""
    global _last_at
    with _lock:
        _last_at = max(now_ms(), _last_at + 1)
        return _last_at


def _member(user_id: str, name: str | None) -> Sender:
    return Sender(user_id=user_id, name=name, region=runtime_settings.get_settings().region)


def announce(room: str, event: str, member: Sender, *, refresh: bool = False) -> bool:
    """Publish one presence event; False (logged, counted) if it could not be."""
    detail = PresenceEvent(
        origin_region=runtime_settings.get_settings().region,
        room=room,
        event=event,
        member=member,
        at=_next_at(),
        refresh=refresh,
    ).detail()
    try:
        bus.publish(PRESENCE_DETAIL_TYPE, detail)
    except Exception:
        logger.exception(
            "presence event not published",
            extra={"room": room, "event": event, "userId": member.user_id},
        )
        count(FAILURE_METRIC)
        return False
    logger.info(
        "presence published",
        extra={"room": room, "event": event, "userId": member.user_id, "refresh": refresh},
    )
    return True


def after_join(connection_id: str, room: str, joined: connection_store.JoinResult) -> None:
    """Announce "joined" if this new membership is the user's first here. Never raises."""
    connection = joined.connection
    if not joined.created or not connection.user_id:
        return  # a re-join of the same connection is no transition
    announced = False
    try:
        if joined.first:
            roster.add(room, runtime_settings.get_settings().region, +1)
        announced = joined.first and announce(
            room, "joined", _member(connection.user_id, connection.name)
        )
    except Exception:
        logger.exception("presence check after join failed", extra={"room": room})
        count(FAILURE_METRIC)
    if announced:
        return
    try:  # join_room marked it announced; let the next ping (re)announce instead
        connection_store.clear_presence_mark(connection_id, room)
    except Exception:
        logger.exception("could not clear the presence mark", extra={"room": room})


def after_leave(room: str, member: Sender, connection_id: str) -> None:
    """Remove the connection from the user's presence in ``room`` (its membership is
    gone) and announce "left" if it was the user's last here. Never raises: a
    failed removal lapses with the entry's expiry."""
    if not member.user_id:
        return
    try:
        if not connection_store.remove_user_connection(room, member.user_id, connection_id):
            return
        roster.add(room, runtime_settings.get_settings().region, -1)
        announce(room, "left", member)
    except Exception:
        logger.exception("presence check after leave failed", extra={"room": room})
        count(FAILURE_METRIC)


def cleanup_connection(
    connection_id: str, rooms_hint: Iterable[str] = ()
) -> connection_store.CleanupResult:
    """Delete a connection's records
    (:func:`runtime.store.connection_store.delete_connection_records`),
    then announce "left" where it was the user's last membership.

    Storage errors of the delete propagate (as before); presence never raises.
    """
    result = connection_store.delete_connection_records(connection_id, rooms_hint=rooms_hint)
    if result.user_id:
        member = _member(result.user_id, result.name)
        for room in result.removed_rooms:
            after_leave(room, member, connection_id)
    return result


def cleanup_gone(connection_id: str, room: str) -> None:
    """:func:`cleanup_connection` for a connection ``@connections`` answered 410 for while
    posting to ``room``: the delivery engine's ``on_gone``. The room is the hint, so a
    membership orphaned by a lost META item goes too."""
    cleanup_connection(connection_id, rooms_hint=(room,))


def renew(connection_id: str, leases: Iterable[connection_store.MembershipLease]) -> None:
    """Re-announce "joined" (``refresh``) for memberships whose lease is due. Never raises."""
    for lease in leases:
        try:
            member = _member(lease.user_id, lease.name)
            if announce(lease.room, "joined", member, refresh=True):
                connection_store.set_presence_mark(connection_id, lease.room)
        except Exception:
            logger.exception("presence renewal failed", extra={"room": lease.room})
            count(FAILURE_METRIC)
