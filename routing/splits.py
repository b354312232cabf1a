"""Human/LM splits of a dataset: samplers under a budget, and the dataset-level vector the
performance predictor reads. The labels each side gives are :class:`curation.pairs.SplitLabels`.

A split is a boolean mask over a dataset's instances (True: the human label is used). Its vector
holds, per binary feature, how many human-labelled instances have it (the paper's count features).
"""

from __future__ import annotations

import numpy as np

from curation.errors import CuratorError


def budget_count(budget: float, n: int) -> int:
    """A budget as a number of instances: a float in [0, 1] is a fraction of ``n``; anything else
    (an int, or a float above 1 such as ``--budget 500``) is a count."""
    if budget < 0:
        raise CuratorError(f"a budget cannot be negative (got {budget})")
    if isinstance(budget, float) and budget <= 1.0:
        return round(budget * n)
    if budget != int(budget):
        raise CuratorError(f"a budget above 1 is a count of instances (got {budget})")
    if budget > n:
        raise CuratorError(f"a budget of {int(budget)} is more than the {n} instances")
    return int(budget)


# ---- samplers --------------------------------------------------------------------------------

SAMPLERS = ("uniform", "grouped")


def sample_uniform(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` instances drawn uniformly without replacement."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=count, replace=False)] = True
    return mask


def sample_grouped(features: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """The paper's feature-grouped draw: features in random order, and for each the instances that
    have it (in random order) until the budget is spent. Splits drawn this way concentrate human
    labels on a few features, which spreads the sweep's vectors far wider than uniform draws."""
    n, m = features.shape
    mask = np.zeros(n, dtype=bool)
    remaining = count
    for j in rng.permutation(m):
        if remaining == 0:
            break
        candidates = np.flatnonzero(features[:, j] & ~mask)
        if len(candidates) <= remaining:
            mask[candidates] = True
            remaining -= len(candidates)
        else:
            mask[rng.choice(candidates, size=remaining, replace=False)] = True
            remaining = 0
    if remaining:  # instances with no feature at all come last
        rest = np.flatnonzero(~mask)
        mask[rng.choice(rest, size=remaining, replace=False)] = True
    return mask


def sample_split(
    features: np.ndarray, count: int, rng: np.random.Generator, sampler: str = "grouped"
) -> np.ndarray:
    if sampler == "uniform":
        return sample_uniform(len(features), count, rng)
    if sampler == "grouped":
        return sample_grouped(features, count, rng)
    raise CuratorError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def split_vector(features: np.ndarray, human_mask: np.ndarray) -> np.ndarray:
    """Per feature, the number of human-labelled instances that have it (a sweep passes the mask
    of those whose human label survives tie-dropping, as the paper's code counts)."""
    return features[human_mask].sum(axis=0).astype(np.float64)


def split_vectors(features: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Vectors of many splits at once: ``masks`` is (n_splits, n_instances)."""
    return masks.astype(np.float32) @ features.astype(np.float32)
