"""Long streaming passes without the cyclic GC's automatic collections.

A pass over a week keeps hundreds of thousands of tracked objects alive (the loader's batch and
memo, the mapping assistant's users and distinct values): generational collections triggered
every few hundred allocations walk them again and again, and full ones walk Dagster's whole
import graph too (millions of objects). Measured on the light benchmark week, that was more than
half of the loader's parsing and transforming, and a tenth of the assistant's pass. These loops
create no reference cycles of their own (reference counting frees their garbage), so automatic
collection is paused, what exists now is set aside (``gc.freeze``), and the loop collects the
young generations now and then (:func:`collect_young`), which walks each new object about once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

__all__ = ["collect_young", "collected_every", "collector_paused"]

LINES_BETWEEN_COLLECTIONS: Final = 100_000

_T = TypeVar("_T")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Automatic collection off, and everything that exists now frozen, until the block ends."""
    gc.freeze()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.unfreeze()


def collect_young() -> None:
    gc.collect(1)


def collected_every(items: Iterable[_T], count: int = LINES_BETWEEN_COLLECTIONS) -> Iterator[_T]:
    """``items``, the young generations collected after every ``count`` of them."""
    for index, item in enumerate(items, 1):
        yield item
        if index % count == 0:
            collect_young()
