"""Proof, not prediction: reward probes trained on the routed split against the splits that could
explain its score, each scored on rows no sweep run was scored on, over many paired seeds.

The comparison is paired: under one seed every method trains on the same rows (``train_fraction``
of the pairs) and is scored on the same proof rows with the same crossfit folds, so a method's
difference from random is measured per seed, and its standard error is that of the paired
differences (far smaller than the methods' own spread over seeds).

Beside routed and random (same budget) it reports:

- ``all-human`` and ``all-lm`` (budget 1.0 and 0.0);
- ``oracle``: the pairs whose LM label disagrees with the human label (first those where the human
  label is also the reference), capped at the budget, then random ones: what a router that knew
  the answers would do, the most any router could gain;
- ``confidence``: the pairs the judge is least sure of, or whose verdict flips when the order is
  swapped (only where the LM labels carry a confidence or both orders);
- the ``headroom``: all-human minus all-LM with its paired SE, measured first. Under 2 SE, people's
  labels do not change the reward model measurably on this data with this scorer, and no router
  can show a gain: the verdict says so, unless the oracle's mix beats the better end by 2 SE
  (people and the judge then err on different pairs, and a mix can beat both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curation.errors import CuratorError
from curation.store import Store
from routing.judge_signals import JudgeSignals
from routing.ppm import PerformancePredictor
from routing.router import RouteConfig, choose_split, instance_gains, route_topk
from routing.splits import budget_count, sample_uniform
from routing.sweeps import SweepConfig, SweepData

EVAL_METHODS = ("routed", "random", "all-human", "all-lm", "oracle", "confidence")
PAIRED = ("routed", "oracle", "confidence")
HEADROOM_SE = 2.0  # all-human - all-LM must exceed this many paired SEs


@dataclass
class EvaluateConfig:
    budgets: tuple[float, ...] = field(
        default=(0.25, 0.5, 0.75), metadata={"help": "Human shares to compare at."}
    )
    seeds: int = field(default=10, metadata={"help": "Paired repeats (at least 10 to report)."})
    train_fraction: float = field(
        default=0.9, metadata={"help": "Share of pairs each seed's reward models train on."}
    )
    route: RouteConfig = field(default_factory=RouteConfig)

    def validate(self) -> EvaluateConfig:
        if self.seeds < 2:
            raise CuratorError("a paired comparison needs at least 2 seeds (10 to report)")
        if not 0 < self.train_fraction <= 1:
            raise CuratorError("train_fraction must be in (0, 1]")
        self.route.validate()
        return self


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean and standard error of the per-seed differences a - b."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def oracle_split(human: np.ndarray, lm: np.ndarray, reference: np.ndarray, count: int,
                 rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """The pairs a router that knew the labels would send: where the LM label differs from the
    human one (those where the human label is the reference first), then random ones."""
    wrong = (lm != human) & (human != 0)
    priority = wrong.astype(float) + (wrong & (human == reference)).astype(float)
    return route_topk(priority, count, rng)


def headroom_verdict(
    delta: float, se: float, seeds: int, mix: tuple[float, float, float] | None = None
) -> tuple[bool, str]:
    """Whether routing can pay off on this data, in words.

    ``delta``/``se`` is all-human - all-LM. ``mix`` is (gain, SE, budget) of the oracle's mix over
    the better of the two ends: people and the judge can score alike while erring on different
    pairs, and then a mix beats both (the demo's and the paper's case)."""
    figure = f"all-human - all-LM = {delta:+.4f} (paired SE {se:.4f}, {seeds} seeds)"
    if delta > HEADROOM_SE * se:
        return True, (
            f"headroom: {figure}. People's labels change the reward model here, so routing "
            "can pay off: compare routed with random below."
        )
    if mix is not None and mix[0] > HEADROOM_SE * mix[1]:
        gain, mix_se, budget = mix
        return True, (
            f"headroom in a mix: {figure}, but people and the judge err on different pairs: "
            f"the oracle's split at {budget:.0%} beats the better of the two by {gain:+.4f} "
            f"(paired SE {mix_se:.4f}), so a router that finds those pairs can pay off: "
            "compare routed with random below."
        )
    if delta < -HEADROOM_SE * se:
        return False, (
            f"no headroom: {figure}. LM labels train a better reward model than people's on this "
            "data with this scorer; sending pairs to people is not shown to help."
        )
    return False, (
        f"no headroom: {figure}, under {HEADROOM_SE:g} SE. On this data and with this scorer, "
        "people's labels do not change the reward model measurably, so routing cannot help: a "
        "plan's predicted gain is not to be trusted here."
    )


def evaluate_routing(
    data: SweepData,
    predictor: PerformancePredictor,
    config: EvaluateConfig | None = None,
    *,
    uncertainty: np.ndarray | None = None,
    progress=None,
) -> list[dict[str, Any]]:
    """Rows of ``{"method", "budget", "mean", "std", "seeds", "scores"}``, scored on the proof
    rows. all-human is at budget 1.0 and all-LM at 0.0; ``routed``, ``oracle`` and ``confidence``
    rows add ``delta_vs_random`` and ``delta_se`` (paired, same budget), and ``routed`` rows the
    paired differences from all-LM, from all-human and from the best of the three
    (``delta_vs_all_lm``, ``delta_vs_all_human``, ``delta_vs_best``, each with ``..._se``). The last row is the
    ``headroom``: ``{"method": "headroom", "delta", "se", "verdict", "significant", "seeds"}``
    plus the oracle's best mix over the better end (``mix_gain``, ``mix_se``, ``mix_budget``);
    ``significant`` is whether routing can pay off at all (see :func:`headroom_verdict`).

    ``uncertainty`` (per instance, higher = the judge less sure) enables the confidence router.
    """
    config = (config or EvaluateConfig()).validate()
    binary = data.features.aligned(predictor.names).matrix
    labels = data.labels
    n = len(binary)
    methods_per_budget = 3 + (uncertainty is not None) + 1
    total = config.seeds * (2 + methods_per_budget * len(config.budgets))
    scores: dict[tuple[str, float], list[float]] = {}
    done = 0

    def record(method: str, budget: float, mask: np.ndarray, rows: np.ndarray, seed: int):
        nonlocal done
        score, _ = data.score(mask, rows, part="proof", seed=seed)
        scores.setdefault((method, budget), []).append(score.overall)
        done += 1
        if progress:
            progress(done, total)

    for seed in range(config.seeds):
        rng, rows, fold_seed = _seed_setup(seed, n, config.train_fraction)
        record("all-human", 1.0, np.ones(n, dtype=bool), rows, fold_seed)
        record("all-lm", 0.0, np.zeros(n, dtype=bool), rows, fold_seed)
        for budget in config.budgets:
            b = float(budget)
            count = budget_count(b, n)
            record("random", b, sample_uniform(n, count, rng), rows, fold_seed)
            gains = instance_gains(predictor, binary, count, seed=int(rng.integers(1 << 31)))
            routed = choose_split(predictor, binary, gains, count, config.route, rng)
            record("routed", b, routed, rows, fold_seed)
            oracle = oracle_split(labels.human, labels.lm, labels.reference, count, rng)
            record("oracle", b, oracle, rows, fold_seed)
            if uncertainty is not None:
                record("confidence", b, route_topk(uncertainty, count, rng), rows, fold_seed)
    return summarise(scores, config.budgets)


@dataclass
class Proof:
    """What ``curator route --evaluate`` and the Route page show: the rows, and what they were
    scored on, in words."""

    rows: list[dict[str, Any]]
    scored_on: str
    confidence_router: bool

    @property
    def headroom(self) -> dict[str, Any]:
        return headroom(self.rows)


def prove_predictor(
    store: Store,
    dataset: str,
    predictor: PerformancePredictor,
    config: EvaluateConfig | None = None,
    *,
    eval_set: str | None = None,
    folds: int | None = None,
    progress=None,
) -> Proof:
    """Evaluate a stored predictor on its own sweep's labels, target and proof rows (``eval_set``
    switches to that fixed eval set's proof half; ``folds`` changes the crossfit folds), with the
    confidence router wherever the judge's labels carry a confidence or both orders."""
    stored = SweepConfig.from_dict(predictor.provenance.get("sweep_config") or {})
    eval_name = eval_set or predictor.provenance.get("eval_dataset")
    if eval_set:
        stored.target = "eval"
    if folds is not None:
        stored.folds = folds
    if stored.target == "eval" and not eval_name:
        raise CuratorError("this predictor's sweep was scored on an eval set: name one")
    data = SweepData.load(store, dataset, eval_name, stored)
    signals = JudgeSignals.load(store, dataset, data.labels.judge)
    uncertainty = signals.uncertainty() if any(signals.available.values()) else None
    rows = evaluate_routing(data, predictor, config, uncertainty=uncertainty, progress=progress)
    if data.target == "eval":
        scored_on = f"the proof half of {eval_name}"
    else:
        scored_on = (f"{data.config.folds}-fold cross-fitted agreement with "
                     f"{data.labels.reference_source} labels on the proof half of the pairs")  # fmt: skip
    return Proof(rows, scored_on, uncertainty is not None)


def _seed_setup(seed: int, n: int, train_fraction: float):
    """One paired seed: its generator, the rows every method trains on, and its crossfit folds'
    seed (never the sweep's own)."""
    rng = np.random.default_rng([seed, 7919])
    rows = np.sort(rng.choice(n, size=max(1, round(train_fraction * n)), replace=False))
    return rng, rows, 1000 + seed


def measure_headroom(data: SweepData, seeds: int = 10, train_fraction: float = 0.9) -> dict:
    """The headroom alone (all-human - all-LM, paired over seeds, on the proof rows): what to
    measure before a sweep, and what chooses a scorer. Same seeds and rows as
    :func:`evaluate_routing`, so the two agree."""
    n = len(data.labels.human)
    scores: dict[str, list[float]] = {"all-human": [], "all-lm": []}
    for seed in range(seeds):
        _, rows, fold_seed = _seed_setup(seed, n, train_fraction)
        for method, mask in (("all-human", np.ones(n, bool)), ("all-lm", np.zeros(n, bool))):
            score, _ = data.score(mask, rows, part="proof", seed=fold_seed)
            scores[method].append(score.overall)
    delta, se = paired(scores["all-human"], scores["all-lm"])
    significant, verdict = headroom_verdict(delta, se, seeds)
    return {"method": "headroom", "delta": delta, "se": se, "verdict": verdict,
            "significant": significant, "seeds": seeds,
            "all_human": float(np.mean(scores["all-human"])),
            "all_lm": float(np.mean(scores["all-lm"]))}  # fmt: skip


def summarise(scores: dict[tuple[str, float], list[float]], budgets) -> list[dict[str, Any]]:
    """Per-seed scores into the report's rows (see :func:`evaluate_routing`)."""
    order = {m: k for k, m in enumerate(EVAL_METHODS)}
    rows = []
    for (method, budget), values in sorted(scores.items(), key=lambda t: (t[0][1], order[t[0][0]])):
        row: dict[str, Any] = {
            "method": method,
            "budget": budget,
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "seeds": len(values),
            "scores": [float(v) for v in values],
        }
        random = scores.get(("random", budget))
        if method in PAIRED and random:
            row["delta_vs_random"], row["delta_se"] = paired(values, random)
        if method == "routed":
            rivals = {"random": random, "all-lm": scores[("all-lm", 0.0)],
                      "all-human": scores[("all-human", 1.0)]}  # fmt: skip
            for name in ("all-lm", "all-human"):
                key = name.replace("-", "_")
                row[f"delta_vs_{key}"], row[f"delta_vs_{key}_se"] = paired(values, rivals[name])
            best = max(rivals, key=lambda m: np.mean(rivals[m]))
            row["best_baseline"] = best
            row["delta_vs_best"], row["delta_vs_best_se"] = paired(values, rivals[best])
        rows.append(row)
    human, lm = scores[("all-human", 1.0)], scores[("all-lm", 0.0)]
    delta, se = paired(human, lm)
    better_end = human if np.mean(human) >= np.mean(lm) else lm
    mixes = [(*paired(scores[("oracle", b)], better_end), float(b))
             for b in budgets if ("oracle", float(b)) in scores]  # fmt: skip
    mix = max(mixes, key=lambda m: m[0]) if mixes else None
    significant, verdict = headroom_verdict(delta, se, len(human), mix)
    row = {"method": "headroom", "delta": delta, "se": se, "verdict": verdict,
           "significant": significant, "seeds": len(human)}  # fmt: skip
    if mix is not None:
        row["mix_gain"], row["mix_se"], row["mix_budget"] = mix
    rows.append(row)
    return rows


def headroom(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The headroom row of an evaluation."""
    return next(r for r in rows if r["method"] == "headroom")


def routing_table(rows: list[dict[str, Any]]) -> str:
    """The evaluation as a plain-text table (the CLI's output), the headroom verdict first."""
    lines = [headroom(rows)["verdict"], ""]
    lines.append(
        f"{'method':<11} {'budget':>6} {'mean':>7} {'std':>7} {'seeds':>5}  "
        f"{'vs random (paired)':>20}"
    )
    for row in rows:
        if row["method"] == "headroom":
            continue
        delta = ""
        if "delta_vs_random" in row:
            delta = f"{row['delta_vs_random']:+.4f} ± {row['delta_se']:.4f}"
        lines.append(
            f"{row['method']:<11} {row['budget']:>6.2f} {row['mean']:>7.4f} {row['std']:>7.4f} "
            f"{row['seeds']:>5}  {delta:>20}"
        )
    return "\n".join(lines)
