"""Reward-model sweeps: many reward models, each trained on one sampled human/LM split, each scored
on a RewardBench-format eval set. Their (split vector, score) rows are what the performance
predictor learns from.

Every run is stored as soon as it finishes, so a sweep that is stopped (a closed page, a killed
job) keeps its runs, and ``run_sweep(..., sweep_id=...)`` adds more to the same sweep.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curation.embeddings import Encoder, EncoderConfig
from curation.errors import CuratorError
from curation.evalsets import EvalScore, EvalSet
from curation.pairs import LabelConfig, SplitLabels
from curation.store import Store
from routing.features import FeatureMatrix, PairTexts
from routing.reward_probe import (
    PairDesign,
    ProbeConfig,
    ProbeTexts,
    Representation,
    crossfit_accuracy,
    evaluate_probe,
    train_probe,
    tune_l2,
)
from routing.splits import SAMPLERS, sample_split, split_vector

SCORERS = ("probe", "reward_model")
TARGETS = ("crossfit", "eval")
# (runs done, runs asked for)
Progress = Callable[[int, int], None]
# The human masks of a sweep's runs -> each run's (score, training pairs, seconds), in order.
RunScorer = Callable[[list[np.ndarray]], Iterator[tuple[EvalScore, int, float]]]


@dataclass
class SweepConfig:
    """One sweep's settings; stored with the sweep so its runs can be reproduced."""

    runs: int = field(default=200, metadata={"help": "Reward models to train."})
    sampler: str = field(
        default="grouped",
        metadata={"help": "grouped (the paper's feature-grouped draw; default), uniform, or "
                          "mixed (alternate)."},
    )  # fmt: skip
    min_budget: float = field(default=0.0, metadata={"help": "Smallest human share drawn."})
    max_budget: float = field(default=1.0, metadata={"help": "Largest human share drawn."})
    seed: int = field(default=0, metadata={"help": "Seed of the split draws and of the folds."})
    scorer: str = field(
        default="probe",
        metadata={"help": "probe (a Bradley-Terry probe: milliseconds a run), or "
                          "reward_model (a full reward model a run: minutes on CPU, for GPUs; "
                          "runs as a background job)."},
    )  # fmt: skip
    target: str = field(
        default="crossfit",
        metadata={"help": "crossfit (k-fold cross-fitted agreement with gold, or with the human "
                          "majority, over the dataset's own pairs) or eval (a fixed "
                          "RewardBench-format eval set)."},
    )  # fmt: skip
    folds: int = field(default=5, metadata={"help": "crossfit: folds."})
    proof_share: float = field(
        default=0.5,
        metadata={"help": "Share of the scored pairs kept to prove routing: sweep runs are never "
                          "scored on them, so the predictor's target and the proof are disjoint."},
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
        if self.target not in TARGETS:
            raise CuratorError(f"target must be crossfit or eval, not {self.target!r}")
        if self.scorer == "reward_model" and self.target != "eval":
            raise CuratorError("a reward_model sweep is scored on an eval set: --target eval")
        if self.folds < 2:
            raise CuratorError("crossfit needs at least 2 folds")
        if not 0 <= self.proof_share < 1:
            raise CuratorError("proof_share must be in [0, 1)")
        if not 0 <= self.min_budget <= self.max_budget <= 1:
            raise CuratorError("budgets must satisfy 0 <= min_budget <= max_budget <= 1")
        self.labels.validate()
        self.probe.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """A stored config; sweeps stored before ``target`` existed were scored on an eval set
        with the MiniLM probe and the mixed sampler, and read back so."""
        data = dict(data)
        if data and "target" not in data:
            data.setdefault("target", "eval")
            data.setdefault("sampler", "mixed")
            data["probe"] = {"representation": "minilm", **(data.get("probe") or {})}
        labels = LabelConfig(**data.pop("labels", {}))
        probe_fields = ProbeConfig.__dataclass_fields__
        probe = ProbeConfig(**{k: v for k, v in data.pop("probe", {}).items() if k in probe_fields})
        encoder = EncoderConfig(**data.pop("encoder", {}))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, labels=labels, probe=probe, encoder=encoder)


def proof_rows(n: int, share: float, seed: int = 0) -> np.ndarray:
    """Which of ``n`` scored rows prove routing (True) and which score sweep runs (False): a
    seeded draw of ``share`` of them, fixed for a dataset so every sweep and proof agree."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng([seed, 104729]).permutation(n)[: round(share * n)]] = True
    return mask


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of ``n`` rows to ``folds`` folds of near-equal size."""
    return np.random.default_rng([seed, 31337]).permutation(n) % folds


@dataclass
class SweepData:
    """Everything a sweep's runs share, loaded once: features, labels, the probe's design, and
    what a run is scored on (a fixed eval set, or cross-fitted agreement with the reference).

    ``proof`` marks the scored rows (eval-set pairs, or the dataset's pairs under crossfit) that
    only :mod:`routing.evaluation` scores on; sweep runs score on the rest."""

    features: FeatureMatrix
    labels: SplitLabels
    design: PairDesign
    config: SweepConfig
    proof: np.ndarray
    evalset: EvalSet | None = None
    eval_design: PairDesign | None = None

    @classmethod
    def load(
        cls,
        store: Store,
        dataset: str,
        eval_dataset: str | None = None,
        config: SweepConfig | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> SweepData:
        config = (config or SweepConfig()).validate()
        features = FeatureMatrix.load(store, dataset).for_routing()
        split_labels = SplitLabels.load(store, dataset, config.labels)
        split_labels.require_both()
        texts = PairTexts.load(store, dataset)
        probe_texts = ProbeTexts(texts.instance_ids, texts.prompts, texts.response_a,
                                 texts.response_b, dataset)  # fmt: skip
        encoder = Encoder(config.encoder) if config.probe.uses_encoder else None
        rep = Representation.fit(probe_texts, config.probe, encoder)
        design = rep.design(store, probe_texts, progress=progress)
        evalset = eval_design = None
        if config.target == "eval":
            if not eval_dataset:
                raise CuratorError("a sweep scored on an eval set needs one: --eval EVALSET")
            evalset = EvalSet.load(store, eval_dataset)
            eval_texts = ProbeTexts(evalset.instance_ids, evalset.prompts, evalset.chosen,
                                    evalset.rejected, eval_dataset)  # fmt: skip
            eval_design = rep.design(store, eval_texts, progress=progress)
            n_scored = len(evalset.instance_ids)
        else:
            n_scored = len(split_labels.instance_ids)
        proof = proof_rows(n_scored, config.proof_share)
        data = cls(features, split_labels, design, config, proof, evalset, eval_design)
        if config.probe.l2 is None:
            data.config = SweepConfig.from_dict(config.to_dict())
            data.config.probe.l2 = data.tuned_l2()
        return data

    @property
    def target(self) -> str:
        return self.config.target

    def tuned_l2(self) -> float:
        """The probe's penalty, tuned by cross-validation on the human labels over the rows that
        sweeps score on (never the proof rows)."""
        n = len(self.labels.human)
        scored = ~self.proof if self.target == "crossfit" else np.ones(n, dtype=bool)
        folds = fold_ids(n, self.config.folds, self.config.seed)
        return tune_l2(self.design.diffs, self.labels.human, folds, scored, self.config.probe)

    def surviving(self, human_mask: np.ndarray) -> np.ndarray:
        """The human-labelled instances whose label trains (ties and no-majority are dropped)."""
        return human_mask & (self.labels.human != 0)

    def score(
        self,
        human_mask: np.ndarray,
        rows: np.ndarray | None = None,
        *,
        part: str = "fit",
        seed: int | None = None,
    ) -> tuple[EvalScore, int]:
        """Train probes on the split's labels (optionally only on ``rows``) and score them on the
        ``fit`` rows (sweep runs) or the ``proof`` rows (evaluation). ``seed`` redraws the
        crossfit folds (each evaluation seed); by default the sweep's own folds are used."""
        labels = self.labels.for_split(human_mask)
        if rows is not None:
            keep = np.zeros(len(labels), dtype=bool)
            keep[rows] = True
            labels = np.where(keep, labels, 0)
        scored = self.proof if part == "proof" else ~self.proof
        n_train = int((labels != 0).sum())
        probe = self.config.probe
        if self.target == "eval":
            weights = train_probe(self.design.diffs, labels, probe)
            score = evaluate_probe(weights, self.eval_design, self.evalset, np.flatnonzero(scored))
            return score, n_train
        folds = fold_ids(len(labels), self.config.folds,
                         self.config.seed if seed is None else seed)  # fmt: skip
        accuracy, n = crossfit_accuracy(
            self.design.diffs, labels, self.labels.reference, folds, scored, probe
        )
        return EvalScore(accuracy, {"crossfit": accuracy}, {"crossfit": accuracy}, n), n_train


# Pairs that carry a human and an LM verdict (not ties) below which a sweep is refused before it
# starts: each run's probe learns from a part of them and is scored on the rest (in folds, half
# held out for the proof), and on fewer the scores a predictor learns from are noise.
MIN_LABELLED_PAIRS = 50


def sweep_blocker(store: Store, dataset: str, config: SweepConfig | None = None) -> str | None:
    """Why a sweep cannot run on ``dataset`` now (features, labels), or None when it can."""
    config = config or SweepConfig()
    try:
        FeatureMatrix.load(store, dataset)
    except CuratorError as exc:
        return str(exc)
    try:
        labels = SplitLabels.load(store, dataset, config.labels)
        labels.require_both()
    except CuratorError as exc:
        return str(exc)
    both = int(((labels.human != 0) & (labels.lm != 0)).sum())
    if both < MIN_LABELLED_PAIRS:
        return (
            f"only {both} pairs carry both a human and an LM verdict (ties aside); a sweep needs "
            f"at least {MIN_LABELLED_PAIRS}: label more pairs, or run a judge over them"
        )
    return None


def create_sweep(store: Store, dataset: str, eval_dataset: str | None, config: SweepConfig) -> int:
    ds = store.dataset(dataset)
    ev_id = store.dataset(eval_dataset)["id"] if eval_dataset else None
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO sweeps(dataset_id, eval_dataset_id, config) VALUES (?, ?, ?)",
            (ds["id"], ev_id, json.dumps(config.to_dict())),
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
    eval_dataset: str | None,
    config: SweepConfig | None = None,
    *,
    sweep_id: int | None = None,
    data: SweepData | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    score_runs: RunScorer | None = None,
    replay: Sequence[tuple[EvalScore, int, float]] = (),
    on_run: Callable[[EvalScore, int, float], None] | None = None,
) -> int:
    """Train and score ``config.runs`` probes on sampled splits; returns the sweep's id.

    With ``sweep_id`` the runs are added to that sweep (its stored config decides the labels
    and the probe; the seed moves on so new runs draw new splits). ``score_runs`` scores the
    runs elsewhere (a job on a cluster spreads them over its nodes); by default they are scored
    here, one by one. Each run is stored as its score arrives, in the order drawn, and then
    passed to ``on_run``. ``replay`` holds the scores of the first runs, already known (a job
    retried on a cluster, whose first attempt's runs were lost with its node, replays them from
    its checkpoint): the splits are drawn the same way, so they are those runs' splits.
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
    data = data or SweepData.load(store, dataset, eval_dataset, config)
    if isinstance(data, SweepData) and config.probe != data.config.probe:
        # the penalty it tuned, stored with the sweep (a job creates its sweep before it loads
        # the data), so that more runs, a retry and the proof all use the same probe
        config.probe = data.config.probe
        if sweep_id is not None:
            with store.write():
                store.conn.execute("UPDATE sweeps SET config = ? WHERE id = ?",
                                   (json.dumps(config.to_dict()), sweep_id))  # fmt: skip
    if sweep_id is None:
        sweep_id = create_sweep(store, dataset, eval_dataset, config)
    matrix = data.features.matrix
    n = len(data.features.instance_ids)
    draws = draw_splits(matrix, config, done_before)
    if should_stop and should_stop():
        return sweep_id
    replay = list(replay)[: len(draws)]
    fresh = (score_runs or score_here(data))([mask for _, mask in draws[len(replay) :]])
    scores = itertools.chain(replay, fresh)
    for k, ((sampler, mask), (score, n_train, seconds)) in enumerate(
        zip(draws, scores, strict=False)
    ):
        vector = split_vector(matrix, data.surviving(mask))
        count = int(mask.sum())
        details = {
            "sampler": sampler,
            "n_human": count,
            "n_train": n_train,
            "categories": score.categories,
            "seconds": round(seconds, 4),
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
        if on_run:
            on_run(score, n_train, seconds)
        if progress:
            progress(k + 1, config.runs)
        if should_stop and should_stop():
            break
    return sweep_id


def draw_splits(
    matrix: np.ndarray, config: SweepConfig, done_before: int = 0
) -> list[tuple[str, np.ndarray]]:
    """(sampler, human mask) for each of a sweep's next ``config.runs`` runs.

    All are drawn before any run is scored, from a generator seeded by the sweep's seed and the
    runs it already has, so the splits are the same whether the runs are scored one by one here
    or all at once on a cluster."""
    rng = np.random.default_rng([config.seed, done_before])
    n = len(matrix)
    lo, hi = round(config.min_budget * n), round(config.max_budget * n)
    draws = []
    for k in range(config.runs):
        count = int(rng.integers(lo, hi + 1))
        sampler = config.sampler
        if sampler == "mixed":
            sampler = "grouped" if (done_before + k) % 2 == 0 else "uniform"
        draws.append((sampler, sample_split(matrix, count, rng, sampler)))
    return draws


def score_here(data: Any) -> RunScorer:
    """Score the runs one after another in this process, lazily (a stop between two runs
    leaves the rest unscored)."""

    def scores(masks: list[np.ndarray]) -> Iterator[tuple[EvalScore, int, float]]:
        for mask in masks:
            started = time.perf_counter()
            score, n_train = data.score(mask)
            yield score, n_train, time.perf_counter() - started

    return scores


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
