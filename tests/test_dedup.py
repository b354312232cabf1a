"""Exact and near-duplicate detection (curation.dedup): what is dropped, what is kept, and why."""

from __future__ import annotations

import pytest

from curation.dedup import DedupConfig, find_duplicates, normalise, shingles
from curation.errors import CuratorError

LONG = (
    "Explain how a heat pump moves warmth from the cold air outside into a house in winter, "
    "why it can deliver more heat energy than the electricity it uses, and what limits its "
    "efficiency when the outdoor temperature falls far below freezing for several days"
)


def test_copies_differing_only_in_case_spacing_and_punctuation_are_exact_duplicates():
    """Normalisation folds formatting, so a reformatted copy is caught and the first one kept."""
    texts = ["How do vaccines work?", "  how DO vaccines   work ", "How do vaccines work!!", "Why?"]
    result = find_duplicates(texts, DedupConfig(near=False))
    assert result.keep == [True, False, False, True]
    assert [(d.index, d.kept, d.reason) for d in result.dropped] == [
        (1, 0, "exact"),
        (2, 0, "exact"),
    ]


def test_a_one_word_edit_of_a_long_text_is_a_near_duplicate():
    """MinHash LSH finds the edited copy and reports its estimated Jaccard similarity."""
    edited = LONG.replace("several days", "several weeks")
    result = find_duplicates([LONG, edited, "A poem about lighthouses at dawn."])
    assert result.keep == [True, False, True]
    (dropped,) = result.dropped
    assert dropped.reason == "near" and dropped.kept == 0
    assert dropped.similarity >= 0.8


def test_different_prompts_on_the_same_topic_are_kept():
    """Same subject, different request: nothing near enough to drop."""
    texts = [
        LONG,
        "Compare the running costs of a heat pump and a gas boiler for a small flat in a mild "
        "climate, assuming typical electricity and gas prices and an average insulation level",
        "Write a short story in which a heat pump engineer saves a village during a cold snap",
    ]
    assert find_duplicates(texts).keep == [True, True, True]


def test_near_duplicates_are_compared_with_kept_rows_only():
    """Each row is checked against rows kept so far, never against one already dropped."""
    texts = [LONG, LONG + " today", LONG + " tonight"]
    result = find_duplicates(texts)
    assert result.keep == [True, False, False]
    assert {d.kept for d in result.dropped} == {0}


def test_the_report_counts_drops_within_and_across_sources():
    """The report says which source lost rows, why, and whether the twin was in the same source."""
    texts = ["alpha beta gamma", "alpha beta gamma", "alpha beta gamma", "delta"]
    groups = ["a", "a", "b", "b"]
    report = find_duplicates(texts, DedupConfig(near=False)).report(groups, ids=[10, 11, 12, 13])
    assert report["dropped"] == 2
    assert report["by_source"] == {
        "a": {"exact": 1, "near": 0, "within": 1, "across": 0},
        "b": {"exact": 1, "near": 0, "within": 0, "across": 1},
    }
    assert report["examples"][1] == {
        "source": "b",
        "id": 12,
        "reason": "exact",
        "duplicate_of_source": "a",
        "duplicate_of_id": 10,
        "similarity": 1.0,
    }


def test_dedup_is_deterministic():
    """The same texts give the same drops every time (MinHash seeds are fixed)."""
    texts = [LONG, LONG.replace("winter", "summer"), LONG.upper(), "short one", "short one."]
    first = find_duplicates(texts)
    assert first.dropped == find_duplicates(texts).dropped


def test_short_texts_make_one_shingle_and_normalise_folds_unicode():
    """A text shorter than a shingle is one shingle; full-width letters fold to ASCII."""
    assert shingles("Hi there", 5) == [b"hi there"]
    assert normalise("ＡＢＣ, déjà-vu!") == "abc déjà vu"


@pytest.mark.parametrize(
    "config",
    [
        DedupConfig(threshold=0),
        DedupConfig(num_perm=4),
        DedupConfig(shingle=0),
        DedupConfig(on="x"),
    ],
)
def test_bad_settings_are_curator_errors(config):
    with pytest.raises(CuratorError):
        find_duplicates(["a"], config)
