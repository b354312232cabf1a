"""Search by meaning and "More like this": real MiniLM vectors of real prompts, no mocks.

A paraphrase shares few words with the prompt it means, so the word search cannot find it; the
prompts' sentence vectors must.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app import no_errors, open_page, table

from curation.embeddings import EmbeddingCache, Encoder
from curation.records import Instance
from curation.store import Store
from curation.workspace import Workspace
from routing.semantic_search import PromptIndex

PROMPTS = {
    "bread": "How do I bake a sourdough loaf at home?",
    "aurora": "What causes the northern lights to appear in the sky?",
    "recursion": "Explain recursion in programming with an example.",
    "bike": "How can I fix a flat tyre on my bicycle?",
    "tax": "When is the deadline for filing income tax returns?",
    "dog": "How often should I walk my puppy each day?",
    "bread2": "Give me a recipe for a rye loaf with a starter.",
}
PARAPHRASE = "making homemade bread with natural leaven"  # no word of the bread prompt but "bread"


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder()


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as store:
        dataset = store.create_dataset("topics", "preference")
        store.insert_instances(
            dataset["id"],
            [
                Instance(uid=uid, prompt=prompt, response_a="a", response_b="b")
                for uid, prompt in PROMPTS.items()
            ],
        )
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


def test_a_paraphrase_finds_its_prompt_first_and_the_vectors_are_cached(ws, encoder):
    with Store.open(ws) as store:
        index = PromptIndex.build(store, "topics", encoder=encoder)
        uids = dict(store.conn.execute("SELECT id, uid FROM instances"))
        hits = index.search(PARAPHRASE, k=3)
        assert [uids[i] for i, _ in hits][:2] == ["bread", "bread2"]
        assert hits[0][1] > hits[2][1] + 0.1  # clearly above the first unrelated prompt
        assert not store.page_instances(_words(PARAPHRASE))  # the word search finds nothing
        cached = EmbeddingCache.for_workspace(ws).embed(encoder, "topics", list(PROMPTS.values()))
        assert cached.shape == (len(PROMPTS), encoder.dim)


def test_more_like_this_lists_the_nearest_other_prompts(ws, encoder):
    with Store.open(ws) as store:
        index = PromptIndex.build(store, "topics", encoder=encoder)
        uids = dict(store.conn.execute("SELECT id, uid FROM instances"))
        bread = next(i for i, u in uids.items() if u == "bread")
        hits = index.more_like(bread, k=2)
        assert uids[hits[0][0]] == "bread2" and bread not in {i for i, _ in hits}


def test_explore_searches_by_meaning_and_shows_more_like_this(ws):
    at = open_page("views/explore.py")
    at.toggle(key="explore_by_meaning").set_value(True)
    at.text_input(key="explore_search").set_value(PARAPHRASE).run()
    no_errors(at)
    assert table(at)[:2] == ["bread", "bread2"]
    assert list(at.dataframe(key="explore_table").value.columns[:2]) == ["id", "similarity"]
    at.toggle(key="explore_by_meaning").set_value(False)
    at.text_input(key="explore_search").set_value("").run()
    at.session_state["explore_table"] = {"selection": {"rows": [5], "columns": [], "cells": []}}
    at.run()  # the dog prompt
    at.button(key="explore_more_like").click().run()
    no_errors(at)
    assert "dog" not in table(at) and len(table(at)) == len(PROMPTS) - 1


def _words(query: str):
    from curation.store import InstanceFilter

    return InstanceFilter(dataset="topics", search=query)
