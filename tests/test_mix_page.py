"""The Mix page, driven headless through AppTest on a small demo workspace: the live composition,
the dedup and decontamination check, building versions, and comparing them."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.demo import DemoConfig, build_demo
from curation.mixtures import list_mixtures, resolve_mixture
from curation.store import Store
from curation.workspace import Workspace

APP = Path(__file__).resolve().parents[1] / "app"
HOME = str(APP / "Home.py")
PAGE = str(APP / "views" / "mix.py")


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Workspace:
    workspace = Workspace(tmp_path / "ws").ensure()
    with Store.open(workspace) as store:
        build_demo(store, n_pairs=40, config=DemoConfig(sft_per_source=30, safety_per_subset=12))
    monkeypatch.setenv("CURATOR_WORKSPACE", str(workspace.root))
    return workspace


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def mix_page() -> AppTest:
    """The page as the local curator (no accounts yet) reaches it from the menu."""
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("views/mix.py").run()
    no_errors(at)
    return at


def expected(at: AppTest):
    return next(d.value for d in at.dataframe if "expected" in d.value.columns)


def test_the_composition_follows_the_fraction_sliders(ws):
    at = mix_page()
    with Store.open(ws) as store:
        pool = next(d["instances"] for d in store.list_datasets() if d["name"] == "demo-sft")
    assert expected(at)["expected"].tolist() == [pool]
    at.slider(key="mix_f_demo-sft").set_value(0.5).run()
    no_errors(at)
    assert expected(at)["expected"].tolist() == [round(pool * 0.5)]
    assert len(at.get("plotly_chart")) == 1  # the sunburst


def test_a_safety_mix_shows_the_four_types_in_the_chosen_ratios(ws):
    at = mix_page()
    at.radio(key="mix_kind").set_value("safety").run()
    at.slider(key="mix_safety_share").set_value(0.2).run()
    at.slider(key="mix_harmful").set_value(1.0).run()
    no_errors(at)
    table = expected(at)
    types = dict(zip(table["type"], table["expected"], strict=True))
    general = int(table.loc[table["type"] == "", "expected"].sum())
    safety = round(general * 0.2 / 0.8)
    assert types["vanilla_benign"] == types["adversarial_benign"] == 0
    assert types["vanilla_harmful"] + types["adversarial_harmful"] == safety


def test_the_check_shows_eval_overlap_before_anything_is_built(ws):
    at = mix_page()
    at.multiselect(key="mix_against").set_value(["demo-eval"]).run()
    at.button(key="mix_check").click().run()
    no_errors(at)
    overlap = next(d.value for d in at.dataframe if "overlapping" in d.value.columns)
    assert overlap.loc[0, "source"] == "demo-sft" and overlap.loc[0, "flagged"]
    assert any("Flagged" in w.value for w in at.warning)
    with Store.open(ws) as store:
        assert list_mixtures(store) == []


def test_build_stores_a_version_and_compare_shows_what_changed(ws):
    at = mix_page()
    at.text_input(key="mix_name").set_value("chat").run()
    at.button(key="mix_build").click().run()
    no_errors(at)
    assert any("Built chat@1" in s.value for s in at.success)
    at.slider(key="mix_f_demo-sft").set_value(0.5).run()
    at.button(key="mix_build").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        first, second = resolve_mixture(store, "chat@1"), resolve_mixture(store, "chat@2")
    assert second["manifest"]["rows"] < first["manifest"]["rows"]
    versions = next(d.value for d in at.dataframe if "content_hash" in d.value.columns)
    assert versions["ref"].tolist() == ["chat@2", "chat@1"]
    composition = next(d.value for d in at.dataframe if "change" in d.value.columns)
    assert composition.loc[0, "change"] == second["manifest"]["rows"] - first["manifest"]["rows"]


def test_build_in_the_background_queues_a_mix_job_with_the_composed_spec(ws, monkeypatch):
    from curation.mixtures import parse_spec
    from training import jobs

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    at = mix_page()
    at.text_input(key="mix_name").set_value("later").run()
    at.button(key="mix_build_background").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        (job,) = jobs.list_jobs(store)
        assert store.conn.execute("SELECT count(*) FROM mixtures").fetchone()[0] == 0
    assert (job.kind, job.status) == ("mix", "queued")
    assert parse_spec(job.spec["spec"]).name == "later"
    assert any(f"as job {job.id}" in s.value for s in at.success)


def test_the_page_renders_on_an_empty_workspace(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "empty").ensure()
    Store.open(workspace).close()
    monkeypatch.setenv("CURATOR_WORKSPACE", str(workspace.root))
    at = mix_page()
    assert any("No datasets a sft mixture can draw from" in i.value for i in at.info)
    assert any("No mixture built yet" in i.value for i in at.info)


@pytest.mark.slow  # loads MiniLM: about 10 s on a busy 2-core machine
def test_the_coverage_tab_maps_each_sources_prompts(ws):
    """MiniLM on 60 demo prompts (15 per demo-sft source), PCA map: the scatter, the share
    heatmap and a cluster table whose sizes add up to the prompts mapped."""
    at = mix_page()
    at.multiselect(key="mix_cov_datasets").set_value(["demo-sft"]).run()
    at.selectbox(key="mix_cov_group").set_value("source").run()
    at.number_input(key="mix_cov_n").set_value(15).run()
    at.selectbox(key="mix_cov_reducer").set_value("pca").run()
    at.button(key="mix_cov_go").click().run()
    no_errors(at)
    clusters = next(d.value for d in at.dataframe if "largest_source" in d.value.columns)
    assert clusters["prompts"].sum() == 60
    assert clusters["largest_source"].str.startswith("demo-sft/").all()
    assert len(at.get("plotly_chart")) >= 3  # composition, coverage scatter and heatmap
