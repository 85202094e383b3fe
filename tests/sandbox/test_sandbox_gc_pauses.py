"""sandbox.gc_pauses: what survives a full collection is frozen, so the next one skips it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sandbox import gc_pauses


@pytest.fixture
def clean_gc() -> Iterator[None]:
    callbacks = list(gc.callbacks)
    gc.unfreeze()
    yield
    gc.callbacks[:] = callbacks
    gc.unfreeze()


@pytest.mark.usefixtures("clean_gc")
def test_a_full_collection_freezes_its_survivors() -> None:
    gc_pauses.freeze_after_full_collections()
    gc_pauses.freeze_after_full_collections()  # idempotent: one callback
    assert gc.callbacks.count(gc_pauses._freeze_survivors) == 1
    survivors = [[] for _ in range(1000)]
    gc.collect(1)  # a young collection freezes nothing
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gc.get_freeze_count() >= len(survivors)


@pytest.mark.usefixtures("clean_gc")
def test_frozen_cycles_created_later_are_still_collected() -> None:
    gc_pauses.freeze_after_full_collections()
    gc.collect()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # allocated after the freeze: collectable
