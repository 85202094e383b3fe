"""Short garbage-collector pauses for the sandbox's long-lived processes.

moto keeps every table item, queue message and secret as Python objects, and the sandbox's
API Gateway process keeps every connection's state: heaps that only grow during a run. CPython's
full (generation 2) collection walks every tracked object, so its pause grows with the heap:
measured in moto's process during a 20 messages/s e2e run, one full collection every 10-20 s,
220 ms three minutes in and 570 ms three minutes later (docs/sandbox.md, "Capacity"). Every
request in flight waits out the pause, which was the e2e bench's whole p99 tail.

:func:`freeze_after_full_collections` moves what survives each full collection into the
permanent generation (:func:`gc.freeze`), so the next one walks only what was allocated since:
the pause stays proportional to the allocation rate, not to the heap. Frozen objects are still
freed by reference counting; only a reference cycle among objects that were live at a full
collection and became garbage later is never reclaimed, a bounded cost for a process that lives
as long as one sandbox run. Python has no library for this; these few lines are the documented
use of ``gc.freeze`` plus a callback.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["freeze_after_full_collections"]

_OLDEST = 2


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == _OLDEST:
        gc.freeze()


def freeze_after_full_collections() -> None:
    """Install once per process (idempotent)."""
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)
