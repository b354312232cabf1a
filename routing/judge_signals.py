"""The LM judge's own uncertainty per pair, as routing signals: how sure it says it is, and whether
its verdict survives swapping the two responses. A pair the judge is unsure about is a natural one
to send to people.

Position information comes from two places: the project's judges keep each order's answer in the
annotation's ``reasons["orders"]``, and LLMBar-style imports store each order as its own judge
(``X/noswap`` beside ``X/swap``, both already on the original A/B sides).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.errors import CuratorError
from curation.pairs import busiest_judge
from curation.preset_llmbar import ORDERS, llmbar_judge
from curation.store import Store
from routing.binning import bin_label, percentile_ranks

CONFIDENCE = "judge_confidence"
POSITION = "judge_position"
NAMES = (CONFIDENCE, POSITION)
POSITION_LABELS = ("consistent", "flipped")
UNKNOWN = -1


def order_partner(judge: str) -> str | None:
    """The same judge in the other order (``X/noswap`` <-> ``X/swap``); None if not order-specific."""
    head = llmbar_judge(judge)
    if head == judge:
        return None
    order = judge.rsplit("/", 1)[1]
    return f"{head}/{ORDERS[1 - ORDERS.index(order)]}"


def verdict_confidence(confidence: float | None, probs: Any) -> float:
    """The judge's probability of its own verdict: the stored confidence, else max(pA, pB) of its
    probabilities, normalised; NaN when neither is there."""
    if confidence is not None:
        return float(confidence)
    if isinstance(probs, list) and len(probs) == 2:
        try:
            p_a, p_b = float(probs[0]), float(probs[1])
        except (TypeError, ValueError):
            return math.nan
        if p_a >= 0 and p_b >= 0 and p_a + p_b > 0:
            return max(p_a, p_b) / (p_a + p_b)
    return math.nan


def _original_side(order: dict[str, Any]) -> int | None:
    """The response one order's answer names, on the original sides: -1 A, 1 B, 0 tie."""
    p = order.get("p_answer_a")
    answer = order.get("answer")
    if p is not None:
        shown = -1 if p > 0.5 else 1 if p < 0.5 else 0
    elif answer in ("A", "B"):
        shown = -1 if answer == "A" else 1
    else:
        return None
    # In the swapped order the letter "A" names the original B.
    return -shown if order.get("swapped") else shown


def flipped_between(first: int | None, second: int | None) -> int:
    """1 when two verdicts (-1/0/1 or the -2..2 scale) name different responses, a tie against a
    side included; 0 when they agree; -1 when either is unknown."""
    if first is None or second is None:
        return UNKNOWN
    return int(np.sign(first) != np.sign(second))


def flipped_from_reasons(reasons: Any) -> int:
    """Position consistency from a project judge's per-order results (``reasons["orders"]``, or the
    overall aspect's own when there)."""
    if not isinstance(reasons, dict):
        return UNKNOWN
    overall = (reasons.get("aspects") or {}).get("overall")
    orders = overall.get("orders") if isinstance(overall, dict) else None
    orders = orders if orders is not None else reasons.get("orders")
    if not isinstance(orders, list):
        return UNKNOWN
    sides: dict[bool, int | None] = {}
    for order in orders:
        if isinstance(order, dict):
            sides[bool(order.get("swapped"))] = _original_side(order)
    return flipped_between(sides.get(False), sides.get(True))


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass
class JudgeSignals:
    """Per instance (in id order, as ``curation.pairs.SplitLabels``) the judge's confidence in its
    verdict (NaN unknown) and whether the verdict flips with the order (1, 0, or -1 unknown)."""

    instance_ids: np.ndarray
    judge: str | None
    confidence: np.ndarray
    flipped: np.ndarray

    @classmethod
    def load(cls, store: Store, dataset: str, judge: str | None = None) -> JudgeSignals:
        ds = store.dataset(dataset)
        ids = np.array(
            [r[0] for r in store.conn.execute(
                "SELECT id FROM instances WHERE dataset_id = ? ORDER BY id", (ds["id"],))],
            dtype=np.int64,
        )  # fmt: skip
        confidence = np.full(len(ids), np.nan)
        flipped = np.full(len(ids), UNKNOWN, dtype=np.int8)
        judge = _resolve(store, ds, judge)
        if judge is None:
            return cls(ids, None, confidence, flipped)
        partner = order_partner(judge)
        own: dict[int, tuple[Any, ...]] = {}
        other: dict[int, int | None] = {}
        rows = store.conn.execute(
            "SELECT a.instance_id, a.annotator, a.overall, a.confidence, a.probs, a.reasons "
            "FROM annotations a JOIN instances i ON i.id = a.instance_id "
            "WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' AND a.status = 'submitted' "
            "AND a.annotator IN (?, ?) ORDER BY a.id",
            (ds["id"], judge, partner or judge),
        )
        for instance_id, annotator, overall, conf, probs, reasons in rows:
            if annotator == judge:
                own[instance_id] = (overall, conf, probs, reasons)  # the latest label wins
            else:
                other[instance_id] = overall
        row_of = {int(i): k for k, i in enumerate(ids)}
        for instance_id, (overall, conf, probs, reasons) in own.items():
            k = row_of[instance_id]
            confidence[k] = verdict_confidence(conf, _loads(probs))
            if instance_id in other:
                flipped[k] = flipped_between(overall, other[instance_id])
            else:
                flipped[k] = flipped_from_reasons(_loads(reasons))
        return cls(ids, judge, confidence, flipped)

    @property
    def available(self) -> dict[str, bool]:
        return {
            "confidence": bool(np.isfinite(self.confidence).any()),
            "position": bool((self.flipped != UNKNOWN).any()),
        }

    def uncertainty(self) -> np.ndarray:
        """Higher is less sure: flipped pairs above consistent ones, and within each, lower
        confidence above higher. An unknown takes the median of the known values, so it ranks
        neither first nor last for lack of a signal."""
        position = self.flipped.astype(float)
        known = self.flipped != UNKNOWN
        position[~known] = np.median(position[known]) if known.any() else 0.5
        confidence = self.confidence.copy()
        finite = np.isfinite(confidence)
        confidence[~finite] = np.median(confidence[finite]) if finite.any() else 0.5
        # 1 - rank lies in [0, 1), so confidence only orders pairs within one position level.
        return 2.0 * position + (1.0 - percentile_ranks(confidence))


def _resolve(store: Store, ds: dict[str, Any], judge: str | None) -> str | None:
    """The judge to read: the busiest one by default; an LLMBar judge named without its order
    (``X``) reads as ``X/noswap``."""
    if judge is None:
        return busiest_judge(store, ds["id"])
    judges = [
        r[0]
        for r in store.conn.execute(
            "SELECT DISTINCT a.annotator FROM annotations a "
            "JOIN instances i ON i.id = a.instance_id "
            "WHERE i.dataset_id = ? AND a.annotator_kind = 'lm' AND a.status = 'submitted' "
            "ORDER BY a.annotator",
            (ds["id"],),
        )
    ]
    for name in (judge, f"{judge}/{ORDERS[0]}"):
        if name in judges:
            return name
    shown = ", ".join(judges[:10]) + (", ..." if len(judges) > 10 else "") or "none"
    raise CuratorError(f"no LM labels by {judge!r} on {ds['name']!r} (judges: {shown})")


def judge_feature_rows(signals: JudgeSignals) -> list[tuple[int, str, float, str, str]]:
    """Rows for the ``features`` table: ``judge_confidence`` (low/mid/high, thirds of the
    dataset's own known confidences; value the raw confidence) and ``judge_position``
    (consistent/flipped; value 0/1). An unknown signal has no row."""
    if signals.judge is None:
        return []
    extractor = f"judge:{signals.judge}"
    rows: list[tuple[int, str, float, str, str]] = []
    known = np.isfinite(signals.confidence)
    ranks = percentile_ranks(signals.confidence[known])
    for instance_id, value, rank in zip(
        signals.instance_ids[known], signals.confidence[known], ranks, strict=True
    ):
        rows.append((int(instance_id), CONFIDENCE, float(value), extractor, bin_label(rank)))
    for instance_id, flip in zip(signals.instance_ids, signals.flipped, strict=True):
        if flip != UNKNOWN:
            rows.append(
                (int(instance_id), POSITION, float(flip), extractor, POSITION_LABELS[int(flip)])
            )
    return rows
