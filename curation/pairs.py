"""Labelled pairs -> training rows: the label rules (the human majority, one LM judge, gold, a
route plan's split), the one vocabulary of label sources, and route plans read with their dataset
checked. Mixtures, trainers, routing sweeps, annotation queues and the CLI all read labels here.

A label source (``labels``) says which side of a pair is chosen:

- ``best``: the human majority where people labelled the pair, else the LM judge, else the gold
  label (generated and eval data only);
- ``hybrid``: the human majority where people labelled the pair, else the LM judge (no gold);
- ``human``, ``lm`` (one judge: ``judge``, or the judge with the most labels), ``gold``;
- ``plan:<id>``: a route plan's split, the human label where the plan sends the pair to people
  and the LM label elsewhere: what a routed human/LM mix actually trains.

A source that labelled a pair a tie decides it (the pair is dropped); it does not fall through to
the next source. "Slightly" counts as a plain preference (``slight="collapse"``, as in the Hybrid
Preferences paper) or drops the label (``slight="drop"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from curation.agreement import majority
from curation.errors import CuratorError
from curation.store import Store, usable_labels_sql

LABEL_SOURCES = ("best", "hybrid", "human", "lm", "gold")
LABELS_HELP = (
    "Where chosen/rejected come from: best (human majority, else LM judge, else gold), hybrid "
    "(human majority, else LM judge), human, lm, gold, or plan:<id> (a route plan: human where "
    "it says human, LM elsewhere)."
)
SLIGHT = ("collapse", "drop")
REFERENCES = ("auto", "human", "gold")
# Why a pair has no winner: its source labelled it a tie (or had no majority), never labelled
# it, or (LM labels only) trust or escalate would escalate it.
MISSING = ("tie", "unlabelled", "untrusted")


# ---- the label rules -------------------------------------------------------------------------


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
    accepted_only: bool = field(
        default=False,
        metadata={"help": "Count only people's labels a reviewer accepted (a rejected label "
                          "never counts)."},
    )  # fmt: skip

    def validate(self) -> LabelConfig:
        if self.slight not in SLIGHT:
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
            "SELECT a.instance_id, a.annotator_kind, a.annotator, a.overall FROM annotations a "  # noqa: S608
            "JOIN instances i ON i.id = a.instance_id "
            f"WHERE i.dataset_id = ? AND {usable_labels_sql('a', accepted_only=config.accepted_only)} "
            "AND a.overall IS NOT NULL ORDER BY a.id",
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


# ---- route plans -----------------------------------------------------------------------------


def route_plan_dataset(store: Store, plan_id: int, dataset: str | None = None) -> str:
    """The name of the dataset a route plan was made for; with ``dataset`` given, a plan made for
    another dataset is refused (a plan's instance ids mean nothing elsewhere)."""
    row = store.conn.execute(
        "SELECT d.name FROM route_plans p JOIN datasets d ON d.id = p.dataset_id WHERE p.id = ?",
        (plan_id,),
    ).fetchone()
    if row is None:
        raise CuratorError(f"no route plan {plan_id} in this workspace")
    if dataset is not None and row[0] != dataset:
        raise CuratorError(
            f"route plan {plan_id} was made for dataset {row[0]!r}, not for {dataset!r}"
        )
    return row[0]


def plan_targets(store: Store, plan_id: int, dataset: str) -> dict[int, str]:
    """Each instance a route plan lists, with where it sends it (``human`` or ``lm``)."""
    route_plan_dataset(store, plan_id, dataset)
    rows = store.conn.execute(
        "SELECT instance_id, target FROM route_plan_items WHERE plan_id = ?", (plan_id,)
    )
    return {r[0]: r[1] for r in rows}


def plan_instances(store: Store, plan_id: int, dataset: str, target: str = "human") -> list[int]:
    """The instances a route plan sends to ``target``, by descending gain (the instances that
    benefit most from a person first), then by id."""
    route_plan_dataset(store, plan_id, dataset)
    rows = store.conn.execute(
        "SELECT instance_id FROM route_plan_items WHERE plan_id = ? AND target = ? "
        "ORDER BY coalesce(gain, 0) DESC, instance_id",
        (plan_id, target),
    )
    return [r[0] for r in rows]


# ---- label sources ---------------------------------------------------------------------------


def parse_labels(labels: str) -> tuple[str, int | None]:
    """``labels`` as (source, route plan id or None); CuratorError for anything else."""
    text = (labels or "").strip().lower()
    if text in LABEL_SOURCES:
        return text, None
    if text.startswith("plan:"):
        number = text.removeprefix("plan:").strip()
        if number.isdigit():
            return "plan", int(number)
    raise CuratorError(
        f"labels must be one of {', '.join(LABEL_SOURCES)} or plan:<id>, not {labels!r}"
    )


@dataclass(frozen=True)
class TrustedLabels:
    """The instances whose LM label trust or escalate keeps at ``threshold``, and the calibration
    that set the threshold when it was not given."""

    instance_ids: frozenset[int]
    threshold: float | None
    calibration: dict[str, Any] | None = None


class TrustRule(Protocol):
    """Trust or escalate as a layer above supplies it (``routing.selective.trusted_labels``):
    the pairs whose LM label a judge may be trusted with, at a given or calibrated threshold."""

    def __call__(
        self,
        store: Store,
        dataset: str,
        judge: str,
        *,
        threshold: float | None,
        alpha: float,
        delta: float,
    ) -> TrustedLabels: ...


@dataclass
class PairLabels:
    """Each pair of a dataset with its winner under a label source, or why it has none.

    ``winners``: instance id -> (winner: -1 A, 1 B; the labels that gave it: human, lm or gold);
    ``missing``: instance id -> (the labels consulted; one of :data:`MISSING`)."""

    dataset: str
    labels: str
    judge: str | None
    winners: dict[int, tuple[int, str]] = field(default_factory=dict)
    missing: dict[int, tuple[str, str]] = field(default_factory=dict)
    trusted: TrustedLabels | None = None

    @property
    def dropped(self) -> Counter[str]:
        """The pairs without a winner counted by reason, in the trainers' words."""
        words = {"tie": "{} tie", "unlabelled": "no {} label", "untrusted": "untrusted {} label"}
        return Counter(words[why].format(source) for source, why in self.missing.values())


def pair_labels(
    store: Store,
    dataset: str,
    labels: str = "best",
    *,
    judge: str | None = None,
    slight: str = "collapse",
    trust: Callable[[str], TrustedLabels] | None = None,
    accepted_only: bool = False,
) -> PairLabels:
    """Every pair of a dataset with its training winner under ``labels`` (see the module doc).

    ``trust``, given the judge's name, says which LM labels may be used (trust or escalate); an
    LM label outside them is left out as ``untrusted``. A named judge that has not labelled the
    dataset, or ``lm``/``best``/``plan`` labels with no judge at all, is a curator's error.
    ``accepted_only`` counts only people's labels a reviewer accepted."""
    source, plan_id = parse_labels(labels)
    ds = store.dataset(dataset)
    split = SplitLabels.load(
        store, dataset, LabelConfig(slight=slight, judge=judge, accepted_only=accepted_only)
    )
    has_human = _labelled_by(store, ds["id"], "human", None, accepted_only=accepted_only)
    has_lm = _labelled_by(store, ds["id"], "lm", split.judge) if split.judge else set()
    if source in ("lm", "best", "plan") and (judge or source == "lm") and not has_lm:
        who = f"judge {judge!r}" if judge else "no LM judge"
        raise CuratorError(
            f"{who} has{' not' if judge else ''} labelled {dataset!r}; run a judge on it first"
        )
    gold = dict(
        store.conn.execute(
            "SELECT id, gold FROM instances WHERE dataset_id = ? AND gold IS NOT NULL", (ds["id"],)
        ).fetchall()
    )
    targets = plan_targets(store, plan_id, dataset) if plan_id is not None else {}
    uses_lm = source in ("best", "hybrid", "lm", "plan")
    trusted = trust(split.judge) if trust and uses_lm and split.judge is not None else None
    out = PairLabels(dataset, labels, split.judge, trusted=trusted)
    labelled = {"human": has_human, "lm": has_lm, "gold": gold}
    for instance_id, human, lm in zip(
        split.instance_ids.tolist(), split.human.tolist(), split.lm.tolist(), strict=True
    ):
        if source == "plan":
            # Items a plan does not list were not routed to people: the LM labels them.
            chosen = targets.get(instance_id, "lm")
        elif source in ("best", "hybrid"):
            chosen = (
                "human"
                if instance_id in has_human
                else "lm"
                if instance_id in has_lm or source == "hybrid"
                else "gold"
            )
        else:
            chosen = source
        if instance_id not in labelled[chosen]:
            out.missing[instance_id] = (chosen, "unlabelled")
            continue
        if chosen == "lm" and trusted is not None and instance_id not in trusted.instance_ids:
            out.missing[instance_id] = (chosen, "untrusted")
            continue
        value = human if chosen == "human" else lm if chosen == "lm" else np.sign(gold[instance_id])
        if value == 0:
            out.missing[instance_id] = (chosen, "tie")
            continue
        out.winners[instance_id] = (int(value), chosen)
    return out


def _labelled_by(
    store: Store, dataset_id: int, kind: str, annotator: str | None, *, accepted_only: bool = False
) -> set[int]:
    """Instances with a submitted overall label from people (``kind='human'``) or one judge."""
    usable = usable_labels_sql("a", accepted_only=accepted_only)
    rows = store.conn.execute(
        "SELECT DISTINCT a.instance_id FROM annotations a JOIN instances i ON i.id = a.instance_id "  # noqa: S608
        f"WHERE i.dataset_id = ? AND a.annotator_kind = ? AND {usable} "
        "AND a.overall IS NOT NULL AND (? IS NULL OR a.annotator = ?)",
        (dataset_id, kind, annotator, annotator),
    )
    return {r[0] for r in rows}
