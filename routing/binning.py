"""How the routing features turn a number into a binary feature: thirds, as the paper bins them,
and percentile ranks for measures without a natural scale (lengths, a judge's confidence)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BINS = ("low", "mid", "high")
BIN_EDGES = (0.33, 0.67)


def bin_label(value: float) -> str:
    """Thirds as the paper bins them: [0, .33] low, (.33, .67] mid, (.67, 1] high."""
    if value <= BIN_EDGES[0]:
        return BINS[0]
    if value <= BIN_EDGES[1]:
        return BINS[1]
    return BINS[2]


def percentile_ranks(values: Sequence[float]) -> np.ndarray:
    """Each value's rank in (0, 1] among all of them (ties share their average rank)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return values
    from scipy.stats import rankdata  # scipy loads when features are binned, not with the CLI

    return rankdata(values, method="average") / len(values)
