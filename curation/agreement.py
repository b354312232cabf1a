"""Inter-annotator agreement on preference labels: how far people agree with each other, and
how far LM judges agree with the people, per aspect, annotator, domain and tag.

The level compared is chosen once per report (:class:`AgreementConfig`):

- ``scale="verdict"`` (default) compares verdicts, -1 A / 0 tie / 1 B: "clearly" and "slightly"
  collapse, so two people who both prefer A agree however strongly they said it. This is the
  level published agreement figures use (PandaLM's 0.913 / 0.929 / 0.918 are 3-way verdicts,
  ties included, over every pair).
- ``scale="five"`` compares the full -2..2 scale, where "A clearly" and "A slightly" disagree.

The measures, each over human labels unless it says otherwise:

- raw pairwise agreement: every pair of people who labelled the same instance is one
  comparison; the share of comparisons that agree, pooled and per annotator pair;
- Cohen's kappa per annotator pair, on the instances the two share (computed for all pairs in
  one grouped pass, equal to ``sklearn.metrics.cohen_kappa_score``; see :func:`agreement_table`);
- Fleiss' kappa. It needs the same number of raters on every instance; with ragged counts it is
  computed on the instances that have the most common count of raters (of those with two or
  more; a tie between counts goes to the larger one), and the report says how many it left out.
  Krippendorff's alpha is the measure that uses every instance;
- Krippendorff's alpha (ordinal by default; nominal or interval as options), over every
  instance with at least two labels, missing labels allowed;
- by annotator: each person's agreement with everyone they share instances with, and with the
  LM majority; by domain (and by a feature's values): pairwise agreement, alpha, human vs LM;
- human vs LM: each judge's label (and the LM majority) against the human majority. A majority
  is the strict plurality of the labels on the instance at the chosen level; an instance whose
  top count is shared by two values has no majority and is left out (and counted). Note this is
  not the store's quick summary verdict (sign of the summed verdicts) that the Explore filter
  uses: plurality is what published figures use, and the two differ on, e.g., tie/tie/B.

``exclude_ties`` leaves out every comparison in which a side says tie: annotator pairs where
either said tie, and majority-vs-judge pairs where the human majority or the judge is a tie (the
majority is still taken over all labels, as PandaLM's non-tie figures are). Fleiss and alpha
then treat tie labels as missing.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pandas as pd

from curation.errors import CuratorError
from curation.labels import ASPECTS, SCALE
from curation.store import Store, usable_labels_sql

SCALES: dict[str, tuple[int, ...]] = {"verdict": (-1, 0, 1), "five": SCALE}
ALPHA_LEVELS = ("ordinal", "nominal", "interval")
EXPORT_FORMATS = ("json", "csv")
LM_PREFIX = "lm:"  # marks judges beside people in an agreement matrix
NO_GROUP = "(none)"
LM_MAJORITY = "LM majority"
LABEL_COLUMNS = ("instance_id", "annotator_kind", "annotator", *ASPECTS, "domain", "feature")


@dataclass(frozen=True)
class AgreementConfig:
    """What an agreement report measures; one definition for the CLI flags and the app form."""

    scale: str = field(
        default="verdict",
        metadata={
            "help": "verdict: compare A / tie / B ('clearly' and 'slightly' collapse); "
            "five: compare the full -2..2 scale"
        },
    )
    aspects: tuple[str, ...] = field(
        default=(),
        metadata={
            "help": "aspects to measure, repeatable (default: every aspect that has labels)",
            "cli": "--aspect",
        },
    )
    alpha_level: str = field(
        default="ordinal",
        metadata={
            "help": "Krippendorff's alpha level of measurement: ordinal, nominal or interval"
        },
    )
    exclude_ties: bool = field(
        default=False,
        metadata={"help": "leave out comparisons in which a side says tie"},
    )
    feature: str | None = field(
        default=None,
        metadata={"help": "also break down by this feature or tag (its values are the groups)"},
    )
    accepted_only: bool = field(
        default=False,
        metadata={
            "help": "count only people's labels a reviewer accepted (rejected ones never count)"
        },
    )

    def validate(self) -> AgreementConfig:
        if self.scale not in SCALES:
            raise CuratorError(f"scale {self.scale!r} is not one of {', '.join(SCALES)}")
        if self.alpha_level not in ALPHA_LEVELS:
            raise CuratorError(
                f"alpha level {self.alpha_level!r} is not one of {', '.join(ALPHA_LEVELS)}"
            )
        unknown = [a for a in self.aspects if a not in ASPECTS]
        if unknown:
            raise CuratorError(f"aspect {unknown[0]!r} is not one of {', '.join(ASPECTS)}")
        return self


# ---- results --------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None where a measure is undefined (no data, or no variation)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class PairAgreement:
    """Two annotators on the instances they both labelled."""

    annotator_a: str
    annotator_b: str
    n_items: int
    agreement: float | None
    cohen_kappa: float | None


@dataclass
class FleissResult:
    kappa: float | None
    raters_per_item: int | None  # the rater count of the instances used
    n_items: int
    n_items_left_out: int  # instances with two or more raters, but another count of them


@dataclass
class AlphaResult:
    alpha: float | None
    level: str
    n_items: int  # instances with at least two labels


@dataclass
class JudgeAgreement:
    """One LM judge (or the LM majority) against the human majority."""

    judge: str
    n_items: int
    agreement: float | None
    cohen_kappa: float | None


@dataclass
class HumanLMAgreement:
    lm_majority: JudgeAgreement
    judges: list[JudgeAgreement]
    n_no_human_majority: int  # instances with human labels but no plurality among them


@dataclass
class AnnotatorAgreement:
    """One person: agreement with the other people, and with the LM majority."""

    annotator: str
    n_labels: int
    n_comparisons: int
    agreement: float | None
    n_lm: int
    agreement_with_lm: float | None


@dataclass
class GroupAgreement:
    """One domain (or feature value): the measures on its instances only."""

    group: str
    n_items: int
    n_comparisons: int
    pairwise: float | None
    alpha: float | None
    n_human_lm: int
    human_lm: float | None  # LM majority vs human majority
    judges: list[JudgeAgreement]


@dataclass
class AspectAgreement:
    aspect: str
    n_items: int
    n_human_labels: int
    n_lm_labels: int
    n_comparisons: int
    pairwise: float | None
    pairs: list[PairAgreement]
    fleiss: FleissResult
    krippendorff: AlphaResult
    human_vs_lm: HumanLMAgreement
    by_annotator: list[AnnotatorAgreement]
    by_group: dict[str, list[GroupAgreement]]  # "domain", and "feature:<name>" when asked

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def pairs_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [asdict(p) for p in self.pairs], columns=[f.name for f in fields(PairAgreement)]
        )

    def annotators_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [asdict(a) for a in self.by_annotator],
            columns=[f.name for f in fields(AnnotatorAgreement)],
        )

    def groups_frame(self, by: str = "domain") -> pd.DataFrame:
        columns = [f.name for f in fields(GroupAgreement) if f.name != "judges"]
        rows = [{c: getattr(g, c) for c in columns} for g in self.by_group.get(by, [])]
        return pd.DataFrame(rows, columns=columns)

    def human_lm_frame(self, by: str = "domain") -> pd.DataFrame:
        """Per group and judge (``LM majority`` included): judge, group, n_items, agreement."""
        rows = []
        for group in self.by_group.get(by, []):
            for judge in [
                JudgeAgreement("LM majority", group.n_human_lm, group.human_lm, None),
                *group.judges,
            ]:
                if judge.n_items:
                    rows.append(
                        {
                            "group": group.group,
                            "judge": judge.judge,
                            "n_items": judge.n_items,
                            "agreement": judge.agreement,
                        }
                    )
        return pd.DataFrame(rows, columns=["group", "judge", "n_items", "agreement"])


@dataclass
class AgreementReport:
    dataset: str | None
    config: AgreementConfig
    aspects: list[AspectAgreement]

    def aspect(self, name: str) -> AspectAgreement:
        for found in self.aspects:
            if found.aspect == name:
                return found
        raise CuratorError(
            f"no {name!r} labels in this report (aspects: "
            f"{', '.join(a.aspect for a in self.aspects) or 'none'})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "scale": self.config.scale,
            "config": asdict(self.config),
            "aspects": {a.aspect: a.to_dict() for a in self.aspects},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_frame(self) -> pd.DataFrame:
        """Every figure as one long table: aspect, section, subject, metric, value, n."""
        rows: list[dict[str, Any]] = []

        def add(aspect: str, section: str, subject: str, metric: str, value: Any, n: int) -> None:
            rows.append(
                {
                    "aspect": aspect,
                    "section": section,
                    "subject": subject,
                    "metric": metric,
                    "value": value,
                    "n": n,
                }
            )

        for a in self.aspects:
            add(a.aspect, "humans", "all pairs", "pairwise_agreement", a.pairwise, a.n_comparisons)
            add(a.aspect, "humans", "all", "fleiss_kappa", a.fleiss.kappa, a.fleiss.n_items)
            add(
                a.aspect,
                "humans",
                "all",
                f"krippendorff_alpha_{a.krippendorff.level}",
                a.krippendorff.alpha,
                a.krippendorff.n_items,
            )
            for p in a.pairs:
                subject = f"{p.annotator_a} | {p.annotator_b}"
                add(a.aspect, "pair", subject, "pairwise_agreement", p.agreement, p.n_items)
                add(a.aspect, "pair", subject, "cohen_kappa", p.cohen_kappa, p.n_items)
            hl = a.human_vs_lm
            for j in [hl.lm_majority, *hl.judges]:
                add(a.aspect, "human_vs_lm", j.judge, "agreement", j.agreement, j.n_items)
                add(a.aspect, "human_vs_lm", j.judge, "cohen_kappa", j.cohen_kappa, j.n_items)
            for r in a.by_annotator:
                add(
                    a.aspect,
                    "annotator",
                    r.annotator,
                    "pairwise_agreement",
                    r.agreement,
                    r.n_comparisons,
                )
                add(
                    a.aspect,
                    "annotator",
                    r.annotator,
                    "agreement_with_lm",
                    r.agreement_with_lm,
                    r.n_lm,
                )
            for by, groups in a.by_group.items():
                for g in groups:
                    add(a.aspect, by, g.group, "pairwise_agreement", g.pairwise, g.n_comparisons)
                    add(a.aspect, by, g.group, "krippendorff_alpha", g.alpha, g.n_items)
                    add(a.aspect, by, g.group, "human_vs_lm", g.human_lm, g.n_human_lm)
                    for j in g.judges:
                        add(a.aspect, by, g.group, f"human_vs_{j.judge}", j.agreement, j.n_items)
        return pd.DataFrame(rows, columns=["aspect", "section", "subject", "metric", "value", "n"])

    def to_csv(self) -> str:
        buffer = io.StringIO()
        self.to_frame().to_csv(buffer, index=False)
        return buffer.getvalue()


def export_report(report: AgreementReport, path: str | Path, fmt: str | None = None) -> Path:
    """Write a report as JSON (nested, every figure) or CSV (the long table); by suffix."""
    target = Path(path)
    fmt = fmt or target.suffix.lstrip(".").lower()
    if fmt not in EXPORT_FORMATS:
        raise CuratorError(
            f"cannot tell how to write {target.name}: use a .json or .csv name (or say the format)"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(report.to_json() if fmt == "json" else report.to_csv(), encoding="utf-8")
    except OSError as exc:
        raise CuratorError(f"cannot write {target}: {exc.strerror}") from exc
    return target


# ---- loading --------------------------------------------------------------------------------


def labels_frame(rows: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Labels as the long frame every measure here reads: one row per (instance, annotator).

    Columns: instance_id, annotator_kind ('human' or 'lm'), annotator, the four aspects
    (-2..2 or missing), domain, feature. Missing columns are filled (kind: human).
    """
    frame = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for column in LABEL_COLUMNS:
        if column not in frame:
            frame[column] = "human" if column == "annotator_kind" else None
    frame = frame[list(LABEL_COLUMNS)]
    for aspect in ASPECTS:
        frame[aspect] = pd.to_numeric(frame[aspect], errors="raise").astype("Float64")
        if not frame[aspect].dropna().isin(SCALE).all():
            raise CuratorError(f"{aspect} labels must be integers from -2 to 2")
    frame["annotator_kind"] = frame["annotator_kind"].fillna("human")
    unknown = set(frame["annotator_kind"]) - {"human", "lm"}
    if unknown:
        raise CuratorError(f"annotator kind {sorted(unknown)[0]!r} is not human or lm")
    frame["annotator"] = frame["annotator"].astype(str)
    return frame.reset_index(drop=True)


def load_labels(
    store: Store, dataset: str, *, feature: str | None = None, accepted_only: bool = False
) -> pd.DataFrame:
    """Every submitted label of a dataset (reviewers' rejections aside; with ``accepted_only``,
    only people's labels a reviewer accepted), with its instance's domain (and one feature's
    value), in one query."""
    dataset_id = store.dataset(dataset)["id"]
    feature_select, feature_join, params = "NULL AS feature", "", [dataset_id]
    if feature:
        feature_select = "coalesce(f.label, f.value) AS feature"
        feature_join = "LEFT JOIN features f ON f.instance_id = i.id AND f.name = ?"
        params = [feature, dataset_id]
    cursor = store.conn.execute(
        f"""
        SELECT a.instance_id, a.annotator_kind, a.annotator,
               {", ".join(f"a.{aspect}" for aspect in ASPECTS)},
               i.domain, {feature_select}
        FROM annotations a JOIN instances i ON i.id = a.instance_id
        {feature_join}
        WHERE i.dataset_id = ? AND {usable_labels_sql("a", accepted_only=accepted_only)}
        ORDER BY a.instance_id
        """,  # noqa: S608  (fixed fragments and allow-listed aspect names only)
        params,
    )
    frame = pd.DataFrame.from_records(
        [tuple(r) for r in cursor.fetchall()], columns=list(LABEL_COLUMNS)
    )
    if feature and frame["feature"].isna().all():
        known = ", ".join(feature_names(store, dataset)) or "none yet"
        raise CuratorError(
            f"no instance of {dataset!r} has the feature {feature!r} (features: {known})"
        )
    return labels_frame(frame)


def feature_names(store: Store, dataset: str) -> list[str]:
    """The features and tags computed for a dataset's instances (for a breakdown picker)."""
    dataset_id = store.dataset(dataset)["id"]
    rows = store.conn.execute(
        "SELECT DISTINCT f.name FROM features f JOIN instances i ON i.id = f.instance_id "
        "WHERE i.dataset_id = ? ORDER BY f.name",
        (dataset_id,),
    )
    return [r[0] for r in rows]


def labelled_aspects(labels: pd.DataFrame) -> list[str]:
    """The aspects that have at least one label, in scale order."""
    return [a for a in ASPECTS if labels[a].notna().any()]


# ---- the measures ---------------------------------------------------------------------------


def _ratings(labels: pd.DataFrame, aspect: str, scale: str) -> pd.DataFrame:
    """One aspect at one level: item, kind, rater, value (int), domain, feature."""
    rows = labels[labels[aspect].notna()]
    values = rows[aspect].astype(int)
    if scale == "verdict":
        values = np.sign(values).astype(int)
    return pd.DataFrame(
        {
            "item": rows["instance_id"].to_numpy(),
            "kind": rows["annotator_kind"].to_numpy(),
            "rater": rows["annotator"].to_numpy(),
            "value": values.to_numpy(dtype=int),
            "domain": rows["domain"].map(_group_name).to_numpy(),
            "feature": rows["feature"].map(_group_name).to_numpy(),
        }
    )


def _group_name(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return NO_GROUP
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pairs(ratings: pd.DataFrame, exclude_ties: bool) -> pd.DataFrame:
    """Every pair of raters on a shared instance: item, rater_a < rater_b, value_a, value_b."""
    left = ratings[["item", "rater", "value"]]
    joined = left.merge(left, on="item", suffixes=("_a", "_b"))
    joined = joined[joined["rater_a"] < joined["rater_b"]]
    if exclude_ties:
        joined = joined[(joined["value_a"] != 0) & (joined["value_b"] != 0)]
    return joined.reset_index(drop=True)


def agreement_table(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Raw agreement and Cohen's kappa of ``value_a`` against ``value_b``, per group of rows.

    Kappa is Cohen's, (p_o - p_e) / (1 - p_e), written over integer counts as
    (n * agree - chance) / (n^2 - chance) with chance = sum over values of count_a * count_b,
    so it equals ``sklearn.metrics.cohen_kappa_score`` (the tests hold it to that) and is NaN
    where sklearn's is undefined. It is one grouped pass because a crowd of hundreds of workers
    has tens of thousands of annotator pairs, and one sklearn call per pair takes minutes.
    Returns columns n, agree, agreement, kappa, indexed by ``keys``.
    """
    columns = ["n", "agree", "agreement", "kappa"]
    if frame.empty:
        index = pd.MultiIndex.from_tuples([], names=keys) if len(keys) > 1 else None
        empty = pd.DataFrame(columns=columns, index=index, dtype=float)
        if len(keys) == 1:
            empty.index.name = keys[0]
        return empty
    frame = frame.assign(agree=frame["value_a"] == frame["value_b"])
    grouped = frame.groupby(keys, sort=True)
    n = grouped.size().astype("int64")
    agree = grouped["agree"].sum().astype("int64")
    count_a = frame.groupby([*keys, "value_a"]).size().rename_axis([*keys, "value"])
    count_b = frame.groupby([*keys, "value_b"]).size().rename_axis([*keys, "value"])
    chance = (
        count_a.mul(count_b, fill_value=0)
        .groupby(level=keys)
        .sum()
        .reindex(n.index, fill_value=0)
        .astype("int64")
    )
    denominator = (n * n - chance).astype(float)
    kappa = (n * agree - chance) / denominator.where(denominator != 0)
    return pd.DataFrame({"n": n, "agree": agree, "agreement": agree / n, "kappa": kappa})


def _fleiss(people: pd.DataFrame) -> FleissResult:
    """Fleiss' kappa on the instances with the most common number of raters (ragged counts)."""
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    counts = people.groupby("item").size()
    counts = counts[counts >= 2]
    if counts.empty:
        return FleissResult(None, None, 0, 0)
    frequency = counts.value_counts()
    raters = int(max(frequency[frequency == frequency.max()].index))
    items = counts.index[counts == raters]
    used = people[people["item"].isin(items)]
    grid = (
        used.assign(slot=used.groupby("item").cumcount())
        .pivot(index="item", columns="slot", values="value")
        .to_numpy(dtype=int)
    )
    table, _ = aggregate_raters(grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all raters always agree on one value: undefined
        kappa = fleiss_kappa(table, method="fleiss")
    return FleissResult(_number(kappa), raters, len(items), len(counts) - len(items))


def _alpha(people: pd.DataFrame, domain: tuple[int, ...], level: str) -> AlphaResult:
    """Krippendorff's alpha from value counts per instance (missing labels simply absent)."""
    counts = (
        people.groupby(["item", "value"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=domain, fill_value=0)
    )
    counts = counts[counts.sum(axis=1) >= 2]
    if counts.empty:
        return AlphaResult(None, level, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a single value throughout: no disagreement expected
        value = krippendorff.alpha(
            value_counts=counts.to_numpy(dtype=float),
            value_domain=list(domain),
            level_of_measurement=level,
        )
    return AlphaResult(_number(value), level, len(counts))


def majority(ratings: pd.DataFrame) -> pd.Series:
    """The strict plurality value per instance (``item`` -> value); instances whose top count
    is shared by two values are absent."""
    if ratings.empty:
        return pd.Series(dtype=int, name="value", index=pd.Index([], name="item"))
    counts = ratings.groupby(["item", "value"]).size().rename("n").reset_index()
    counts = counts.sort_values(["item", "n"], ascending=[True, False])
    rank = counts.groupby("item").cumcount()
    top = counts[rank == 0].set_index("item")
    runner_up = counts[rank == 1].set_index("item")["n"].reindex(top.index).fillna(0)
    winners = top[top["n"] > runner_up]
    return winners["value"].astype(int)


def _judge_comparisons(
    human_majority: pd.Series, lm: pd.DataFrame, exclude_ties: bool
) -> pd.DataFrame:
    """Each judge's label, and the LM majority, against the human majority, one row per
    (instance, judge): item, judge, value_a (people), value_b (judge)."""
    lm_majority = majority(lm).rename("value").reset_index().assign(rater=LM_MAJORITY)
    verdicts = pd.concat([lm_majority, lm[["item", "rater", "value"]]], ignore_index=True)
    joined = verdicts.rename(columns={"rater": "judge", "value": "value_b"}).join(
        human_majority.rename("value_a"), on="item", how="inner"
    )
    if exclude_ties:
        joined = joined[(joined["value_a"] != 0) & (joined["value_b"] != 0)]
    return joined[["item", "judge", "value_a", "value_b"]].reset_index(drop=True)


def _judge(name: str, table: pd.DataFrame) -> JudgeAgreement:
    if name not in table.index:
        return JudgeAgreement(name, 0, None, None)
    row = table.loc[name]
    return JudgeAgreement(name, int(row["n"]), _number(row["agreement"]), _number(row["kappa"]))


def _by_annotator(
    people: pd.DataFrame, pairs: pd.DataFrame, lm_majority: pd.DataFrame, exclude_ties: bool
) -> list[AnnotatorAgreement]:
    both_sides = pd.concat(
        [
            pairs[["rater_a", "value_a", "value_b"]].rename(columns={"rater_a": "rater"}),
            pairs[["rater_b", "value_a", "value_b"]].rename(columns={"rater_b": "rater"}),
        ]
    )
    with_people = agreement_table(both_sides, ["rater"])
    against_lm = people[people["value"] != 0] if exclude_ties else people
    with_lm = agreement_table(
        against_lm.rename(columns={"value": "value_a"}).merge(
            lm_majority[["item", "value_b"]], on="item"
        ),
        ["rater"],
    )
    out = []
    for rater, n_labels in people.groupby("rater").size().sort_index().items():
        peers = with_people.loc[rater] if rater in with_people.index else None
        lm = with_lm.loc[rater] if rater in with_lm.index else None
        out.append(
            AnnotatorAgreement(
                annotator=str(rater),
                n_labels=int(n_labels),
                n_comparisons=int(peers["n"]) if peers is not None else 0,
                agreement=_number(peers["agreement"]) if peers is not None else None,
                n_lm=int(lm["n"]) if lm is not None else 0,
                agreement_with_lm=_number(lm["agreement"]) if lm is not None else None,
            )
        )
    return out


def _by_group(
    groups: pd.Series,
    people: pd.DataFrame,
    pairs: pd.DataFrame,
    compared: pd.DataFrame,
    judges: list[str],
    domain: tuple[int, ...],
    level: str,
) -> list[GroupAgreement]:
    """The measures per value of ``groups`` (instance -> domain or feature value)."""
    pair_table = agreement_table(pairs.assign(group=pairs["item"].map(groups)), ["group"])
    judge_table = agreement_table(
        compared.assign(group=compared["item"].map(groups)), ["group", "judge"]
    )
    people = people.assign(group=people["item"].map(groups))
    out = []
    for group, n_items in groups.value_counts().sort_index().items():
        in_pairs = pair_table.loc[group] if group in pair_table.index else None
        in_judges = (
            judge_table.xs(group, level="group")
            if group in judge_table.index.get_level_values("group")
            else judge_table.iloc[0:0].droplevel("group")
        )
        lm = _judge(LM_MAJORITY, in_judges)
        out.append(
            GroupAgreement(
                group=str(group),
                n_items=int(n_items),
                n_comparisons=int(in_pairs["n"]) if in_pairs is not None else 0,
                pairwise=_number(in_pairs["agreement"]) if in_pairs is not None else None,
                alpha=_alpha(people[people["group"] == group], domain, level).alpha,
                n_human_lm=lm.n_items,
                human_lm=lm.agreement,
                judges=[_judge(name, in_judges) for name in judges],
            )
        )
    return out


def aspect_agreement(
    labels: pd.DataFrame, aspect: str, config: AgreementConfig | None = None
) -> AspectAgreement:
    """Every measure for one aspect of a labels frame (see :func:`labels_frame`)."""
    config = (config or AgreementConfig()).validate()
    domain = SCALES[config.scale]
    ratings = _ratings(labels, aspect, config.scale)
    people = ratings[ratings["kind"] == "human"]
    lm = ratings[ratings["kind"] == "lm"]
    # Fleiss and alpha read tie labels as missing when ties are left out; pairs drop them per pair.
    scored = people[people["value"] != 0] if config.exclude_ties else people
    pairs = _pairs(people, config.exclude_ties)
    pair_table = agreement_table(pairs, ["rater_a", "rater_b"])

    human_majority = majority(people)
    compared = _judge_comparisons(human_majority, lm, config.exclude_ties)
    judge_table = agreement_table(compared, ["judge"])
    judges = sorted(lm["rater"].unique())
    lm_majority = majority(lm).rename("value_b").reset_index()
    if config.exclude_ties:
        lm_majority = lm_majority[lm_majority["value_b"] != 0]

    items = ratings.drop_duplicates("item").set_index("item")
    by_group = {
        "domain": _by_group(
            items["domain"], scored, pairs, compared, judges, domain, config.alpha_level
        )
    }
    if config.feature:
        by_group[f"feature:{config.feature}"] = _by_group(
            items["feature"], scored, pairs, compared, judges, domain, config.alpha_level
        )
    return AspectAgreement(
        aspect=aspect,
        n_items=len(items),
        n_human_labels=len(people),
        n_lm_labels=len(lm),
        n_comparisons=len(pairs),
        pairwise=_number(pairs["value_a"].eq(pairs["value_b"]).mean()) if len(pairs) else None,
        pairs=[
            PairAgreement(str(a), str(b), int(n), _number(share), _number(kappa))
            for (a, b), n, share, kappa in zip(
                pair_table.index,
                pair_table["n"],
                pair_table["agreement"],
                pair_table["kappa"],
                strict=True,
            )
        ],
        fleiss=_fleiss(scored),
        krippendorff=_alpha(scored, domain, config.alpha_level),
        human_vs_lm=HumanLMAgreement(
            lm_majority=_judge(LM_MAJORITY, judge_table),
            judges=[_judge(name, judge_table) for name in judges],
            n_no_human_majority=int(people["item"].nunique() - len(human_majority)),
        ),
        by_annotator=_by_annotator(people, pairs, lm_majority, config.exclude_ties),
        by_group=by_group,
    )


def measure(
    labels: pd.DataFrame, config: AgreementConfig | None = None, *, dataset: str | None = None
) -> AgreementReport:
    """An agreement report over a labels frame: the asked aspects, or every labelled one."""
    config = (config or AgreementConfig()).validate()
    aspects = list(config.aspects) or labelled_aspects(labels)
    return AgreementReport(
        dataset=dataset,
        config=config,
        aspects=[aspect_agreement(labels, aspect, config) for aspect in aspects],
    )


def dataset_agreement(
    store: Store, dataset: str, config: AgreementConfig | None = None
) -> AgreementReport:
    """The agreement report of one dataset in a store."""
    config = (config or AgreementConfig()).validate()
    labels = load_labels(store, dataset, feature=config.feature, accepted_only=config.accepted_only)
    return measure(labels, config, dataset=dataset)


MATRIX_VALUES = {"agreement": "agreement", "cohen": "kappa", "shared": "n"}


def agreement_matrix(
    labels: pd.DataFrame,
    aspect: str = "overall",
    *,
    scale: str = "verdict",
    include_lm: bool = True,
    value: str = "agreement",
    exclude_ties: bool = False,
) -> pd.DataFrame:
    """Annotator-by-annotator square table for a heatmap.

    ``value``: ``agreement`` (raw share agreeing on shared instances; 1 on the diagonal),
    ``cohen`` (Cohen's kappa; 1 on the diagonal) or ``shared`` (number of shared instances;
    the annotator's own label count on the diagonal). NaN where two annotators share no
    instance. LM judges come after the people, as ``lm:<name>``.
    """
    AgreementConfig(scale=scale).validate()
    if value not in MATRIX_VALUES:
        raise CuratorError(f"matrix value {value!r} is not one of {', '.join(MATRIX_VALUES)}")
    ratings = _ratings(labels, aspect, scale)
    if not include_lm:
        ratings = ratings[ratings["kind"] == "human"]
    ratings = ratings.assign(
        rater=np.where(ratings["kind"] == "lm", LM_PREFIX + ratings["rater"], ratings["rater"])
    )
    names = sorted(ratings["rater"].unique(), key=lambda n: (n.startswith(LM_PREFIX), n))
    cells = agreement_table(_pairs(ratings, exclude_ties), ["rater_a", "rater_b"])[
        MATRIX_VALUES[value]
    ].astype(float)
    mirrored = cells.copy()
    mirrored.index = mirrored.index.swaplevel()
    square = pd.concat([cells, mirrored]).unstack() if len(cells) else pd.DataFrame()
    matrix = square.reindex(index=names, columns=names).astype(float)
    own = ratings.groupby("rater").size()
    for name in names:
        matrix.loc[name, name] = float(own[name]) if value == "shared" else 1.0
    matrix.index.name = matrix.columns.name = "annotator"
    return matrix


def judge_accuracy(
    labels: pd.DataFrame,
    aspect: str = "overall",
    *,
    pool: Callable[[str], str] | None = None,
    missing_as_wrong: bool = False,
) -> pd.DataFrame:
    """Each LM judge's verdict agreement with the human majority (a gold label, where there is
    one person), per domain: columns domain, judge, n_items, n_labels, n_missing, agreement.

    ``pool`` maps annotator names onto one judge whose labels are pooled (e.g. a judge's two
    presentation orders, which published figures average). ``n_missing`` counts the labels the
    judge's annotators lack on domain instances with a human majority (an unparsed verdict);
    ``missing_as_wrong`` counts them as disagreements, as benchmarks that score an unparsed
    answer as wrong do.
    """
    ratings = _ratings(labels, aspect, "verdict")
    human = majority(ratings[ratings["kind"] == "human"])
    lm = ratings[ratings["kind"] == "lm"]
    lm = lm.assign(judge=lm["rater"].map(pool) if pool else lm["rater"])
    domains = ratings.drop_duplicates("item").set_index("item")["domain"]
    compared = lm.join(human.rename("human"), on="item", how="inner")
    compared = compared.assign(agree=compared["value"] == compared["human"])
    grouped = compared.groupby(["domain", "judge"])
    table = pd.DataFrame({"n_labels": grouped.size(), "agree": grouped["agree"].sum()})
    items_per_domain = domains[domains.index.isin(human.index)].value_counts()
    raters_per_judge = lm.groupby("judge")["rater"].nunique()
    table = table.reset_index()
    table["n_items"] = table["domain"].map(items_per_domain).astype(int)
    expected = table["n_items"] * table["judge"].map(raters_per_judge)
    table["n_missing"] = (expected - table["n_labels"]).astype(int)
    denominator = expected if missing_as_wrong else table["n_labels"]
    table["agreement"] = table["agree"] / denominator
    columns = ["domain", "judge", "n_items", "n_labels", "n_missing", "agreement"]
    return table[columns].sort_values(["domain", "judge"]).reset_index(drop=True)
