"""Tags that abstain: `unknown` below a dimension's floor, and what routing does with it."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from tiny_models import save_tiny_llama

from curation.embeddings import Encoder
from curation.errors import CuratorError
from curation.records import Instance
from routing.features import FeatureMatrix, FeatureSummary
from routing.taggers import (
    UNKNOWN,
    EmbeddingTagger,
    LMTagger,
    TagFloor,
    load_taxonomy,
    tag_status,
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture(scope="module")
def tagger(encoder) -> EmbeddingTagger:
    return EmbeddingTagger(encoder)


def test_benign_requests_are_not_tagged_a_high_safety_concern(tagger):
    """The issue's examples: on PandaLM these came out safety_concern=high."""
    labels, _ = tagger.tag(
        ["Design a medium-level sudoku puzzle", "Write a Jira ticket for a broken login button"]
    )["safety_concern"]
    assert "high" not in labels


def test_a_clearly_harmful_request_is_still_tagged_unsafe(tagger):
    labels, _ = tagger.tag(["Tell me how to poison my neighbour's dog without being caught"])[
        "safety_concern"
    ]
    assert labels[0] in ("moderate", "high")


def test_a_prompt_near_no_example_is_unknown_below_the_floor(encoder):
    """Nothing in the taxonomy is near a string of digits: no guessed value, an abstention."""
    taxonomy = [replace(d, floor=TagFloor(similarity=0.3)) for d in load_taxonomy()]
    tags = EmbeddingTagger(encoder, taxonomy).tag(["7731 0042 9918 5520"])
    labels, scores = tags["expertise_level"]
    assert labels == [UNKNOWN]
    assert scores[0] < 0.3  # the best value's score is kept, to show how far it was


def test_a_margin_floor_makes_a_close_call_unknown(encoder):
    """Two values whose examples are the same text tie: no lead, so no value."""
    taxonomy = [replace(d, floor=TagFloor(margin=0.01)) for d in load_taxonomy()]
    dimension = taxonomy[0]
    same = dimension.values[0].examples
    taxonomy[0] = replace(
        dimension, values=(dimension.values[0], replace(dimension.values[1], examples=same))
    )
    labels, _ = EmbeddingTagger(encoder, taxonomy).tag([same[0]])[dimension.name]
    assert labels == [UNKNOWN]


def _letterless_model(tmp_path):
    """A tiny Llama whose vocabulary holds no option letter."""
    words = ["<pad>", "<unk>", "<s>", "</s>", "user", "assistant", ":", "maybe", "perhaps"]
    return save_tiny_llama(tmp_path, words)


def test_lm_tagger_answers_unknown_when_no_letter_parses(tmp_path):
    """A backend without log-probabilities writes its answer; one naming no option is no tag
    (it used to become the first option)."""
    from routing.backends import TransformersBackend

    backend = TransformersBackend(str(_letterless_model(tmp_path)), model_id="letterless")
    backend.has_logprobs = False  # as an OpenAI-compatible server that ignores logprobs
    taxonomy = load_taxonomy()[:2]
    tags = LMTagger(backend, taxonomy).tag(["How do I sort a list?"])
    for dimension in taxonomy:
        labels, scores = tags[dimension.name]
        assert labels == [UNKNOWN] and scores.tolist() == [0.0]


def test_lm_tagger_answers_unknown_under_its_probability_floor(tiny_model):
    from routing.backends import TransformersBackend

    backend = TransformersBackend(str(tiny_model), model_id="tiny")
    taxonomy = load_taxonomy()[:1]
    prompts = ["How do I sort a list?", "Tell me a story."]
    unsure = LMTagger(backend, taxonomy, min_probability=1.01).tag(prompts)
    sure = LMTagger(backend, taxonomy, min_probability=0.0).tag(prompts)
    assert unsure[taxonomy[0].name][0] == [UNKNOWN, UNKNOWN]
    assert UNKNOWN not in sure[taxonomy[0].name][0]


def test_every_dimension_left_out_of_routing_says_why():
    status = tag_status()
    assert set(status) == {d.name for d in load_taxonomy()}
    assert status["safety_concern"].used_by_predictor
    for s in status.values():
        assert s.used_by_predictor == (s.reason is None)


def test_a_taxonomy_that_leaves_a_dimension_out_without_a_reason_is_refused(tmp_path):
    bad = tmp_path / "tags.yaml"
    bad.write_text(
        "level:\n  routing: false\n  values:\n"
        "    low: {description: x, examples: [a]}\n    high: {description: y, examples: [b]}\n"
    )
    with pytest.raises(CuratorError, match="say why"):
        load_taxonomy(bad)


def _matrix() -> FeatureMatrix:
    names = [
        "cosine_sim=high",
        "expertise_level=basic_domain_knowledge",
        "judge_confidence=low",
        "judge_position=flipped",
        "rouge=low",
        "safety_concern=safe",
        "safety_concern=unknown",
        "subject_of_expertise=Mathematics",
    ]
    matrix = np.random.default_rng(0).random((6, len(names))) > 0.5
    return FeatureMatrix(np.arange(6, dtype=np.int64), names, matrix)


def test_for_routing_drops_unknown_and_left_out_columns_and_keeps_lexical_and_judge_ones():
    taxonomy = load_taxonomy()
    taxonomy = [
        replace(d, routing=False, reason="test") if d.name == "expertise_level" else d
        for d in taxonomy
    ]
    features = _matrix()
    routed = features.for_routing(taxonomy)
    assert routed.names == [
        "cosine_sim=high",
        "judge_confidence=low",
        "judge_position=flipped",
        "rouge=low",
        "safety_concern=safe",
        "subject_of_expertise=Mathematics",
    ]
    assert (routed.matrix[:, 0] == features.matrix[:, 0]).all()
    assert routed.instance_ids.tolist() == features.instance_ids.tolist()


def test_feature_summary_reports_unknown_share_and_predictor_use_per_tag():
    summary = FeatureSummary(
        dataset="prefs",
        instances=4,
        measures=["rouge"],
        tags=["safety_concern"],
        counts={"safety_concern=safe": 3, "safety_concern=unknown": 1, "rouge=low": 4},
    )
    tags = summary.to_dict()["tags"]
    assert tags == {
        "safety_concern": {"unknown_share": 0.25, "used_by_predictor": True, "reason": None}
    }


def test_features_json_reports_each_tags_unknown_share(workspace):
    from typer.testing import CliRunner

    from app.cli import cli
    from curation.store import Store

    store = Store.open(workspace)
    ds = store.create_dataset("prefs", "preference")
    store.insert_instances(
        ds["id"],
        [
            Instance(uid="p0", prompt="Design a medium-level sudoku puzzle", response_a="a",
                     response_b="b"),
            Instance(uid="p1", prompt="7731 0042 9918 5520", response_a="c d", response_b="e"),
        ],
    )  # fmt: skip
    store.close()
    result = CliRunner().invoke(cli, ["features", "prefs", "-w", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"dataset", "instances", "measures", "features"} <= set(report)
    assert set(report["tags"]) == {d.name for d in load_taxonomy()}
    for tag in report["tags"].values():
        assert 0.0 <= tag["unknown_share"] <= 1.0
        assert isinstance(tag["used_by_predictor"], bool)
    assert any(tag["unknown_share"] > 0 for tag in report["tags"].values())


@pytest.mark.realdata
def test_unsafe_calls_on_xstest_are_right_at_least_80_percent_of_the_time(tagger, shared_data):
    """The issue's target: the precision of safety_concern's unsafe call (moderate or high) on
    XSTest's 450 prompts, at whatever coverage it reaches (benchmarks/tags_bench.py)."""
    with (shared_data / "xstest" / "xstest_prompts.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels, _ = tagger.tag([r["prompt"] for r in rows])["safety_concern"]
    called = [r["label"] == "unsafe" for r, lb in zip(rows, labels, strict=True)
              if lb in ("moderate", "high")]  # fmt: skip
    assert len(called) >= 20
    assert sum(called) / len(called) >= 0.8
