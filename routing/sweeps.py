"""Reward-model sweeps: many reward models, each trained on one sampled human/LM split, each scored
on a RewardBench-format eval set. Their (split vector, score) rows are what the performance
predictor learns from.

Every run is stored as soon as it finishes, so a sweep that is stopped (a closed page, a killed
job) keeps its runs, and ``run_sweep(..., sweep_id=...)`` adds more to the same sweep.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curation.errors import CuratorError
from curation.evalsets import EvalSet
from curation.store import Store
from routing.embeddings import Encoder, EncoderConfig
from routing.features import FeatureMatrix
from routing.reward_probe import PairDesign, ProbeConfig, evaluate_probe, train_probe
from routing.splits import SAMPLERS, LabelConfig, SplitLabels, sample_split, split_vector

SCORERS = ("probe", "reward_model")
# (runs done, runs asked for)
Progress = Callable[[int, int], None]


@dataclass
class SweepConfig:
    """One sweep's settings; stored with the sweep so its runs can be reproduced."""

    runs: int = field(default=200, metadata={"help": "Reward models to train."})
    sampler: str = field(
        default="mixed",
        metadata={
            "help": "grouped (the paper's feature-grouped draw), uniform, or mixed (alternate)."
        },
    )
    min_budget: float = field(default=0.0, metadata={"help": "Smallest human share drawn."})
    max_budget: float = field(default=1.0, metadata={"help": "Largest human share drawn."})
    seed: int = field(default=0, metadata={"help": "Seed of the split draws."})
    scorer: str = field(
        default="probe",
        metadata={"help": "probe (a Bradley-Terry probe on frozen embeddings: seconds a run), or "
                          "reward_model (a full reward model a run: minutes on CPU, for GPUs; "
                          "runs as a background job)."},
    )  # fmt: skip
    labels: LabelConfig = field(default_factory=LabelConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def validate(self) -> SweepConfig:
        if self.runs < 1:
            raise CuratorError("a sweep needs at least one run")
        if self.sampler not in (*SAMPLERS, "mixed"):
            raise CuratorError(f"sampler must be grouped, uniform or mixed, not {self.sampler!r}")
        if self.scorer not in SCORERS:
            raise CuratorError(f"scorer must be one of {', '.join(SCORERS)}, not {self.scorer!r}")
        if not 0 <= self.min_budget <= self.max_budget <= 1:
            raise CuratorError("budgets must satisfy 0 <= min_budget <= max_budget <= 1")
        self.labels.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        data = dict(data)
        labels = LabelConfig(**data.pop("labels", {}))
        probe = ProbeConfig(**data.pop("probe", {}))
        encoder = EncoderConfig(**data.pop("encoder", {}))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, labels=labels, probe=probe, encoder=encoder)


@dataclass
class SweepData:
    """Everything a sweep's runs share, loaded once: features, labels, the two designs."""

    features: FeatureMatrix
    labels: SplitLabels
    design: PairDesign
    evalset: EvalSet
    eval_design: PairDesign

    @classmethod
    def load(
        cls,
        store: Store,
        dataset: str,
        eval_dataset: str,
        *,
        labels: LabelConfig | None = None,
        encoder: EncoderConfig | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SweepData:
        features = FeatureMatrix.load(store, dataset)
        split_labels = SplitLabels.load(store, dataset, labels)
        split_labels.require_both()
        model = Encoder(encoder or EncoderConfig())
        design = PairDesign.for_dataset(store, dataset, model, progress=progress)
        evalset = EvalSet.load(store, eval_dataset)
        eval_design = PairDesign.for_eval(store, evalset, model, progress=progress)
        return cls(features, split_labels, design, evalset, eval_design)

    def score(self, human_mask: np.ndarray, probe: ProbeConfig, rows: np.ndarray | None = None):
        """Train a probe on the split's labels (optionally only on ``rows``) and score it."""
        labels = self.labels.for_split(human_mask)
        if rows is not None:
            keep = np.zeros(len(labels), dtype=bool)
            keep[rows] = True
            labels = np.where(keep, labels, 0)
        weights = train_probe(self.design.diffs, labels, probe)
        return evaluate_probe(weights, self.eval_design, self.evalset), int((labels != 0).sum())


def create_sweep(store: Store, dataset: str, eval_dataset: str, config: SweepConfig) -> int:
    ds = store.dataset(dataset)
    ev = store.dataset(eval_dataset)
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO sweeps(dataset_id, eval_dataset_id, config) VALUES (?, ?, ?)",
            (ds["id"], ev["id"], json.dumps(config.to_dict())),
        )
    return int(cursor.lastrowid)


def sweep_info(store: Store, sweep_id: int) -> dict[str, Any]:
    row = store.conn.execute(
        "SELECT s.id, d.name AS dataset, e.name AS eval_dataset, s.config, s.created_at, "
        "(SELECT count(*) FROM sweep_runs r WHERE r.sweep_id = s.id) AS runs "
        "FROM sweeps s JOIN datasets d ON d.id = s.dataset_id "
        "LEFT JOIN datasets e ON e.id = s.eval_dataset_id WHERE s.id = ?",
        (sweep_id,),
    ).fetchone()
    if row is None:
        raise CuratorError(f"no sweep with id {sweep_id}")
    info = dict(row)
    info["config"] = json.loads(info["config"])
    return info


def list_sweeps(store: Store, dataset: str | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT s.id, d.name AS dataset, e.name AS eval_dataset, s.created_at, "
        "(SELECT count(*) FROM sweep_runs r WHERE r.sweep_id = s.id) AS runs, "
        "(SELECT max(score) FROM sweep_runs r WHERE r.sweep_id = s.id) AS best_score "
        "FROM sweeps s JOIN datasets d ON d.id = s.dataset_id "
        "LEFT JOIN datasets e ON e.id = s.eval_dataset_id"
    )
    params: list[Any] = []
    if dataset:
        sql += " WHERE d.name = ?"
        params.append(dataset)
    return [dict(r) for r in store.conn.execute(sql + " ORDER BY s.id DESC", params)]


def run_sweep(
    store: Store,
    dataset: str,
    eval_dataset: str,
    config: SweepConfig | None = None,
    *,
    sweep_id: int | None = None,
    data: SweepData | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Train and score ``config.runs`` probes on sampled splits; returns the sweep's id.

    With ``sweep_id`` the runs are added to that sweep (its stored config decides the labels
    and the probe; the seed moves on so new runs draw new splits).
    """
    if sweep_id is not None:
        info = sweep_info(store, sweep_id)
        stored = SweepConfig.from_dict(info["config"])
        if config is not None:
            stored.runs = config.runs
        config = stored
        dataset, eval_dataset = info["dataset"], info["eval_dataset"]
        done_before = info["runs"]
    else:
        done_before = 0
    config = (config or SweepConfig()).validate()
    if data is None and config.scorer != "probe":
        raise CuratorError(
            "sweeps that train a full reward model per run are background jobs: "
            "`curator sweep ... --scorer reward_model --background`"
        )
    data = data or SweepData.load(
        store, dataset, eval_dataset, labels=config.labels, encoder=config.encoder
    )
    if sweep_id is None:
        sweep_id = create_sweep(store, dataset, eval_dataset, config)
    rng = np.random.default_rng([config.seed, done_before])
    matrix = data.features.matrix
    n = len(data.features.instance_ids)
    lo, hi = round(config.min_budget * n), round(config.max_budget * n)
    for k in range(config.runs):
        if should_stop and should_stop():
            break
        started = time.perf_counter()
        count = int(rng.integers(lo, hi + 1))
        sampler = config.sampler
        if sampler == "mixed":
            sampler = "grouped" if (done_before + k) % 2 == 0 else "uniform"
        mask = sample_split(matrix, count, rng, sampler)
        score, n_train = data.score(mask, config.probe)
        vector = split_vector(matrix, mask)
        details = {
            "sampler": sampler,
            "n_human": int(mask.sum()),
            "n_train": n_train,
            "categories": score.categories,
            "seconds": round(time.perf_counter() - started, 4),
        }
        human_ids = data.features.instance_ids[mask].tolist()
        with store.write():
            store.conn.execute(
                "INSERT INTO sweep_runs(sweep_id, budget, human_ids, feature_vector, score, "
                "details) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sweep_id,
                    count / n if n else 0.0,
                    json.dumps(human_ids),
                    json.dumps(dict(zip(data.features.names, vector.tolist(), strict=True))),
                    score.overall,
                    json.dumps(details),
                ),
            )
        if progress:
            progress(k + 1, config.runs)
    return sweep_id


@dataclass
class SweepRuns:
    """A sweep's runs as the predictor reads them: X (split vectors), y (scores), budgets."""

    sweep_id: int
    names: list[str]
    vectors: np.ndarray
    scores: np.ndarray
    budgets: np.ndarray

    @classmethod
    def load(cls, store: Store, sweep_id: int) -> SweepRuns:
        rows = store.conn.execute(
            "SELECT feature_vector, score, budget FROM sweep_runs "
            "WHERE sweep_id = ? AND score IS NOT NULL ORDER BY id",
            (sweep_id,),
        ).fetchall()
        if not rows:
            raise CuratorError(f"sweep {sweep_id} has no finished runs yet")
        dicts = [json.loads(r[0]) for r in rows]
        names = sorted(set().union(*dicts))
        vectors = np.array([[d.get(name, 0.0) for name in names] for d in dicts], dtype=float)
        return cls(
            sweep_id,
            names,
            vectors,
            np.array([r[1] for r in rows], dtype=float),
            np.array([r[2] for r in rows], dtype=float),
        )

    def __len__(self) -> int:
        return len(self.scores)
