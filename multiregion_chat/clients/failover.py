"""Regional failover for the clients: the nearest region first, and the server's wait hints.

The CLI client takes every region's URL (``--region all``: the endpoints file's regions, or a
``cdk deploy --outputs-file``), tries them nearest first, and moves to the next one when its
region fails (clients/websocket_client.py says when). "Nearest" is measured: the time to open a
TCP connection to each region's endpoint, the best of two, all regions at once. It is one
round trip to the API's edge, what a chat frame pays too; a WebSocket handshake would run the
authorizer and ``$connect`` in every region just to be timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

__all__ = ["close_hint", "connect_seconds", "nearest_first", "retry_after"]

PROBES = 2
PROBE_TIMEOUT = 2.0
_CLOSE_HINT = re.compile(r"retry[-_ ]?after[=: ]\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


async def connect_seconds(url: str, timeout: float = PROBE_TIMEOUT) -> float | None:
    """Seconds to open a TCP connection to ``url``'s host; None when it cannot be reached."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout)
    except (OSError, TimeoutError):
        return None
    elapsed = loop.time() - started
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return elapsed


async def nearest_first(
    targets: Sequence[T],
    probes: int = PROBES,
    timeout: float = PROBE_TIMEOUT,
    url_of: Callable[[T], str] = str,
) -> list[tuple[T, float | None]]:
    """``targets`` by measured connect time to ``url_of(target)``, fastest first (unreachable
    last, order kept on ties)."""

    async def best(url: str) -> float | None:
        times = [await connect_seconds(url, timeout) for _ in range(probes)]
        reached = [t for t in times if t is not None]
        return min(reached) if reached else None

    measured = await asyncio.gather(*(best(url_of(target)) for target in targets))
    ranked = sorted(range(len(targets)), key=lambda i: (measured[i] is None, measured[i] or 0.0, i))
    return [(targets[i], measured[i]) for i in ranked]


def retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); None if absent
    or malformed."""
    value = (headers or {}).get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max(0.0, (when - moment).total_seconds())


def close_hint(reason: str | None) -> float | None:
    """Seconds a close frame's reason asks the client to wait (``retry-after=N``), if any."""
    found = _CLOSE_HINT.search(reason or "")
    if not found:
        return None
    seconds = float(found.group(1))
    return seconds if math.isfinite(seconds) else None
