"""Time-ordered, globally unique message ids (ULID layout) and time helpers.

An id is 26 characters of Crockford base32 (``0-9A-Z`` without ``I L O U``):
10 characters of a 48-bit Unix timestamp in milliseconds, then 16 characters
of 80 random bits. The alphabet is in ASCII order, so comparing two ids as
strings compares their timestamps first: lexicographic order is time order in
every region, and equal milliseconds are ordered (deterministically, by the
random part) without coordination.

Within one process ids are strictly increasing: an id minted in the same
millisecond as the previous one (or while the clock stepped backwards) reuses
that timestamp and increments the random part by one, as the ULID spec's
"monotonic" mode does. Should the 80 random bits overflow, the timestamp moves
one millisecond forward instead of failing.

Ordering across regions and the clock assumption
-----------------------------------------------

An id is minted by the region that accepts the message, from that region's
clock. Ids therefore sort by (accepting region's clock in ms, 80 random bits):
one total order, the same for every client in every region, because every
region stores and sorts the same ids. Within one process ids are strictly
increasing (see below), so one sender's messages through one container keep
their order.

The regions' clocks are assumed NTP-synchronised (Lambda hosts use the Amazon
Time Sync Service; skew is typically well under 1 ms). Under a skew of ``d``
ms a message accepted in one region up to ``d`` ms *after* a message in
another region may sort *before* it. The order is still total and identical
everywhere; it is "time order" only up to the skew.

Limit (stated honestly): resuming with ``after`` = the last id a client saw
returns only ids *greater* than it. A message that becomes visible in a
region's history *after* the client saw a later id - because it was
replicated late (cross-region delivery takes ~0.1-1 s, longer under
EventBridge retries) or minted on a skewed clock - has a *smaller* id and is
not returned by that resume. The window is the replication delay plus the
skew. Mitigation: clients resume from :func:`resume_after` (the last id's
timestamp minus a safety window, 5 s by default) and de-duplicate by id, so
anything that arrived up to the window late is still caught. Events delayed
beyond the window (EventBridge retrying for minutes) are the residual risk; a
client can widen the window or page history from an older id to re-check.

Written by hand on purpose: the Lambda asset is deployed unbundled and may
import only the standard library, boto3/botocore and Powertools, so a ULID
package from PyPI is not available at runtime.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time

__all__ = [
    "ID_LENGTH",
    "epoch_seconds",
    "id_datetime",
    "id_timestamp_ms",
    "is_valid_id",
    "iso_from_ms",
    "new_id",
    "new_id_after",
    "now_ms",
    "resume_after",
]

DEFAULT_RESUME_WINDOW_MS = 5_000

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26
_TIME_CHARS = 10
_RANDOM_BITS = 80
_MAX_TIME = (1 << 48) - 1
_MAX_RANDOM = (1 << _RANDOM_BITS) - 1
_DECODE = {c: i for i, c in enumerate(ALPHABET)}

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def now_ms() -> int:
    """Current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def epoch_seconds() -> int:
    """Current Unix time in whole seconds (DynamoDB TTL attributes)."""
    return int(time.time())


def iso_from_ms(ms: int) -> str:
    """ISO 8601 UTC with milliseconds, e.g. ``2026-11-21T23:59:59.123Z``."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def new_id(timestamp_ms: int | None = None) -> str:
    """A new id, greater than every id this process minted before."""
    global _last_ms, _last_random
    ms = now_ms() if timestamp_ms is None else timestamp_ms
    if not 0 <= ms <= _MAX_TIME:
        raise ValueError(f"timestamp out of range: {ms}")
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or the clock went back): stay on the last
            # timestamp and count up, so order within the process is kept.
            ms = _last_ms
            rand = _last_random + 1
            if rand > _MAX_RANDOM:
                ms, rand = ms + 1, secrets.randbits(_RANDOM_BITS)
        else:
            rand = secrets.randbits(_RANDOM_BITS)
        _last_ms, _last_random = ms, rand
    return _encode(ms, _TIME_CHARS) + _encode(rand, ID_LENGTH - _TIME_CHARS)


def new_id_after(floor: str | None) -> str:
    """A new id greater than ``floor`` (an id minted anywhere, maybe on a clock ahead of ours).

    :func:`new_id` orders the ids of one process only; ids from two containers
    are ordered by their clocks. A sender's sequence (:mod:`runtime.store.sequence_store`)
    keeps its last id and asks for the next one above it, so that its ids
    follow its order whatever the containers' clocks: when this clock is
    behind ``floor``'s, the result is ``floor``'s successor (same millisecond,
    random part plus one; the next millisecond if that overflows).
    """
    candidate = new_id()
    if floor is None or candidate > floor:
        return candidate
    ms = id_timestamp_ms(floor)
    rand = 0
    for c in floor[_TIME_CHARS:]:
        rand = (rand << 5) | _DECODE[c]
    rand += 1
    if rand > _MAX_RANDOM:
        ms, rand = ms + 1, 0
    if ms > _MAX_TIME:
        raise ValueError("no id above the greatest possible one")
    return _encode(ms, _TIME_CHARS) + _encode(rand, ID_LENGTH - _TIME_CHARS)


def is_valid_id(value: object) -> bool:
    """True for a well-formed id (26 upper-case Crockford chars, 48-bit time)."""
    return (
        isinstance(value, str)
        and len(value) == ID_LENGTH
        and all(c in _DECODE for c in value)
        and value[0] <= "7"  # 10 chars hold 50 bits; the timestamp has 48
    )


def id_timestamp_ms(value: str) -> int:
    """The millisecond timestamp encoded in an id (ValueError if malformed)."""
    if not is_valid_id(value):
        raise ValueError("not a message id")
    ms = 0
    for c in value[:_TIME_CHARS]:
        ms = (ms << 5) | _DECODE[c]
    return ms


def id_datetime(value: str) -> dt.datetime:
    """The UTC datetime encoded in an id."""
    return dt.datetime.fromtimestamp(id_timestamp_ms(value) / 1000, tz=dt.UTC)


def resume_after(last_id: str, window_ms: int = DEFAULT_RESUME_WINDOW_MS) -> str:
    """The ``after`` to resume from when ``last_id`` is the newest id seen.

    Returns the greatest possible id of the millisecond before
    ``timestamp(last_id) - window_ms``, so that ``id > resume_after(...)``
    selects exactly every message whose id timestamp is at least
    ``timestamp(last_id) - window_ms``. The client gets some messages again
    (it de-duplicates by id) and, in exchange, also those that reached this
    region's history late with an id below ``last_id`` (see the module
    docstring). ValueError for a malformed id or a negative window.
    """
    if isinstance(window_ms, bool) or not isinstance(window_ms, int) or window_ms < 0:
        raise ValueError("window_ms must be a non-negative integer")
    start = id_timestamp_ms(last_id) - window_ms
    if start <= 0:
        return ALPHABET[0] * ID_LENGTH  # the smallest id: everything after it
    return _encode(start - 1, _TIME_CHARS) + ALPHABET[-1] * (ID_LENGTH - _TIME_CHARS)
