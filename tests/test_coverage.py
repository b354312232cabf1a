"""Coverage maps (curation.coverage): k by silhouette, each source's share of each cluster, the
overlap between sources, cluster names, and the HTML map; MiniLM on a few prompts, UMAP on the
real safety sets."""

from __future__ import annotations

import numpy as np
import pytest

from curation.coverage import (
    CoverageConfig,
    coverage_map,
    coverage_prompts,
    ctfidf_terms,
    write_html,
)
from curation.decontam import PromptSet

TOPICS = {
    "baking": "flour oven dough yeast butter sugar bake loaf crust knead",
    "coding": "python function loop variable compile debug array class import syntax",
    "space": "planet orbit telescope galaxy rocket comet nebula gravity moon astronaut",
}


def blobs(
    sources: dict[str, list[int]], per_topic: int = 30, seed: int = 0
) -> tuple[list, np.ndarray]:
    """Prompt sets whose texts and vectors come from the chosen topics (well-separated blobs)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(TOPICS), 32)) * 10
    words = list(TOPICS.values())
    sets, vectors = [], []
    for name, topics in sources.items():
        texts = []
        for t in topics:
            for i in range(per_topic):
                picked = rng.choice(words[t].split(), size=5, replace=False)
                texts.append(f"please explain {' '.join(picked)} number {i}")
                vectors.append(centres[t] + rng.normal(size=32))
        sets.append(PromptSet(name, [f"{name}-{i}" for i in range(len(texts))], texts))
    return sets, np.asarray(vectors)


FAST = CoverageConfig(reducer="pca", k_max=6, per_source=None)


def test_k_is_chosen_by_silhouette_and_sources_on_separate_topics_are_orthogonal():
    sets, vectors = blobs({"bake-bench": [0], "code-bench": [1], "space-bench": [2]})
    cmap = coverage_map(sets, FAST, vectors=vectors)
    assert cmap.k == 3
    assert cmap.silhouette == max(cmap.silhouettes.values()) > 0.5
    assert set(cmap.silhouettes) == {2, 3, 4, 5, 6}
    shares = cmap.cluster_shares()
    assert np.allclose(shares.sum(axis=1), 1.0)
    assert sorted(shares.max(axis=1).round(3)) == [1.0, 1.0, 1.0]  # each cluster is one source
    overlap = cmap.overlap().to_numpy()
    assert np.allclose(np.diag(overlap), 1.0)
    assert overlap[~np.eye(3, dtype=bool)].max() == 0.0


def test_sources_drawn_from_the_same_topics_overlap():
    sets, vectors = blobs({"a": [0, 1, 2], "b": [0, 1, 2]})
    cmap = coverage_map(sets, FAST, vectors=vectors)
    assert cmap.overlap().loc["a", "b"] > 0.9
    assert (cmap.cluster_shares()["a"].between(0.3, 0.7)).all()


def test_clusters_are_named_by_their_distinctive_terms():
    """c-TF-IDF: words every cluster shares ("please", "explain") name none of them."""
    sets, vectors = blobs({"bake-bench": [0], "code-bench": [1], "space-bench": [2]})
    cmap = coverage_map(sets, FAST, vectors=vectors)
    for c in range(cmap.k):
        source = cmap.cluster_shares().loc[c].idxmax()
        topic = TOPICS[
            {"bake-bench": "baking", "code-bench": "coding", "space-bench": "space"}[source]
        ]
        assert cmap.terms[c] and set(cmap.terms[c]) <= set(topic.split())
        assert "please" not in cmap.names[c] and "explain" not in cmap.names[c]
    assert ctfidf_terms(["", ""], [0, 1], 2, 3) == {0: [], 1: []}


def test_a_fixed_k_skips_the_search():
    sets, vectors = blobs({"a": [0, 1, 2]})
    cmap = coverage_map(sets, CoverageConfig(reducer="pca", k=4, per_source=None), vectors=vectors)
    assert cmap.k == 4 and list(cmap.silhouettes) == [4]


def test_the_html_map_escapes_prompt_text(tmp_path):
    """Prompts are data, not markup: a <script> in a prompt shows as text in the page."""
    sets, vectors = blobs({"a": [0], "b": [1]})
    sets[0].texts[0] = "<script>alert('x')</script> please explain flour"
    sets[1].name = "<b>bold</b>-bench"
    cmap = coverage_map(sets, FAST, vectors=vectors)
    page = write_html(cmap, tmp_path / "map.html").read_text()
    assert "<script>alert(" not in page and "&lt;script&gt;alert(" in page
    assert "<b>bold</b>" not in page
    assert "Plotly.newPlot" in page  # plotly.js inlined: the page opens offline


def test_datasets_can_be_split_into_sources_by_subset(store):
    from curation.demo import DemoConfig, build_demo

    build_demo(store, n_pairs=20, config=DemoConfig(sft_per_source=5, safety_per_subset=6))
    sets = coverage_prompts(store, ["demo-safety"], group_by="subset")
    assert {s.name: len(s) for s in sets} == {
        "demo-safety/adversarial_benign": 6,
        "demo-safety/adversarial_harmful": 6,
        "demo-safety/vanilla_benign": 6,
        "demo-safety/vanilla_harmful": 6,
    }


def test_minilm_embeddings_separate_topics_and_are_cached(workspace):
    """The real encoder on 45 short prompts: clusters follow the topics; a second map reads the
    vectors from the workspace cache."""
    from curation.embeddings import EmbeddingCache, Encoder, EncoderConfig

    texts = {
        "baking": [
            f"How long should I {v} bread dough with {w}?"
            for v in ("knead", "proof", "bake")
            for w in ("rye flour", "yeast", "butter", "sourdough starter", "whole wheat")
        ],  # fmt: skip
        "coding": [
            f"Why does my Python {v} raise an error when {w}?"
            for v in ("function", "loop", "class")
            for w in (
                "I import a module",
                "the list is empty",
                "I call it twice",
                "a key is missing",
                "I use recursion",
            )
        ],  # fmt: skip
        "space": [
            f"How does a {v} stay near {w}?"
            for v in ("planet", "comet", "satellite")
            for w in ("its star", "Jupiter", "the Moon", "a black hole", "the Sun")
        ],  # fmt: skip
    }
    sets = [PromptSet(k, [str(i) for i in range(len(v))], v) for k, v in texts.items()]
    cmap = coverage_map(
        sets, CoverageConfig(reducer="pca", k=3, per_source=None), workspace=workspace
    )
    purity = cmap.cluster_shares().max(axis=1).mean()
    assert purity > 0.8
    cached = EmbeddingCache.for_workspace(workspace)
    assert cached._path(Encoder(EncoderConfig(max_length=128)), "coverage-prompts").is_file()


@pytest.mark.slow
@pytest.mark.realdata
def test_umap_map_of_the_real_safety_sets_through_the_cli(shared_data, workspace, tmp_path):
    """HarmBench, XSTest and WildJailbreak's eval prompts on one UMAP map (30 each): a valid
    clustering, shares that add up, clusters named by the embedding tagger's tags, and the HTML
    the command writes."""
    import json

    from typer.testing import CliRunner

    from app.cli import cli as app

    files = [
        shared_data / "harmbench" / "harmbench_behaviors_text_all.csv",
        shared_data / "xstest" / "xstest_prompts.csv",
        shared_data / "wildjailbreak-eval" / "eval.tsv",
    ]
    out = tmp_path / "safety.html"
    result = CliRunner().invoke(
        app,
        ["coverage", *map(str, files), "--out", str(out), "--per-source", "30", "--k-max", "6",
         "--naming", "tags", "--workspace", str(workspace.root), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sources"] == {"harmbench": 30, "xstest": 30, "wildjailbreak-eval": 30}
    assert 2 <= summary["k"] <= 6 and -1.0 <= summary["silhouette"] <= 1.0
    for shares in summary["cluster_shares"].values():
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
    assert all(" / " in c["name"] for c in summary["clusters"])  # subject / safety concern
    assert out.stat().st_size > 1_000_000  # plotly.js is inlined
