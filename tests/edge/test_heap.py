"""edge.heap: what start-up loads leaves the collector's full passes, and is still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from edge.heap import freeze_long_lived


class _Item:
    def __init__(self, n: int) -> None:
        self.n = n


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_loaded_objects_leave_the_full_pass_but_are_still_freed(unfrozen: None) -> None:
    catalog = {f"sku-{i}": _Item(i) for i in range(20_000)}  # like a model's catalog
    looped = _Item(-1)
    looped.n = looped  # type: ignore[assignment]  # garbage in a cycle, left over from loading
    leftover = weakref.ref(looped)
    del looped
    freeze_long_lived()
    assert leftover() is None, "start-up garbage must be collected, not frozen"
    assert gc.get_freeze_count() >= len(catalog)
    # a frozen object nothing refers to any more is still freed (a swapped-out model's catalog)
    gone = weakref.ref(catalog["sku-7"])
    catalog.clear()
    assert gone() is None


def test_a_swap_freezes_without_a_collection_pause(unfrozen: None) -> None:
    collections = gc.get_stats()[2]["collections"]
    keep = [_Item(i) for i in range(1000)]
    freeze_long_lived(collect=False)
    assert gc.get_stats()[2]["collections"] == collections
    assert gc.get_freeze_count() >= len(keep)
