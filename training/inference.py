"""Running a model over many inputs: in batches of similar length (little padding), with the
results handed back in the inputs' order. The reward scorer and the generator both go through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def map_by_length(
    items: Sequence[Sequence[T]],
    batch_size: int,
    run: Callable[[list[Sequence[T]]], Sequence[Any]],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[Any]:
    """``run`` on ``items`` (token id lists) a batch at a time, shortest first, one result per
    item in the items' order. Equal lengths keep their order (a stable sort), so batches repeat
    exactly. ``progress(done, total)`` follows each batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = np.argsort([len(item) for item in items], kind="stable")
    results: list[Any] = [None] * len(items)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        for i, result in zip(index, run([items[i] for i in index]), strict=True):
            results[i] = result
        if progress:
            progress(min(start + batch_size, len(order)), len(order))
    return results
