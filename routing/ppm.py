"""The performance predictor (PPM): from a split's vector (human-labelled instances per feature)
to the eval score a reward model trained on that split gets.

LightGBM is the main model (the paper's settings: 100 trees, learning rate 0.1, 31 leaves); linear
and quadratic regressions are the baselines the paper also fits. Fit quality is reported as
cross-validated R^2 and Spearman (out-of-fold predictions), with a learning curve over the number
of sweep runs, so a user can see whether more runs would help. Models are stored as text (LightGBM's
own format, or JSON coefficients) under the workspace's ``models/`` folder, never pickled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CuratorError
from curation.store import Store
from routing.sweeps import SweepRuns, sweep_info

PPM_KINDS = ("lightgbm", "linear", "quadratic")
# Chosen by held-out routing gain on real labels (benchmarks/routing_real.py), not by CV R^2.
DEFAULT_KIND = "linear"


@dataclass
class PPMConfig:
    kind: str = field(
        default=DEFAULT_KIND, metadata={"help": "linear (default), quadratic or lightgbm."}
    )
    n_estimators: int = field(default=100, metadata={"help": "LightGBM trees."})
    learning_rate: float = field(default=0.1, metadata={"help": "LightGBM learning rate."})
    num_leaves: int = field(default=31, metadata={"help": "LightGBM leaves per tree."})
    min_child_samples: int = field(
        default=10, metadata={"help": "LightGBM: runs a leaf needs (sweeps are small)."}
    )
    ridge: float = field(default=1.0, metadata={"help": "Quadratic model's L2 penalty."})
    monotone: bool = field(
        default=True,
        metadata={"help": "LightGBM: constrain each feature's effect to the sign the linear fit "
                          "gives it (more human labels on a feature help, or hurt, throughout)."},
    )  # fmt: skip
    folds: int = field(default=5, metadata={"help": "Cross-validation folds."})
    seed: int = field(default=0, metadata={"help": "Seed of the folds and of LightGBM."})

    def validate(self) -> PPMConfig:
        if self.kind not in PPM_KINDS:
            raise CuratorError(f"kind must be one of {', '.join(PPM_KINDS)}, not {self.kind!r}")
        if self.folds < 2:
            raise CuratorError("cross-validation needs at least 2 folds")
        return self


# ---- the regressors --------------------------------------------------------------------------


class _Linear:
    """Ordinary least squares (the paper's linear PPM), minimum-norm for collinear features."""

    kind = "linear"

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Linear:
        design = np.hstack([x, np.ones((len(x), 1))])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.coef, self.intercept = solution[:-1], float(solution[-1])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float) @ self.coef + self.intercept

    def state(self) -> dict[str, Any]:
        return {"coef": self.coef.tolist(), "intercept": self.intercept}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Linear:
        model = cls()
        model.coef, model.intercept = np.array(state["coef"]), float(state["intercept"])
        return model


def _quadratic_terms(x: np.ndarray) -> np.ndarray:
    rows, cols = np.triu_indices(x.shape[1])
    return np.hstack([x, x[:, rows] * x[:, cols]])


class _Quadratic:
    """Ridge regression on the features, their squares and pairwise products (standardised)."""

    kind = "quadratic"

    def __init__(self, ridge: float = 1.0):
        self.ridge = ridge

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Quadratic:
        terms = _quadratic_terms(np.asarray(x, dtype=float))
        self.mean, self.scale = terms.mean(0), terms.std(0)
        self.scale[self.scale == 0] = 1.0
        z = (terms - self.mean) / self.scale
        self.intercept = float(y.mean())
        gram = z.T @ z + self.ridge * np.eye(z.shape[1])
        self.coef = np.linalg.solve(gram, z.T @ (y - self.intercept))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (_quadratic_terms(np.asarray(x, dtype=float)) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def state(self) -> dict[str, Any]:
        return {
            "ridge": self.ridge,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Quadratic:
        model = cls(state["ridge"])
        model.mean, model.scale = np.array(state["mean"]), np.array(state["scale"])
        model.coef, model.intercept = np.array(state["coef"]), float(state["intercept"])
        return model


class _LightGBM:
    kind = "lightgbm"

    def __init__(self, config: PPMConfig):
        self.config = config
        self.booster = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> _LightGBM:
        import lightgbm as lgb

        extra: dict[str, Any] = {}
        if self.config.monotone:
            signs = np.sign(_Linear().fit(x, y).coef).astype(int)
            extra = {"monotone_constraints": signs.tolist(),
                     "monotone_constraints_method": "advanced"}  # fmt: skip
        model = lgb.LGBMRegressor(
            **extra,
            objective="regression",
            n_estimators=self.config.n_estimators,
            learning_rate=self.config.learning_rate,
            num_leaves=self.config.num_leaves,
            min_child_samples=self.config.min_child_samples,
            random_state=self.config.seed,
            n_jobs=1,  # LAB-NOTES: with the default thread count it stalls when a core is busy
            verbose=-1,
        )
        model.fit(np.asarray(x, dtype=float), y)
        self.booster = model.booster_
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(np.asarray(x, dtype=float), num_threads=1)

    def gain_importance(self) -> np.ndarray:
        return self.booster.feature_importance(importance_type="gain")

    def state(self) -> str:
        return self.booster.model_to_string()

    @classmethod
    def from_state(cls, text: str) -> _LightGBM:
        import lightgbm as lgb

        model = cls(PPMConfig())
        model.booster = lgb.Booster(model_str=text)
        return model


def make_regressor(config: PPMConfig):
    if config.kind == "lightgbm":
        return _LightGBM(config)
    if config.kind == "linear":
        return _Linear()
    return _Quadratic(config.ridge)


# ---- fit quality -----------------------------------------------------------------------------


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else 0.0


def _budget_only(budgets: np.ndarray, train: np.ndarray, test: np.ndarray, y: np.ndarray):
    """A quadratic in the budget alone, fitted on ``train``: what the budget explains."""
    design = np.vander(budgets, 3)
    coef, *_ = np.linalg.lstsq(design[train], y[train], rcond=None)
    return design[test] @ coef


def within_budget_spearman(y: np.ndarray, predicted: np.ndarray, budgets: np.ndarray,
                           bins: int = 5) -> float:  # fmt: skip
    """Spearman of score and prediction inside budget quintiles, weighted by size: how well the
    predictor orders splits of about the same budget, which is what a router compares."""
    edges = np.quantile(budgets, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, budgets, side="right")
    total, weight = 0.0, 0
    for b in np.unique(which):
        members = which == b
        if members.sum() >= 5:
            total += members.sum() * _spearman(y[members], predicted[members])
            weight += int(members.sum())
    return float(total / weight) if weight else 0.0


def cross_validate(
    x: np.ndarray, y: np.ndarray, config: PPMConfig, budgets: np.ndarray | None = None
) -> dict[str, float]:
    """Out-of-fold R^2, Spearman and RMSE of a PPM kind on these runs; with the runs' budgets
    also the fit with the budget's share removed: ``partial_r2`` (1 - the predictor's squared
    error over that of a quadratic in the budget alone, both out of fold) and
    ``spearman_within_budget``. A raw R^2 over splits of many budgets mostly measures the budget."""
    n = len(y)
    folds = min(config.folds, n)
    if folds < 2:
        raise CuratorError("cross-validation needs at least 2 sweep runs")
    order = np.random.default_rng(config.seed).permutation(n)
    predicted = np.zeros(n)
    by_budget = np.zeros(n)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        predicted[test] = make_regressor(config).fit(x[train], y[train]).predict(x[test])
        if budgets is not None:
            by_budget[test] = _budget_only(budgets, train, test, y)
    residual = ((y - predicted) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    out = {
        "r2": float(1 - residual / total) if total > 0 else 0.0,
        "spearman": _spearman(y, predicted),
        "rmse": float(np.sqrt(residual / n)),
        "folds": folds,
        "runs": n,
    }
    if budgets is not None:
        budget_residual = ((y - by_budget) ** 2).sum()
        out["partial_r2"] = float(1 - residual / budget_residual) if budget_residual > 0 else 0.0
        out["spearman_within_budget"] = within_budget_spearman(y, predicted, budgets)
    return out


def learning_curve(
    x: np.ndarray, y: np.ndarray, config: PPMConfig, points: int = 5, budgets=None
) -> list[dict[str, float]]:
    """Cross-validated fit with the first k runs (in a fixed random order), for growing k."""
    n = len(y)
    smallest = max(config.folds * 2, 10)
    if n < smallest:
        return []
    order = np.random.default_rng(config.seed + 1).permutation(n)
    sizes = sorted({int(s) for s in np.linspace(smallest, n, points)})
    return [
        {"runs": k, **cross_validate(x[order[:k]], y[order[:k]], config,
                                     None if budgets is None else budgets[order[:k]])}
        for k in sizes
    ]  # fmt: skip


# ---- the predictor ---------------------------------------------------------------------------


@dataclass
class PerformancePredictor:
    """A fitted PPM with the feature names its columns mean."""

    kind: str
    names: list[str]
    model: Any
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    def predict(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.atleast_2d(np.asarray(vectors, dtype=float))
        if vectors.shape[1] != len(self.names):
            raise CuratorError(
                f"the predictor reads {len(self.names)} features, got {vectors.shape[1]}"
            )
        return self.model.predict(vectors)

    def importances(self, x: np.ndarray) -> dict[str, float]:
        """Share of the fit each feature carries: LightGBM's split gain, or for the regressions the
        drop in R^2 when the feature's column is shuffled (on the training runs)."""
        if isinstance(self.model, _LightGBM):
            raw = self.model.gain_importance().astype(float)
        else:
            rng = np.random.default_rng(0)
            base = self.model.predict(x)
            raw = np.zeros(len(self.names))
            for j in range(len(self.names)):
                shuffled = x.copy()
                shuffled[:, j] = rng.permutation(shuffled[:, j])
                raw[j] = float(np.mean((self.model.predict(shuffled) - base) ** 2))
        total = raw.sum()
        shares = raw / total if total > 0 else raw
        return {n: float(v) for n, v in sorted(zip(self.names, shares, strict=True),
                                               key=lambda t: -t[1])}  # fmt: skip

    def feature_gain(
        self,
        features: np.ndarray,
        count: int,
        *,
        references: int = 16,
        step: float = 0.1,
        seed: int = 0,
    ) -> np.ndarray:
        """Per feature, the predicted score change per extra human-labelled instance that has it,
        around splits of ``count`` instances (the paper's gain, measured where the router works).

        A tree model is flat almost everywhere, so the slope is a central difference over a step of
        ``step`` times the feature's instance count, averaged over ``references`` uniform splits.
        """
        n, m = features.shape
        totals = features.sum(axis=0).astype(float)
        rng = np.random.default_rng(seed)
        refs = np.stack(
            [features[rng.choice(n, size=count, replace=False)].sum(0) for _ in range(references)]
        ).astype(float)
        deltas = np.maximum(1.0, np.round(step * totals))
        up = np.repeat(refs[:, None, :], m, axis=1)
        down = up.copy()
        idx = np.arange(m)
        up[:, idx, idx] = np.minimum(refs + deltas, totals)
        down[:, idx, idx] = np.maximum(refs - deltas, 0.0)
        width = up[:, idx, idx] - down[:, idx, idx]
        rise = self.predict(up.reshape(-1, m)).reshape(references, m) - self.predict(
            down.reshape(-1, m)
        ).reshape(references, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            slopes = np.where(width > 0, rise / width, 0.0)
        return slopes.mean(axis=0)

    def save(self, path: Path) -> Path:
        state = self.model.state()
        payload = {"kind": self.kind, "names": self.names}
        if isinstance(state, str):
            path = path.with_suffix(".txt")
            path.write_text(state, encoding="utf-8")
            path.with_suffix(".json").write_text(json.dumps(payload), encoding="utf-8")
        else:
            path = path.with_suffix(".json")
            path.write_text(json.dumps({**payload, "state": state}), encoding="utf-8")
        return path

    @classmethod
    def load_file(cls, path: Path) -> PerformancePredictor:
        try:
            if path.suffix == ".txt":
                meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
                model = _LightGBM.from_state(path.read_text(encoding="utf-8"))
            else:
                meta = json.loads(path.read_text(encoding="utf-8"))
                kinds = {"linear": _Linear, "quadratic": _Quadratic}
                model = kinds[meta["kind"]].from_state(meta["state"])
        except (OSError, KeyError, ValueError) as exc:
            raise CuratorError(f"cannot read the performance predictor {path}: {exc}") from exc
        return cls(meta["kind"], list(meta["names"]), model)


def min_runs(config: PPMConfig) -> int:
    """The fewest sweep runs a predictor is fitted on (one per fold, and never under five)."""
    return max(config.folds, 5)


def fit_predictor(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    config: PPMConfig | None = None,
    budgets: np.ndarray | None = None,
) -> PerformancePredictor:
    """Fit on all runs, with cross-validated metrics, a learning curve and importances."""
    config = (config or PPMConfig()).validate()
    if len(y) < min_runs(config):
        raise CuratorError(
            f"{len(y)} sweep runs are too few to fit a predictor (at least {min_runs(config)})"
        )
    predictor = PerformancePredictor(config.kind, list(names), make_regressor(config).fit(x, y))
    predictor.metrics = {
        "cv": cross_validate(x, y, config, budgets),
        "learning_curve": learning_curve(x, y, config, budgets=budgets),
        "importances": predictor.importances(x),
    }
    return predictor


def compare_kinds(
    x: np.ndarray, y: np.ndarray, config: PPMConfig | None = None, budgets=None
) -> dict:
    """Cross-validated fit of every PPM kind on the same runs (LightGBM against its baselines)."""
    config = config or PPMConfig()
    return {kind: cross_validate(x, y, PPMConfig(**{**asdict(config), "kind": kind}), budgets)
            for kind in PPM_KINDS}  # fmt: skip


def train_ppm(store: Store, sweep_id: int, config: PPMConfig | None = None) -> PerformancePredictor:
    """Fit a PPM on a sweep's runs, store it (file + ``ppms`` row) and return it with its id."""
    config = (config or PPMConfig()).validate()
    runs = SweepRuns.load(store, sweep_id)
    info = sweep_info(store, sweep_id)
    predictor = fit_predictor(runs.vectors, runs.scores, runs.names, config, runs.budgets)
    predictor.metrics["baselines"] = compare_kinds(runs.vectors, runs.scores, config, runs.budgets)
    predictor.provenance = {
        "sweep_id": sweep_id,
        "dataset": info["dataset"],
        "eval_dataset": info["eval_dataset"],
        "runs": len(runs),
        "sweep_config": info["config"],
        "ppm_config": asdict(config),
        "runs_digest": hashlib.sha256(
            np.ascontiguousarray(runs.vectors).tobytes() + runs.scores.tobytes()
        ).hexdigest()[:16],
    }
    dataset_id = store.dataset(info["dataset"])["id"]
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO ppms(dataset_id, sweep_id, kind, metrics, provenance) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                dataset_id,
                sweep_id,
                config.kind,
                json.dumps(predictor.metrics),
                json.dumps(predictor.provenance),
            ),
        )
        ppm_id = int(cursor.lastrowid)
        path = predictor.save(store.workspace.dir("models") / f"ppm-{ppm_id}")
        # stored relative to models/, and read back through confine(): a row cannot point outside
        store.conn.execute("UPDATE ppms SET path = ? WHERE id = ?", (path.name, ppm_id))
    predictor.id = ppm_id
    return predictor


def load_ppm(store: Store, ppm_id: int | None = None, *, dataset: str | None = None):
    """A stored PPM by id, or the newest one trained on ``dataset`` (or at all)."""
    if ppm_id is None:
        sql, params = "SELECT id FROM ppms", []
        if dataset:
            sql += " WHERE dataset_id = ?"
            params.append(store.dataset(dataset)["id"])
        row = store.conn.execute(sql + " ORDER BY id DESC LIMIT 1", params).fetchone()
        if row is None:
            where = f" for {dataset!r}" if dataset else ""
            raise CuratorError(f"no performance predictor{where} yet: run `curator sweep` first")
        ppm_id = row[0]
    row = store.conn.execute(
        "SELECT id, kind, path, metrics, provenance FROM ppms WHERE id = ?", (ppm_id,)
    ).fetchone()
    if row is None or not row["path"]:
        raise CuratorError(f"no performance predictor with id {ppm_id}")
    path = store.workspace.confine(row["path"], base="models")
    predictor = PerformancePredictor.load_file(path)
    predictor.metrics = json.loads(row["metrics"])
    predictor.provenance = json.loads(row["provenance"])
    predictor.id = int(row["id"])
    return predictor
