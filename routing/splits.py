"""Human/LM splits of a dataset: the labels each side gives, samplers under a budget, and the
dataset-level vector the performance predictor reads.

A split is a boolean mask over a dataset's instances (True: the human label is used). Its vector
holds, per binary feature, how many human-labelled instances have it (the paper's count features).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from curation.agreement import majority
from curation.errors import CuratorError
from curation.store import Store


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


def busiest_judge(store: Store, dataset_id: int) -> str | None:
    """The LM annotator with the most submitted labels on a dataset (ties by name): the judge
    whose labels a sweep uses unless one is named."""
    row = store.conn.execute(
        "SELECT a.annotator, count(*) AS n FROM annotations a "
        "JOIN instances i ON i.id = a.instance_id "
        "WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' AND a.status = 'submitted' "
        "AND a.overall IS NOT NULL GROUP BY a.annotator ORDER BY n DESC, a.annotator "
        "LIMIT 1",
        (dataset_id,),
    ).fetchone()
    return row[0] if row else None


# ---- labels ----------------------------------------------------------------------------------

REFERENCES = ("auto", "human", "gold")


def reference_source(gold: np.ndarray | None) -> str:
    """What a dataset's labels are judged against, by routing's proof and by trust or escalate:
    ``gold`` where at least half the instances carry a gold side, else the ``human`` majority."""
    if gold is not None and len(gold) and (np.asarray(gold) != 0).mean() >= 0.5:
        return "gold"
    return "human"


@dataclass
class LabelConfig:
    """How a human or LM preference becomes a training label (the paper: ties dropped, "slightly"
    counts as a plain preference)."""

    slight: str = field(
        default="collapse",
        metadata={"help": "collapse: A-slightly counts as A; drop: only clear preferences train."},
    )
    judge: str | None = field(
        default=None, metadata={"help": "The LM judge whose labels are used (default: the one "
                                        "with the most labels on the dataset)."}
    )  # fmt: skip

    def validate(self) -> LabelConfig:
        if self.slight not in ("collapse", "drop"):
            raise CuratorError(f"slight must be collapse or drop, not {self.slight!r}")
        return self


def _kept(value: int, slight: str) -> bool:
    """Whether a label trains at all: with ``slight=drop`` only clear preferences (and ties) do."""
    return slight == "collapse" or abs(value) != 1


@dataclass
class SplitLabels:
    """Per instance (in id order) the human majority and the LM judge's verdict: -1 A, 1 B, 0 none;
    and the instance's own ``gold`` side where the dataset carries one (the demo's hidden truth, an
    imported gold column), else 0."""

    instance_ids: np.ndarray
    human: np.ndarray
    lm: np.ndarray
    judge: str | None
    gold: np.ndarray | None = None

    @classmethod
    def load(cls, store: Store, dataset: str, config: LabelConfig | None = None) -> SplitLabels:
        config = (config or LabelConfig()).validate()
        ds = store.dataset(dataset)
        id_rows = store.conn.execute(
            "SELECT id, gold FROM instances WHERE dataset_id = ? ORDER BY id", (ds["id"],)
        ).fetchall()
        ids = np.array([r[0] for r in id_rows], dtype=np.int64)
        gold = np.array([int(np.sign(r[1] or 0)) for r in id_rows], dtype=np.int8)
        judge = config.judge if config.judge is not None else busiest_judge(store, ds["id"])
        human: list[tuple[int, int]] = []
        lm: dict[int, int] = {}
        rows = store.conn.execute(
            "SELECT a.instance_id, a.annotator_kind, a.annotator, a.overall FROM annotations a "
            "JOIN instances i ON i.id = a.instance_id "
            "WHERE i.dataset_id = ? AND a.status = 'submitted' AND a.overall IS NOT NULL "
            "ORDER BY a.id",
            (ds["id"],),
        )
        for instance_id, kind, annotator, overall in rows:
            if not _kept(int(overall), config.slight):
                continue
            if kind == "human":
                human.append((instance_id, int(np.sign(overall))))
            elif annotator == judge:
                lm[instance_id] = int(np.sign(overall))  # the latest label of that judge wins
        row_of = {int(i): k for k, i in enumerate(ids)}
        human_v = np.zeros(len(ids), dtype=np.int8)
        lm_v = np.zeros(len(ids), dtype=np.int8)
        # the strict plurality side; no majority (or a tie winning) leaves 0, which is dropped
        winners = majority(pd.DataFrame(human, columns=["item", "value"]))
        for instance_id, value in winners.items():
            human_v[row_of[int(instance_id)]] = value
        for instance_id, value in lm.items():
            lm_v[row_of[instance_id]] = value
        return cls(ids, human_v, lm_v, judge, gold)

    @property
    def reference_source(self) -> str:
        """What routing is proven against (:func:`reference_source`)."""
        return reference_source(self.gold)

    @property
    def reference(self) -> np.ndarray:
        """Each instance's true side for scoring (0: none, not scored)."""
        return self.gold if self.reference_source == "gold" else self.human

    def for_split(self, human_mask: np.ndarray) -> np.ndarray:
        """Each instance's training label under a split (0: dropped)."""
        return np.where(human_mask, self.human, self.lm)

    def require_both(self) -> None:
        """Sweeps and evaluations compare the two sources, so both must label the dataset."""
        n_human = int((self.human != 0).sum())
        n_lm = int((self.lm != 0).sum())
        if n_human == 0 or n_lm == 0:
            missing = "human" if n_human == 0 else "LM-judge"
            raise CuratorError(
                f"this needs instances with both human and LM labels, and no instance has a "
                f"usable {missing} label (run a judge, or import a dataset labelled by both)"
            )


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
