"""The router: which instances get human labels under a budget, by a performance predictor.

Three methods, as in the paper's code:

- ``topk``: each instance's gain is the sum of its features' per-instance gains (the predictor's
  slope around splits of the budget's size); the top-k instances go to humans (ties broken at
  random, by the seed).
- ``simulated``: draw N candidate splits of the budget's size (half feature-grouped, half
  uniform), keep the one the predictor scores highest.
- ``greedy``: walk down the instances by gain in steps, keeping a step only when the predictor says
  it raises the score by more than ``epsilon`` per instance; it may spend less than the budget.

A plan is stored in ``route_plans`` / ``route_plan_items`` (every instance with its target and
gain); the annotation queue takes its human items (``curation.queues.assign_plan``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from curation.errors import CuratorError
from curation.store import Store
from routing.features import FeatureMatrix
from routing.ppm import PerformancePredictor, load_ppm
from routing.splits import budget_count, sample_grouped, split_vector, split_vectors

METHODS = ("topk", "simulated", "greedy")


def default_method(kind: str) -> str:
    """The paper's pairing: a linear predictor routes top-k (its per-instance gain is exact), the
    others by simulated candidates."""
    return "topk" if kind == "linear" else "simulated"


@dataclass
class RouteConfig:
    method: str = field(default="topk", metadata={"help": "topk, simulated or greedy."})
    budget: float = field(
        default=0.25, metadata={"help": "Human share (0-1) or a number of instances."}
    )
    candidates: int = field(default=1000, metadata={"help": "simulated: candidate splits."})
    epsilon: float = field(
        default=1e-6, metadata={"help": "greedy: least predicted gain per instance to keep a step."}
    )
    steps: int = field(default=100, metadata={"help": "greedy: steps the budget is walked in."})
    seed: int = field(default=0, metadata={"help": "Tie-breaking and candidate draws."})

    def validate(self) -> RouteConfig:
        if self.method not in METHODS:
            raise CuratorError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.candidates < 1 or self.steps < 1:
            raise CuratorError("candidates and steps must be at least 1")
        return self


@dataclass
class RoutePlan:
    dataset: str
    method: str
    budget: int
    instance_ids: np.ndarray
    human: np.ndarray  # bool per instance
    gains: np.ndarray  # per instance
    predicted_score: float
    params: dict[str, Any]
    ppm_id: int | None = None
    id: int | None = None

    @property
    def human_ids(self) -> list[int]:
        return self.instance_ids[self.human].tolist()

    def summary(self) -> dict[str, Any]:
        return {
            "plan_id": self.id,
            "dataset": self.dataset,
            "method": self.method,
            "budget": self.budget,
            "human": int(self.human.sum()),
            "lm": int((~self.human).sum()),
            "predicted_score": self.predicted_score,
            "ppm_id": self.ppm_id,
        }


def centred_by_dimension(names: list[str], gains: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-feature gains with each dimension's (``name=value`` columns sharing a ``name``)
    instance-weighted mean taken out.

    A dimension's columns add up to the number of human labels on the instances that have a
    value, so the predictor cannot tell a common offset of them from the budget's own effect: an
    ordinary least-squares fit puts an arbitrary share of the budget there. Within a dimension
    every instance has one column, so only the differences rank instances; where a tag abstains
    (no column) the instance is ranked as an average one, not as one that lacks a bonus."""
    out = np.asarray(gains, dtype=float).copy()
    dimensions: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        dimensions.setdefault(name.split("=", 1)[0], []).append(j)
    for columns in dimensions.values():
        weights = counts[columns].astype(float)
        if weights.sum() > 0:
            out[columns] -= float(weights @ out[columns] / weights.sum())
    return out


def instance_gains(
    predictor: PerformancePredictor, features: np.ndarray, count: int, seed: int = 0
) -> np.ndarray:
    """Per instance, the predicted score change from giving it a human label (relative to an
    average instance; see :func:`centred_by_dimension`)."""
    per_feature = predictor.feature_gain(features, count, seed=seed)
    per_feature = centred_by_dimension(predictor.names, per_feature, features.sum(axis=0))
    return features.astype(float) @ per_feature


def route_topk(gains: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    order = np.lexsort((rng.random(len(gains)), -gains))
    mask = np.zeros(len(gains), dtype=bool)
    mask[order[:count]] = True
    return mask


def route_simulated(
    predictor: PerformancePredictor,
    features: np.ndarray,
    count: int,
    candidates: int,
    rng: np.random.Generator,
    *,
    chunk: int = 500,
) -> np.ndarray:
    n = len(features)
    best_mask, best_score = None, -np.inf
    n_grouped = candidates // 2
    for start in range(0, candidates, chunk):
        size = min(chunk, candidates - start)
        masks = np.zeros((size, n), dtype=bool)
        for k in range(size):
            if start + k < n_grouped:
                masks[k] = sample_grouped(features, count, rng)
            else:
                masks[k, rng.choice(n, size=count, replace=False)] = True
        scores = predictor.predict(split_vectors(features, masks))
        top = int(np.argmax(scores))
        if scores[top] > best_score:
            best_score, best_mask = float(scores[top]), masks[top].copy()
    return best_mask


def route_greedy(
    predictor: PerformancePredictor,
    features: np.ndarray,
    gains: np.ndarray,
    count: int,
    epsilon: float,
    steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    order = np.lexsort((rng.random(len(gains)), -gains))
    mask = np.zeros(len(gains), dtype=bool)
    step = max(1, int(np.ceil(count / steps)))
    vector = np.zeros(features.shape[1])
    current = float(predictor.predict(vector)[0])
    taken = 0
    for start in range(0, len(order), step):
        if taken >= count:
            break
        chunk = order[start : start + min(step, count - taken)]
        trial = vector + features[chunk].sum(axis=0)
        score = float(predictor.predict(trial)[0])
        if (score - current) / len(chunk) > epsilon:
            mask[chunk] = True
            vector, current, taken = trial, score, taken + len(chunk)
    return mask


def choose_split(
    predictor: PerformancePredictor,
    features: np.ndarray,
    gains: np.ndarray,
    count: int,
    config: RouteConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """The human mask ``config.method`` picks for a budget of ``count`` instances."""
    if config.method == "topk":
        return route_topk(gains, count, rng)
    if config.method == "simulated":
        return route_simulated(predictor, features, count, config.candidates, rng)
    return route_greedy(predictor, features, gains, count, config.epsilon, config.steps, rng)


def route(
    store: Store,
    dataset: str,
    config: RouteConfig | None = None,
    *,
    predictor: PerformancePredictor | None = None,
    features: FeatureMatrix | None = None,
) -> RoutePlan:
    """Choose the human-labelled instances of ``dataset`` (not stored yet: see :func:`save_plan`)."""
    config = (config or RouteConfig()).validate()
    predictor = predictor or load_ppm(store, dataset=None)
    matrix = (features or FeatureMatrix.load(store, dataset)).aligned(predictor.names)
    n = len(matrix.instance_ids)
    count = budget_count(config.budget, n)
    rng = np.random.default_rng(config.seed)
    binary = matrix.matrix
    gains = instance_gains(predictor, binary, count, seed=config.seed)
    human = choose_split(predictor, binary, gains, count, config, rng)
    score = float(predictor.predict(split_vector(binary, human))[0])
    return RoutePlan(
        dataset=dataset,
        method=config.method,
        budget=count,
        instance_ids=matrix.instance_ids,
        human=human,
        gains=gains,
        predicted_score=score,
        params=asdict(config),
        ppm_id=predictor.id,
    )


def predicted_curve(
    predictor: PerformancePredictor,
    features: FeatureMatrix,
    budgets: list[float],
    *,
    seed: int = 0,
    random_draws: int = 8,
) -> list[dict[str, float]]:
    """Predicted score of the top-k split and of uniform splits at each budget (the Route
    page's slider curve)."""
    binary = features.aligned(predictor.names).matrix
    n = len(binary)
    rng = np.random.default_rng(seed)
    out = []
    for budget in budgets:
        count = budget_count(float(budget), n)
        gains = instance_gains(predictor, binary, count, seed=seed)
        routed = route_topk(gains, count, rng)
        masks = np.zeros((random_draws, n), dtype=bool)
        for k in range(random_draws):
            masks[k, rng.choice(n, size=count, replace=False)] = True
        random_scores = predictor.predict(split_vectors(binary, masks))
        out.append(
            {
                "budget": float(budget),
                "count": count,
                "routed": float(predictor.predict(split_vector(binary, routed))[0]),
                "random": float(random_scores.mean()),
            }
        )
    return out


def human_share_by_feature(features: FeatureMatrix, plan: RoutePlan) -> pd.DataFrame:
    """Which features earned human labels: per binary feature, the pairs having it, how many of
    those the plan sends to people, and that share; highest share first (then the commoner)."""
    rows = features.subset(plan.instance_ids.tolist()).matrix
    have = rows.sum(axis=0)
    human = (rows & plan.human[:, None]).sum(axis=0)
    share = np.divide(human, have, out=np.zeros(len(have)), where=have > 0)
    frame = pd.DataFrame(
        {"feature": features.names, "instances": have, "human": human, "share": share}
    )
    return frame.sort_values(["share", "instances"], ascending=[False, False], ignore_index=True)


# ---- storing plans ---------------------------------------------------------------------------


def save_plan(store: Store, plan: RoutePlan) -> int:
    dataset_id = store.dataset(plan.dataset)["id"]
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO route_plans(dataset_id, ppm_id, method, budget, predicted_score, params) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (dataset_id, plan.ppm_id, plan.method, plan.budget, plan.predicted_score,
             json.dumps(plan.params)),
        )  # fmt: skip
        plan_id = int(cursor.lastrowid)
        store.conn.executemany(
            "INSERT INTO route_plan_items(plan_id, instance_id, target, gain) VALUES (?, ?, ?, ?)",
            [
                (plan_id, int(i), "human" if h else "lm", float(g))
                for i, h, g in zip(plan.instance_ids, plan.human, plan.gains, strict=True)
            ],
        )
    plan.id = plan_id
    return plan_id


def list_plans(store: Store, dataset: str | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT p.id, d.name AS dataset, p.method, p.budget, p.predicted_score, p.ppm_id, "
        "p.created_at, (SELECT count(*) FROM route_plan_items t WHERE t.plan_id = p.id "
        "AND t.target = 'human') AS human FROM route_plans p JOIN datasets d ON d.id = p.dataset_id"
    )
    params: list[Any] = []
    if dataset:
        sql += " WHERE d.name = ?"
        params.append(dataset)
    return [dict(r) for r in store.conn.execute(sql + " ORDER BY p.id DESC", params)]
