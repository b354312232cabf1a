"""Trust or escalate: calibrate when an LM judge's verdict can stand in for people's.

Cascaded Selective Evaluation (Jung, Brahman, Choi, ICLR 2025). On human-labelled calibration
items a judge's confidence threshold ``lambda`` is chosen so that, with probability at least
``1 - delta``, the judge agrees with the human verdict on at least ``1 - alpha`` of the items it
keeps (confidence >= lambda). Judges run in a cascade, cheapest first, each calibrated on what
the ones before it abstained on; whatever the last abstains on goes to people. In a workspace
the verdict a judge is held to is the dataset's reference, as in routing's proof: gold where
most pairs carry one, else the human majority (``SelectiveConfig.reference``).

The threshold is found by fixed-sequence testing: thresholds on a grid from high to low (only
those that keep at least ``min_kept`` calibration items), each tested with the exact
(Clopper-Pearson) binomial upper bound on the disagreement rate at level ``delta``; the first
threshold whose bound exceeds ``alpha`` stops the walk and the last one that passed is kept.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.agreement import majority
from curation.errors import CuratorError
from curation.labels import verdict
from curation.pairs import REFERENCES, TrustedLabels, reference_source
from curation.store import Store

IF_NONE_PASS = ("abstain", "keep_top")


@dataclass(frozen=True)
class CalibrationItem:
    """One calibration item: the reference verdict, the judge's verdict and its confidence.

    ``human`` is the verdict the judge is held to: people's (the paper's case), or the gold side
    where a dataset is calibrated against gold. Verdicts are the store's: -1 A, 0 tie, 1 B.
    """

    item_id: str
    human: int
    verdict: int
    confidence: float

    @property
    def agrees(self) -> bool:
        return self.human == self.verdict


@dataclass(frozen=True)
class SelectiveConfig:
    """How a threshold is calibrated; one definition for the CLI flags and the app form."""

    alpha: float = field(
        default=0.15,
        metadata={"help": "tolerated disagreement with people on kept items (target 1 - alpha)"},
    )
    delta: float = field(
        default=0.1, metadata={"help": "chance the guarantee may fail (it holds w.p. 1 - delta)"}
    )
    grid_size: int = field(
        default=5000, metadata={"help": "number of candidate thresholds, evenly spaced on [0, 1]"}
    )
    min_kept: int = field(
        default=30,
        metadata={"help": "a threshold is tested only if it keeps this many calibration items"},
    )
    if_none_pass: str = field(
        default="abstain",
        metadata={
            "help": "abstain: a judge whose highest threshold fails keeps nothing; keep_top: "
            "it keeps that threshold anyway, uncertified (what the authors' released code does)"
        },
    )
    reference: str = field(
        default="auto",
        metadata={
            "help": "what a workspace dataset's judge must agree with: human (the people's "
            "majority), gold (the pairs' gold side; gold ties are left out), or auto: gold where "
            "at least half the pairs carry one, else human (the rule routing is proven by)"
        },
    )

    def validate(self) -> SelectiveConfig:
        if not 0.0 < self.alpha < 1.0:
            raise CuratorError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not 0.0 < self.delta < 1.0:
            raise CuratorError(f"delta must be between 0 and 1, got {self.delta}")
        if self.grid_size < 2:
            raise CuratorError(f"grid size must be at least 2, got {self.grid_size}")
        if self.min_kept < 1:
            raise CuratorError(f"min kept must be at least 1, got {self.min_kept}")
        if self.if_none_pass not in IF_NONE_PASS:
            raise CuratorError(
                f"if_none_pass {self.if_none_pass!r} is not one of {', '.join(IF_NONE_PASS)}"
            )
        if self.reference not in REFERENCES:
            raise CuratorError(
                f"reference {self.reference!r} is not one of {', '.join(REFERENCES)}"
            )
        return self


@dataclass
class Calibration:
    """A judge's calibrated threshold and what it keeps of the calibration items.

    ``threshold`` is None when the judge abstains on everything. ``certified`` says the
    threshold passed the test, so ``guaranteed_agreement`` (1 - alpha) holds with probability
    1 - delta; an uncertified threshold (``if_none_pass="keep_top"``) guarantees nothing.
    """

    judge: str | None
    threshold: float | None
    coverage: float  # share of the calibration items kept
    empirical_agreement: float | None  # agreement with people on the kept items
    guaranteed_agreement: float | None
    n: int  # calibration items
    n_kept: int
    alpha: float
    delta: float
    abstained: bool
    certified: bool
    disagreement_bound: float | None  # Clopper-Pearson upper bound at the threshold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Cascade:
    """Judges cheapest first, each calibrated on what the ones before abstained on.

    ``coverage`` is the share of all items some judge keeps; ``coverage_by_judge`` each
    judge's share of all items; the rest (``n_escalated``) goes to people.
    """

    stages: list[Calibration]
    n: int
    coverage: float
    coverage_by_judge: dict[str, float]
    empirical_agreement: float | None  # on the items some judge keeps
    guaranteed_agreement: float | None  # 1 - alpha when every keeping judge is certified
    n_escalated: int
    # The chance the guarantee holds for the whole cascade: each keeping judge's test may fail
    # with its stage delta, so by the union bound 1 - (stage delta x keeping judges). With
    # ``union_bound`` each stage runs at delta / judges and this is at least 1 - delta.
    holds_with_probability: float | None = None
    stage_delta: float | None = None

    @property
    def thresholds(self) -> dict[str, float | None]:
        return {stage.judge or f"judge {i}": stage.threshold for i, stage in enumerate(self.stages)}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def route(
        self, items_by_judge: Mapping[str, Sequence[CalibrationItem]]
    ) -> dict[str, str | None]:
        """Which judge decides each item (by id), or None where it escalates to people.

        An item is decided by the first judge, in cascade order, that is confident enough on it.
        """
        confidence = {
            judge: {item.item_id: item.confidence for item in items}
            for judge, items in items_by_judge.items()
        }
        ids = sorted({item.item_id for items in items_by_judge.values() for item in items})
        routed: dict[str, str | None] = {}
        for item_id in ids:
            routed[item_id] = None
            for stage in self.stages:
                seen = confidence.get(stage.judge or "", {})
                if stage.threshold is not None and seen.get(item_id, -1.0) >= stage.threshold:
                    routed[item_id] = stage.judge
                    break
        return routed


# ---- the bound and the test -----------------------------------------------------------------


def disagreement_upper_bound(disagreements: int, n: int, delta: float) -> float:
    """Exact one-sided (Clopper-Pearson) upper bound on a disagreement rate at level delta:
    the rate r at which seeing at most ``disagreements`` of ``n`` has probability delta."""
    if n <= 0:
        return 1.0
    if disagreements >= n:
        return 1.0
    from scipy.stats import beta  # scipy loads when calibrating, not with the CLI

    return float(beta.ppf(1.0 - delta, disagreements + 1, n - disagreements))


def calibrate(
    items: Sequence[CalibrationItem],
    alpha: float = 0.15,
    delta: float = 0.1,
    *,
    judge: str | None = None,
    config: SelectiveConfig | None = None,
) -> Calibration:
    """The smallest grid threshold certified by fixed-sequence testing (see the module doc).

    With fewer than ``min_kept`` items no threshold can be tested and the judge abstains.
    """
    config = (
        SelectiveConfig(alpha=alpha, delta=delta)
        if config is None
        else SelectiveConfig(**{**asdict(config), "alpha": alpha, "delta": delta})
    ).validate()
    confidence = np.array([item.confidence for item in items], dtype=float)
    wrong = np.array([not item.agrees for item in items], dtype=bool)
    n = len(items)
    if n and not np.isfinite(confidence).all():
        raise CuratorError("a calibration item has no confidence (NaN)")

    order = np.argsort(-confidence, kind="stable")
    ranked = confidence[order]
    wrong_so_far = np.concatenate([[0], np.cumsum(wrong[order])])
    grid = np.linspace(0.0, 1.0, config.grid_size)[::-1]
    # kept[i]: items with confidence >= grid[i] (``ranked`` is descending).
    kept = np.searchsorted(-ranked, -grid, side="right")
    candidates = np.flatnonzero(kept >= config.min_kept)

    def bound(i: int) -> float:
        return disagreement_upper_bound(int(wrong_so_far[kept[i]]), int(kept[i]), delta)

    chosen: int | None = None
    for i in candidates:
        if bound(i) > alpha:
            break
        chosen = int(i)
    certified = chosen is not None
    if chosen is None and config.if_none_pass == "keep_top" and len(candidates):
        chosen = int(candidates[0])

    if chosen is None:
        return Calibration(
            judge=judge,
            threshold=None,
            coverage=0.0,
            empirical_agreement=None,
            guaranteed_agreement=None,
            n=n,
            n_kept=0,
            alpha=alpha,
            delta=delta,
            abstained=True,
            certified=False,
            disagreement_bound=None,
        )
    n_kept = int(kept[chosen])
    return Calibration(
        judge=judge,
        threshold=float(grid[chosen]),
        coverage=n_kept / n,
        empirical_agreement=1.0 - int(wrong_so_far[n_kept]) / n_kept,
        guaranteed_agreement=1.0 - alpha if certified else None,
        n=n,
        n_kept=n_kept,
        alpha=alpha,
        delta=delta,
        abstained=False,
        certified=certified,
        disagreement_bound=bound(chosen),
    )


def apply(
    threshold: float | None, items: Iterable[CalibrationItem]
) -> tuple[list[CalibrationItem], list[CalibrationItem]]:
    """Split items into those the judge keeps (confidence >= threshold) and those escalated."""
    kept: list[CalibrationItem] = []
    escalated: list[CalibrationItem] = []
    for item in items:
        (kept if threshold is not None and item.confidence >= threshold else escalated).append(item)
    return kept, escalated


def cascade(
    judges: Mapping[str, Sequence[CalibrationItem]]
    | Sequence[tuple[str, Sequence[CalibrationItem]]],
    alpha: float = 0.15,
    delta: float = 0.1,
    *,
    config: SelectiveConfig | None = None,
    union_bound: bool = False,
) -> Cascade:
    """Calibrate judges in order (cheapest first) on the items the earlier ones abstained on.

    Only items every judge has a verdict on take part (by ``item_id``), as in the paper. The
    paper tests each stage at ``delta``, so the cascade as a whole holds with probability
    1 - k x delta for k keeping judges (the union bound; reported as
    ``holds_with_probability``); ``union_bound=True`` tests each stage at delta / judges so the
    whole cascade holds with probability at least 1 - delta, at some cost in coverage.
    """
    ordered = list(judges.items()) if isinstance(judges, Mapping) else list(judges)
    if not ordered:
        raise CuratorError("a cascade needs at least one judge")
    by_judge = [(name, {item.item_id: item for item in items}) for name, items in ordered]
    shared = set.intersection(*(set(items) for _, items in by_judge))
    ids = [item_id for item_id in by_judge[0][1] if item_id in shared]
    if not ids:
        raise CuratorError("the judges share no calibration item")

    stage_delta = delta / len(ordered) if union_bound else delta
    remaining = list(ids)
    stages: list[Calibration] = []
    coverage_by_judge: dict[str, float] = {}
    agreed = kept_total = 0
    for name, items in by_judge:
        stage = calibrate(
            [items[i] for i in remaining], alpha, stage_delta, judge=name, config=config
        )
        stages.append(stage)
        kept, escalated = apply(stage.threshold, [items[i] for i in remaining])
        coverage_by_judge[name] = len(kept) / len(ids)
        agreed += sum(item.agrees for item in kept)
        kept_total += len(kept)
        remaining = [item.item_id for item in escalated]
    keeping = [s for s in stages if s.n_kept]
    certified = bool(keeping) and all(s.certified for s in keeping)
    return Cascade(
        stages=stages,
        n=len(ids),
        coverage=kept_total / len(ids),
        coverage_by_judge=coverage_by_judge,
        empirical_agreement=agreed / kept_total if kept_total else None,
        guaranteed_agreement=1.0 - alpha if certified else None,
        n_escalated=len(remaining),
        holds_with_probability=max(0.0, 1.0 - stage_delta * len(keeping)) if certified else None,
        stage_delta=stage_delta,
    )


# ---- loading --------------------------------------------------------------------------------


def load_calibration_jsonl(path: str | os.PathLike) -> list[CalibrationItem]:
    """Calibration items from the paper's ``*.calibration.jsonl``.

    Each line: ``instruction``, ``outputs`` [A, B], ``preferences`` {annotator: 1|2} (1 = A
    better; several people are reduced to their most common label) and the judge's ``probs``
    [pA, pB]; the judge's verdict is the likelier side and its confidence that probability.
    Items are identified by instruction and outputs, so files of several judges line up.
    """
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CuratorError(f"{source}: cannot read it ({exc.strerror})") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            preferences = list(record["preferences"].values())
            human = Counter(int(p) for p in preferences).most_common(1)[0][0]
            probs = [float(p) for p in record["probs"]]
            key = json.dumps([record.get("instruction"), record.get("outputs")], sort_keys=True)
        except (
            json.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            IndexError,
        ) as exc:
            raise CuratorError(
                f"{source}:{number}: expected preferences {{annotator: 1|2}} and probs [pA, pB] "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if human not in (1, 2) or len(probs) != 2 or not all(math.isfinite(p) for p in probs):
            raise CuratorError(f"{source}:{number}: expected a 1|2 preference and probs [pA, pB]")
        items.append(
            CalibrationItem(
                item_id=key,
                human=-1 if human == 1 else 1,
                verdict=-1 if probs[0] >= probs[1] else 1,
                confidence=max(probs),
            )
        )
    if not items:
        raise CuratorError(f"{source}: no calibration items in it")
    return items


# ---- the store ------------------------------------------------------------------------------


def _judge_labels(store: Store, dataset: str, judge: str, aspect: str) -> pd.DataFrame:
    """One judge's submitted labels on a dataset: instance_id, verdict, confidence (NaN where
    the label carries neither a confidence nor probabilities)."""
    if aspect not in ("overall", "helpful", "harmless", "truthful"):
        raise CuratorError(f"aspect {aspect!r} is not one of overall, helpful, harmless, truthful")
    dataset_id = store.dataset(dataset)["id"]
    rows = store.conn.execute(
        f"""
        SELECT a.instance_id, a.{aspect} AS value, a.confidence, a.probs
        FROM annotations a JOIN instances i ON i.id = a.instance_id
        WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' AND a.annotator = ?
          AND a.status = 'submitted' AND a.{aspect} IS NOT NULL
        """,  # noqa: S608  (aspect is allow-listed above)
        (dataset_id, judge),
    ).fetchall()
    out = []
    for row in rows:
        confidence = row["confidence"]
        if confidence is None and row["probs"]:
            confidence = max(json.loads(row["probs"]))
        out.append(
            {
                "instance_id": row["instance_id"],
                "verdict": verdict(row["value"]),
                "confidence": float("nan") if confidence is None else float(confidence),
            }
        )
    return pd.DataFrame(out, columns=["instance_id", "verdict", "confidence"])


def judges_in(store: Store, dataset: str) -> list[str]:
    """The LM judges with labels on a dataset."""
    dataset_id = store.dataset(dataset)["id"]
    rows = store.conn.execute(
        "SELECT DISTINCT a.annotator FROM annotations a JOIN instances i ON i.id = a.instance_id "
        "WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' ORDER BY a.annotator",
        (dataset_id,),
    )
    return [r[0] for r in rows]


def _gold_sides(store: Store, dataset: str) -> pd.Series:
    """Each instance's gold side (-1 A, 0 tie or none, 1 B), by instance id."""
    rows = store.conn.execute(
        "SELECT id, gold FROM instances WHERE dataset_id = ? ORDER BY id",
        (store.dataset(dataset)["id"],),
    ).fetchall()
    return pd.Series([int(np.sign(r[1] or 0)) for r in rows], index=[r[0] for r in rows], dtype=int)


def calibration_reference(
    store: Store, dataset: str, reference: str = "auto", *, aspect: str = "overall"
) -> str:
    """``human`` or ``gold``: what a dataset's judge is calibrated against. ``auto`` takes
    routing's rule (:func:`curation.pairs.reference_source`); gold is an overall preference, so
    an aspect is always held to people."""
    if reference not in REFERENCES:
        raise CuratorError(f"reference {reference!r} is not one of {', '.join(REFERENCES)}")
    if aspect != "overall":
        if reference == "gold":
            raise CuratorError(
                f"gold labels are overall preferences: calibrate {aspect} against the human "
                "majority (reference human or auto)"
            )
        return "human"
    if reference != "auto":
        return reference
    return reference_source(_gold_sides(store, dataset).to_numpy())


def calibration_items_from_store(
    store: Store,
    dataset: str,
    judge: str,
    *,
    aspect: str = "overall",
    reference: str = "auto",
) -> list[CalibrationItem]:
    """A judge's labels paired with the reference verdict on the same instances (see
    :func:`calibration_reference`).

    Against people, that is the strict plurality of their verdicts (as in the agreement report);
    instances without one are left out. Against gold, instances whose gold is a tie or missing
    are left out: they have no side to agree with, and routing's proof does not score them
    either. Labels without a confidence or probabilities are left out. ``item_id`` is the
    instance id as text.
    """
    labels = _judge_labels(store, dataset, judge, aspect)
    if labels.empty:
        known = ", ".join(judges_in(store, dataset)) or "none"
        raise CuratorError(
            f"no {aspect} labels by judge {judge!r} in {dataset!r} (judges: {known})"
        )
    if calibration_reference(store, dataset, reference, aspect=aspect) == "gold":
        gold = _gold_sides(store, dataset)
        truth = gold[gold != 0]
        if truth.empty:
            raise CuratorError(f"no instance of {dataset!r} has a gold side to calibrate against")
        return _paired(labels, truth)
    dataset_id = store.dataset(dataset)["id"]
    people = pd.DataFrame.from_records(
        [
            tuple(r)
            for r in store.conn.execute(
                f"""
                SELECT a.instance_id, a.{aspect} FROM annotations a
                JOIN instances i ON i.id = a.instance_id
                WHERE i.dataset_id = ? AND a.annotator_kind = 'human'
                  AND a.status = 'submitted' AND a.{aspect} IS NOT NULL
                """,  # noqa: S608  (aspect is allow-listed in _judge_labels)
                (dataset_id,),
            )
        ],
        columns=["item", "value"],
    )
    people["value"] = np.sign(people["value"].astype(int))
    return _paired(labels, majority(people))


def _paired(labels: pd.DataFrame, reference: pd.Series) -> list[CalibrationItem]:
    """Judge labels with a reference verdict and a finite confidence, as items in id order."""
    items = [
        CalibrationItem(
            item_id=str(int(row.instance_id)),
            human=int(reference[row.instance_id]),
            verdict=int(row.verdict),
            confidence=float(row.confidence),
        )
        for row in labels.itertuples()
        if row.instance_id in reference.index and math.isfinite(row.confidence)
    ]
    return sorted(items, key=lambda item: int(item.item_id))


def escalated_instance_ids(
    store: Store, dataset: str, judge: str, threshold: float | None, *, aspect: str = "overall"
) -> list[int]:
    """Instances of a dataset the judge abstains on at ``threshold``: no label by it, no
    confidence, or a confidence below the threshold (every instance when it is None).
    These go to :func:`curation.queues.assign_escalations`."""
    dataset_id = store.dataset(dataset)["id"]
    every = [
        r[0]
        for r in store.conn.execute(
            "SELECT id FROM instances WHERE dataset_id = ? ORDER BY id", (dataset_id,)
        )
    ]
    if threshold is None:
        return every
    labels = _judge_labels(store, dataset, judge, aspect)
    kept = set(labels.loc[labels["confidence"] >= threshold, "instance_id"].astype(int))
    return [i for i in every if i not in kept]


def unkept_instance_ids(
    store: Store, dataset: str, stages: Sequence[Calibration], *, aspect: str = "overall"
) -> list[int]:
    """Instances no judge of a cascade keeps at its calibrated threshold (for one judge, its
    :func:`escalated_instance_ids`): what still needs people once every judge has had its say."""
    left: set[int] | None = None
    for stage in stages:
        abstained = escalated_instance_ids(
            store, dataset, stage.judge, stage.threshold, aspect=aspect
        )
        left = set(abstained) if left is None else left & set(abstained)
    return sorted(left or ())


def trusted_labels(
    store: Store,
    dataset: str,
    judge: str,
    *,
    threshold: float | None = None,
    alpha: float = 0.15,
    delta: float = 0.1,
) -> TrustedLabels:
    """The instances whose label by ``judge`` trust or escalate keeps: those it does not escalate
    at ``threshold``, calibrated on the dataset's reference labels with ``alpha`` and ``delta``
    when not given. The :class:`curation.pairs.TrustRule` a trusted-only mixture is built with."""
    calibration = None
    if threshold is None:
        items = calibration_items_from_store(store, dataset, judge)
        result = calibrate(items, alpha, delta, judge=judge)
        threshold = result.threshold
        calibration = {
            k: getattr(result, k)
            for k in ("threshold", "coverage", "n", "n_kept", "alpha", "delta", "certified")
        }
    every = {
        r[0]
        for r in store.conn.execute(
            "SELECT id FROM instances WHERE dataset_id = ?", (store.dataset(dataset)["id"],)
        )
    }
    escalated = set(escalated_instance_ids(store, dataset, judge, threshold))
    return TrustedLabels(frozenset(every - escalated), threshold, calibration)


def coverage_curve(items: Sequence[CalibrationItem]) -> pd.DataFrame:
    """For every distinct confidence taken as a threshold: coverage and agreement on kept items.

    The calibration plot of the Judges page: how much a judge keeps, and how often it then
    agrees with people, as its threshold rises. Rows go from the lowest threshold up.
    """
    if not items:
        return pd.DataFrame(columns=["threshold", "coverage", "agreement", "n_kept"])
    order = sorted(items, key=lambda item: item.confidence, reverse=True)
    confidence = np.array([item.confidence for item in order], dtype=float)
    agrees = np.cumsum([item.agrees for item in order])
    kept = np.arange(1, len(order) + 1)
    # the last position of each distinct confidence: keeping it keeps every tie too
    last = np.r_[confidence[1:] != confidence[:-1], True]
    frame = pd.DataFrame(
        {
            "threshold": confidence[last],
            "coverage": kept[last] / len(order),
            "agreement": agrees[last] / kept[last],
            "n_kept": kept[last],
        }
    )
    return frame.iloc[::-1].reset_index(drop=True)
