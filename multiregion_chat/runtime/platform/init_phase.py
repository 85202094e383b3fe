"""A handler's init without the cyclic garbage collector, frozen at its end.

Everything init builds (modules, classes, Powertools' and botocore's objects) lives as long as
the execution environment, yet the collector ran about 100 times over it during the imports,
about a tenth of init (docs/performance.md, "The garbage collector at init"). A handler calls
:func:`begin` before its other imports and :func:`end` as its last statement. ``end`` freezes
what init built (out of every later collection, without a traversal) before enabling the
collector again: enabled with 70,000 objects in generation 0, its first collection, in the
first invocation, would traverse them all. Standard library only, and nothing else imported
here: this module is loaded before boto3.
"""

from __future__ import annotations

import gc

__all__ = ["begin", "end"]

_was_enabled: list[bool] = []


def begin() -> None:
    _was_enabled.append(gc.isenabled())
    gc.disable()


def end() -> None:
    """Freeze init's objects, then collect again, if the collector was on at :func:`begin`
    (tests import several handlers into one process)."""
    gc.freeze()
    if not _was_enabled or _was_enabled.pop():
        gc.enable()
