"""Bounded exponential backoff with full jitter, shared by store, bus and fan-out.

``sleep`` is looked up through this module at call time, so tests patch
``runtime.platform.retry.sleep`` once to make every retry instant.
"""

from __future__ import annotations

import random
import time

__all__ = ["backoff_delay", "pause"]

sleep = time.sleep


def backoff_delay(attempt: int, base: float = 0.05, cap: float = 1.0) -> float:
    """Full-jitter delay before retry number ``attempt`` (1 = first retry)."""
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


def pause(attempt: int, base: float = 0.05, cap: float = 1.0) -> None:
    """Sleep for :func:`backoff_delay` seconds."""
    sleep(backoff_delay(attempt, base, cap))
