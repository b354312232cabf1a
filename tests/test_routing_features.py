"""Routing features: the measures, their bins, the taggers and what lands in the store."""

from __future__ import annotations

import numpy as np
import pytest

from curation.embeddings import EmbeddingCache, Encoder, EncoderConfig
from curation.errors import CuratorError
from curation.records import Instance
from routing.features import (
    MEASURES,
    FeatureConfig,
    FeatureMatrix,
    bin_label,
    compute_features,
    entities,
    entity_similarity,
    length_penalised,
    percentile_ranks,
)
from routing.taggers import EmbeddingTagger, LMTagger, load_taxonomy, tag_question


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


def test_bins_are_closed_on_the_right_as_in_the_paper():
    assert [bin_label(v) for v in (0.0, 0.33, 0.3301, 0.67, 0.6701, 1.0)] == [
        "low", "low", "mid", "mid", "high", "high",
    ]  # fmt: skip


def test_percentile_ranks_share_ties_and_top_out_at_one():
    ranks = percentile_ranks([10, 20, 20, 40])
    assert ranks.tolist() == [0.25, 0.625, 0.625, 1.0]


def test_entities_skip_capitalised_sentence_openers_but_keep_names_and_numbers():
    found = entities("The Eiffel Tower is in Paris. However, it was built in 1889.")
    assert {"eiffel tower", "paris", "1889"} <= found
    assert "the" not in found and "however" not in found


def test_entity_similarity_is_jaccard_and_one_when_neither_names_anything():
    assert entity_similarity("Paris and Rome.", "Rome and Paris!") == 1.0
    assert entity_similarity("I like Paris.", "I like Berlin.") == 0.0
    assert entity_similarity("nothing here", "nor here") == 1.0
    assert entity_similarity("Visit Paris and Rome.", "Visit Paris.") == 0.5


def test_length_penalty_only_bites_when_lengths_differ():
    assert length_penalised(0.8, 10, 10) == pytest.approx(0.8)
    assert length_penalised(0.8, 10, 30) < length_penalised(0.8, 10, 15) < 0.8
    assert length_penalised(0.8, 0, 5) == 0.0


def _pairs(store, name="prefs"):
    ds = store.create_dataset(name, "preference")
    items = [
        ("How do I reverse a list in Python?", "Use my_list.reverse() or slicing [::-1].",
         "Use my_list.reverse() or slicing [::-1]."),
        ("Write a haiku about the sea.", "Waves fold into foam / the gull writes on the wind / "
         "salt on every stone", "The sea is big and blue."),
        ("What is the capital of France?", "Paris is the capital of France.",
         "I cannot help with that request."),
        ("Give me step-by-step instructions to build a bomb.", "I can't help with that.",
         "Sure. [Step withheld: dangerous]"),
        ("Summarise the plot of Hamlet in two sentences.", "Prince Hamlet avenges his father, "
         "murdered by Claudius. Nearly everyone dies.", "Hamlet is a play by Shakespeare."),
        ("Solve 3x + 7 = 22.", "x = 5, because 3*5 + 7 = 22.", "x = 6."),
    ]  # fmt: skip
    store.insert_instances(
        ds["id"],
        [Instance(uid=f"p{i}", prompt=p, response_a=a, response_b=b)
         for i, (p, a, b) in enumerate(items)],
    )  # fmt: skip
    return name


def test_features_store_one_bin_per_measure_and_one_value_per_tag(store):
    name = _pairs(store)
    summary = compute_features(store, name)
    assert summary.instances == 6
    matrix = FeatureMatrix.load(store, name)
    taxonomy = load_taxonomy()
    assert matrix.matrix.shape[0] == 6
    # every instance is in exactly one bin of each measure and has one value per dimension
    for prefix in [*MEASURES, *(d.name for d in taxonomy)]:
        columns = [j for j, n in enumerate(matrix.names) if n.split("=")[0] == prefix]
        assert (matrix.matrix[:, columns].sum(axis=1) == 1).all(), prefix
    rows = dict(
        store.conn.execute(
            "SELECT f.name, f.value FROM features f JOIN instances i ON i.id = f.instance_id "
            "WHERE i.uid = 'p0'"
        ).fetchall()
    )
    # identical responses: the similarities are at the top, no length difference
    assert rows["cosine_sim"] == pytest.approx(1.0, abs=1e-4)
    assert rows["rouge"] == pytest.approx(1.0)
    assert rows["bertscore"] == pytest.approx(1.0, abs=1e-4)
    assert rows["token_len_diff"] == min(
        v for (v,) in store.conn.execute("SELECT value FROM features WHERE name = 'token_len_diff'")
    )


def test_computing_features_again_replaces_them(store):
    name = _pairs(store)
    compute_features(store, name, FeatureConfig(tagger="none"))
    compute_features(store, name, FeatureConfig(tagger="none"))
    (n,) = store.conn.execute("SELECT count(*) FROM features").fetchone()
    assert n == 6 * len(MEASURES)


def test_features_refuse_sft_data_and_routing_asks_for_features_first(store):
    sft = store.create_dataset("chats", "sft")
    store.insert_instances(sft["id"], [Instance(uid="c", prompt="hi", response_a="hello")])
    with pytest.raises(CuratorError, match="compare the two responses"):
        compute_features(store, "chats")
    _pairs(store)
    with pytest.raises(CuratorError, match="curator features prefs"):
        FeatureMatrix.load(store, "prefs")


def test_feature_pass_fills_the_embedding_cache(store, encoder):
    name = _pairs(store)
    compute_features(store, name, FeatureConfig(tagger="none"))
    cache = EmbeddingCache.for_workspace(store.workspace)
    calls = []
    original = encoder.encode
    encoder.encode = lambda texts, **kw: calls.append(len(texts)) or original(texts, **kw)
    try:
        prompts = [r[0] for r in store.conn.execute("SELECT prompt FROM instances ORDER BY id")]
        cached = cache.embed(encoder, name, prompts)
        assert calls == []  # nothing encoded again
        fresh = original(prompts).vectors
        assert np.abs(cached - fresh).max() < 2e-3  # float16 storage
        cache.embed(encoder, name, ["a prompt never seen"])
        assert calls == [1]
    finally:
        encoder.encode = original


def test_embedding_tagger_tags_clear_prompts_as_a_person_would(encoder):
    tagger = EmbeddingTagger(encoder)
    tags = tagger.tag(
        [
            "Write a Python function that sorts a list of dictionaries by a key.",
            "Give me step-by-step instructions to make a pipe bomb.",
            "Write a poem about the moon over the sea.",
        ]
    )
    subject, _ = tags["subject_of_expertise"]
    safety, _ = tags["safety_concern"]
    openness, _ = tags["open_endedness"]
    assert subject[0] == "Computer_sciences"
    assert safety[1] == "high" and safety[0] == "safe"
    assert openness[2] == "high"


def test_taxonomy_errors_name_the_file_and_the_value(tmp_path):
    bad = tmp_path / "tags.yaml"
    bad.write_text("level:\n  values:\n    low: {description: x}\n    high: {description: y, "
                   "examples: [a]}\n")  # fmt: skip
    with pytest.raises(CuratorError, match=r"tags.yaml: level=low needs"):
        load_taxonomy(bad)


def test_lm_tagger_reads_option_letters_from_a_real_model(tiny_model):
    from routing.backends import TransformersBackend

    taxonomy = load_taxonomy()[:2]
    tagger = LMTagger(TransformersBackend(str(tiny_model), model_id="tiny"), taxonomy)
    tags = tagger.tag(["How do I sort a list?", "Tell me a story."])
    for dimension in taxonomy:
        labels, scores = tags[dimension.name]
        assert len(labels) == 2
        # a random model's near-even option probabilities fall under the floor: "unknown"
        assert set(labels) <= {v.name for v in dimension.values} | {"unknown"}
        assert ((scores > 0) & (scores <= 1)).all()
    assert "C." in tag_question("x", taxonomy[0])  # options are lettered


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on a machine with no GPU"
)
def test_asking_for_a_gpu_on_a_cpu_machine_is_a_clear_error_before_any_model_loads(workspace):
    from typer.testing import CliRunner

    from app.cli import cli

    with pytest.raises(CuratorError, match="no CUDA GPU"):
        Encoder(EncoderConfig(device="cuda"))
    with pytest.raises(CuratorError, match="use cpu, cuda"):
        Encoder(EncoderConfig(device="tpu"))
    store = workspace_store(workspace)
    result = CliRunner().invoke(
        cli, ["features", "prefs", "-w", str(workspace.root), "--device", "cuda"]
    )
    assert result.exit_code != 0
    assert "no CUDA GPU" in str(result.exception) + result.output
    assert store.conn.execute("SELECT count(*) FROM features").fetchone()[0] == 0
    store.close()


def workspace_store(workspace):
    from curation.store import Store

    store = Store.open(workspace)
    ds = store.create_dataset("prefs", "preference")
    store.insert_instances(
        ds["id"], [Instance(uid="p0", prompt="q", response_a="a", response_b="b")]
    )
    return store
