"""The judge's own uncertainty as routing signals: confidence, order flips, and their feature rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from curation.demo import build_demo
from curation.errors import CuratorError
from curation.importer import ImportOptions, import_path
from curation.pairs import LabelConfig, SplitLabels
from curation.preset_llmbar import llmbar_records
from curation.records import Annotation, Instance
from curation.store import Store
from routing.backends import TransformersBackend
from routing.features import FeatureConfig, FeatureMatrix, compute_features
from routing.judge_signals import JudgeSignals, judge_feature_rows
from routing.judges import Judge, judge_dataset


def _pairs(store: Store, n: int) -> list[int]:
    ds = store.create_dataset("prefs", "preference")
    return store.insert_instances(
        ds["id"],
        [Instance(uid=f"u{i}", prompt="p", response_a="a", response_b="b") for i in range(n)],
    )


def _orders(p_original: float, p_swapped: float) -> dict:
    """Per-order results as ``routing.judges`` stores them: P("A") as shown in each order."""
    return {
        "method": "logprobs",
        "orders": [
            {"swapped": False, "p_answer_a": p_original},
            {"swapped": True, "p_answer_a": p_swapped},
        ],
    }


def test_llmbar_orders_that_name_different_responses_are_flipped(store):
    """noswap vs swap: same side consistent, other side flipped, a tie against a side flipped,
    a missing order unknown."""
    ids = _pairs(store, 4)
    verdicts = {0: (-2, -2), 1: (-2, 2), 2: (0, 2), 3: (2, None)}
    labels = []
    for k, (noswap, swap) in verdicts.items():
        labels.append((ids[k], Annotation("lm", "X/s/noswap", overall=noswap)))
        if swap is not None:
            labels.append((ids[k], Annotation("lm", "X/s/swap", overall=swap)))
    store.add_annotations(labels)
    signals = JudgeSignals.load(store, "prefs", "X/s/noswap")
    assert signals.flipped.tolist() == [0, 1, 1, -1]
    assert np.isnan(signals.confidence).all()
    assert signals.available == {"confidence": False, "position": True}


def test_an_llmbar_judge_named_without_its_order_reads_the_noswap_labels(store):
    """``X/s`` is the pooled name curators see in agreement tables; it means ``X/s/noswap``."""
    (i,) = _pairs(store, 1)
    store.add_annotations(
        [
            (i, Annotation("lm", "X/s/noswap", overall=-2)),
            (i, Annotation("lm", "X/s/swap", overall=2)),
        ]
    )
    signals = JudgeSignals.load(store, "prefs", "X/s")
    assert (signals.judge, signals.flipped.tolist()) == ("X/s/noswap", [1])


def test_a_project_judge_whose_two_orders_disagree_is_flipped(store):
    """P("A") 0.8 names A; in the swapped order P("A") 0.7 names the original B: flipped. A
    swapped P("A") of 0.2 names the original A: consistent."""
    ids = _pairs(store, 2)
    store.add_annotations(
        [
            (ids[0], Annotation("lm", "j", overall=-1, confidence=0.55, reasons=_orders(0.8, 0.7))),
            (ids[1], Annotation("lm", "j", overall=-2, confidence=0.8, reasons=_orders(0.8, 0.2))),
        ]
    )
    assert JudgeSignals.load(store, "prefs").flipped.tolist() == [1, 0]


def test_parsed_letters_are_mapped_back_to_the_original_sides(store):
    """Without probabilities the letters count: "B" in the swapped order names the original A."""
    (i,) = _pairs(store, 1)
    reasons = {
        "method": "parsed",
        "orders": [
            {"swapped": False, "answer": "A", "p_answer_a": None},
            {"swapped": True, "answer": "B", "p_answer_a": None},
        ],
    }
    store.add_annotations([(i, Annotation("lm", "j", overall=-1, reasons=reasons))])
    assert JudgeSignals.load(store, "prefs").flipped.tolist() == [0]


def test_a_real_judge_run_records_a_position_for_every_pair_it_judged(store, tiny_model: Path):
    """What ``judge_dataset`` writes is what the signals read: a known position per judged pair,
    and the verdict's confidence."""
    ids = _pairs(store, 3)
    backend = TransformersBackend(str(tiny_model), model_id="tiny-llama", batch_size=4)
    judge_dataset(store, "prefs", Judge(name="tiny", model=str(tiny_model)), backend)
    signals = JudgeSignals.load(store, "prefs")
    assert signals.judge == "tiny"
    assert set(signals.flipped.tolist()) <= {0, 1}
    stored = {
        r[0]: r[1] for r in store.conn.execute("SELECT instance_id, confidence FROM annotations")
    }
    assert signals.confidence.tolist() == pytest.approx([stored[i] for i in ids])


def test_confidence_comes_from_probs_when_the_column_is_empty(store):
    """max(pA, pB) / (pA + pB), so unnormalised probabilities work too."""
    ids = _pairs(store, 2)
    store.add_annotations(
        [
            (ids[0], Annotation("lm", "j", overall=2, probs=[0.2, 0.6])),
            (ids[1], Annotation("lm", "j", overall=-1, confidence=0.6, probs=[0.9, 0.1])),
        ]
    )
    assert JudgeSignals.load(store, "prefs").confidence.tolist() == pytest.approx([0.75, 0.6])


def test_an_unknown_signal_has_no_feature_row(store):
    """No confidence, no probs, no orders: the pair is absent from both features."""
    ids = _pairs(store, 2)
    store.add_annotations(
        [
            (ids[0], Annotation("lm", "j", overall=-1, confidence=0.9, reasons=_orders(0.9, 0.1))),
            (ids[1], Annotation("lm", "j", overall=1)),
        ]
    )
    signals = JudgeSignals.load(store, "prefs")
    assert math.isnan(signals.confidence[1]) and signals.flipped[1] == -1
    rows = judge_feature_rows(signals)
    assert {(r[0], r[1]) for r in rows} == {
        (ids[0], "judge_confidence"),
        (ids[0], "judge_position"),
    }
    assert {r[3] for r in rows} == {"judge:j"}


def test_a_dataset_without_lm_labels_has_no_judge_and_no_rows(store):
    (i,) = _pairs(store, 1)
    store.add_annotations([(i, Annotation("human", "h", overall=1))])
    signals = JudgeSignals.load(store, "prefs")
    assert signals.judge is None and judge_feature_rows(signals) == []


def test_a_judge_not_on_the_dataset_is_refused_naming_those_that_are(store):
    (i,) = _pairs(store, 1)
    store.add_annotations([(i, Annotation("lm", "j", overall=1))])
    with pytest.raises(CuratorError, match="no LM labels by 'k'.*judges: j"):
        JudgeSignals.load(store, "prefs", "k")


def test_the_default_judge_is_the_one_split_labels_use(store):
    """Both pick the LM annotator with the most labels, ties by name."""
    ids = _pairs(store, 3)
    store.add_annotations(
        [(i, Annotation("lm", "zeta", overall=1)) for i in ids]
        + [(i, Annotation("lm", "alpha", overall=1)) for i in ids]
        + [(ids[0], Annotation("lm", "omega", overall=1))]
    )
    assert JudgeSignals.load(store, "prefs").judge == SplitLabels.load(store, "prefs").judge
    assert JudgeSignals.load(store, "prefs").judge == "alpha"


def test_uncertainty_ranks_flipped_first_then_low_confidence():
    """Flipped above consistent whatever the confidence; within a level, less confident above;
    an unknown confidence ranks as the median."""
    signals = JudgeSignals(
        instance_ids=np.arange(5),
        judge="j",
        confidence=np.array([0.99, 0.6, 0.9, 0.55, np.nan]),
        flipped=np.array([1, 0, 0, 0, 0], dtype=np.int8),
    )
    order = np.argsort(-signals.uncertainty(), kind="stable").tolist()
    assert order[0] == 0
    assert order[1:] == [3, 1, 4, 2]  # 0.55, 0.6, unknown (median 0.75), 0.9


def test_uncertainty_ranks_an_unknown_position_as_the_typical_pair():
    """With most pairs consistent, a pair of unknown position ranks with the consistent ones."""
    signals = JudgeSignals(
        instance_ids=np.arange(4),
        judge="j",
        confidence=np.full(4, np.nan),
        flipped=np.array([1, 0, 0, -1], dtype=np.int8),
    )
    scores = signals.uncertainty()
    assert scores[0] > scores[3] == scores[1] == scores[2]


def test_demo_features_gain_judge_confidence_in_thirds(store):
    """The demo judge reports confidence (no orders): three bins, no position columns."""
    build_demo(store, n_pairs=60)
    compute_features(store, "demo-prefs", FeatureConfig(tagger="none"))
    names = FeatureMatrix.load(store, "demo-prefs").names
    assert {"judge_confidence=low", "judge_confidence=mid", "judge_confidence=high"} <= set(names)
    assert not any(n.startswith("judge_position=") for n in names)


def test_recomputing_features_with_another_judge_replaces_the_judge_rows(store):
    """Both judge names are cleared first, so an earlier judge's rows never linger."""
    ids = _pairs(store, 2)
    store.add_annotations(
        [(i, Annotation("lm", "j", overall=1, reasons=_orders(0.2, 0.8))) for i in ids]
        + [(ids[0], Annotation("lm", "k", overall=1, confidence=0.7))]
    )
    compute_features(store, "prefs", FeatureConfig(tagger="none", judge="j"))
    compute_features(store, "prefs", FeatureConfig(tagger="none", judge="k"))
    rows = store.conn.execute(
        "SELECT instance_id, name, extractor FROM features WHERE name LIKE 'judge_%'"
    ).fetchall()
    assert [tuple(r) for r in rows] == [(ids[0], "judge_confidence", "judge:k")]


@pytest.mark.realdata
def test_real_llmbar_flipped_pairs_disagree_with_gold_more_often(store, shared_data, tmp_path):
    """ChatGPT (Vanilla_NoRules): where its verdict changes with the order, its original-order
    verdict disagrees with the gold label more often than where it does not."""
    records = llmbar_records(
        shared_data / "llmbar", evaluators=("ChatGPT",), strategies=("Vanilla_NoRules",)
    )
    path = tmp_path / "llmbar.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    import_path(store, path, ImportOptions(preset="llmbar", dataset="llmbar"))
    judge = "ChatGPT/Vanilla_NoRules/noswap"
    signals = JudgeSignals.load(store, "llmbar", judge)
    labels = SplitLabels.load(store, "llmbar", LabelConfig(judge=judge))
    scored = (labels.lm != 0) & (labels.human != 0)
    wrong = labels.lm != labels.human
    rates, counts = [], []
    for flip in (1, 0):
        mask = scored & (signals.flipped == flip)
        rates.append(wrong[mask].mean())
        counts.append(int(mask.sum()))
    se = math.sqrt(sum(p * (1 - p) / n for p, n in zip(rates, counts, strict=True)))
    print(f"disagreement with gold: flipped {rates[0]:.3f} (n={counts[0]}), "
          f"consistent {rates[1]:.3f} (n={counts[1]}), SE of the gap {se:.3f}")  # fmt: skip
    assert rates[0] - rates[1] > 2 * se
