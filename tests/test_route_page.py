"""The Route page, driven headless through AppTest against a real routed workspace.

The workspace (a small demo, its features, a sweep and a fitted predictor) is built once through
the routing API and copied for each test, so every test starts from the same stored state.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.state import _USER_KEY
from curation.demo import build_demo
from curation.records import Instance
from curation.store import InstanceFilter, Store
from curation.users import add_user
from curation.workspace import Workspace
from routing.features import FeatureConfig, FeatureMatrix, compute_features
from routing.ppm import PPMConfig, load_ppm, train_ppm
from routing.router import list_plans
from routing.sweeps import SweepConfig, list_sweeps, run_sweep, sweep_info

pytestmark = pytest.mark.slow  # features and a sweep on a 120-pair demo: about a minute

APP = Path(__file__).resolve().parents[1] / "app"
HOME = str(APP / "Home.py")
PAGE = str(APP / "views" / "route.py")
PAIRS = 120
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def routed_workspace(tmp_path_factory) -> Path:
    ws = Workspace(tmp_path_factory.mktemp("route") / "ws").ensure()
    with Store.open(ws) as store:
        build_demo(store, n_pairs=PAIRS)
        compute_features(store, "demo-prefs", FeatureConfig())
        sweep_id = run_sweep(store, "demo-prefs", "demo-eval", SweepConfig(runs=30))
        train_ppm(store, sweep_id, PPMConfig(kind="lightgbm"))
    return ws.root


@pytest.fixture
def ws(routed_workspace, tmp_path, monkeypatch, cheap_password_hashing) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(routed_workspace, root)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(root))
    return Workspace(root)


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def route_page() -> AppTest:
    """The page as the local curator (no accounts yet) reaches it from the menu."""
    at = AppTest.from_file(HOME, default_timeout=120).run()
    at.switch_page("views/route.py").run()
    no_errors(at)
    return at


def signed_in(name: str, script: str = PAGE) -> AppTest:
    at = AppTest.from_file(script, default_timeout=120)
    at.session_state[_USER_KEY] = name
    return at.run()


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def frame_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The one table on the page with these columns."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def test_the_page_shows_the_predictors_fit_and_the_routed_curve(ws):
    at = route_page()
    with Store.open(ws) as store:
        predictor = load_ppm(store, dataset="demo-prefs")
        n_features = len(FeatureMatrix.load(store, "demo-prefs").names)
    shown = metrics(at)
    cv = predictor.metrics["cv"]
    assert shown["CV R²"] == f"{cv['r2']:.3f}"
    assert shown["CV Spearman"] == f"{cv['spearman']:.3f}"
    assert shown["Sweep runs"] == "30"
    assert any(f"{n_features} binary features over {PAIRS} pairs" in m.value for m in at.markdown)
    baselines = frame_with(at, "kind", "r2", "spearman")
    assert sorted(baselines["kind"]) == ["lightgbm", "linear", "quadratic"]
    # learning curve, importances, the budget curve and the features sent to people
    assert len(at.get("plotly_chart")) == 4
    assert shown["To people"] == str(round(0.25 * PAIRS))

    at.slider(key="route_budget").set_value(40).run()
    no_errors(at)
    assert metrics(at)["To people"] == str(round(0.40 * PAIRS))
    assert metrics(at)["To the LM"] == str(PAIRS - round(0.40 * PAIRS))


def test_proving_routing_shows_the_verdict_the_paired_gains_and_every_method_and_keeps_them(ws):
    """Prove routing shows the headroom verdict, the paired-delta chart and the methods' table,
    and a rerun without pressing again still shows them."""
    at = route_page()
    charts = len(at.get("plotly_chart"))
    assert not any("delta vs random" in d.value.columns for d in at.dataframe)
    at.button(key="route_proof_run").click().run()
    no_errors(at)
    for _ in range(2):
        verdicts = [
            e.value
            for e in (*at.success, *at.warning)
            if e.value.startswith(("headroom:", "no headroom:"))
        ]
        assert len(verdicts) == 1
        assert len(at.get("plotly_chart")) == charts + 1
        table = frame_with(at, "method", "delta vs random", "SE")
        assert {"routed", "random", "oracle", "all-human", "all-lm"} <= set(table["method"])
        assert "scores" not in table.columns and "headroom" not in set(table["method"])
        assert (table["seeds"] == 10).all()
        assert any(c.value.startswith("Scored on ") for c in at.caption)
        at.run()
        no_errors(at)


def test_feature_shares_count_the_pairs_the_plan_sends_to_people(ws):
    at = route_page()
    at.slider(key="route_budget").set_value(30).run()
    no_errors(at)
    shares = frame_with(at, "feature", "instances", "human", "share")
    assert (shares["human"] <= shares["instances"]).all()
    having = shares[shares["instances"] > 0]
    assert (having["share"] - having["human"] / having["instances"]).abs().max() < 1e-9
    assert shares["share"].is_monotonic_decreasing
    # every pair has exactly one third of each measure: its bins split the pairs sent to people
    cosine = shares[shares["feature"].str.startswith("cosine_sim=")]
    assert cosine["instances"].sum() == PAIRS
    assert cosine["human"].sum() == round(0.30 * PAIRS)


def test_create_plan_stores_the_plan_at_the_chosen_budget(ws):
    at = route_page()
    at.slider(key="route_budget").set_value(25).run()
    at.button(key="route_create_plan").click().run()
    no_errors(at)
    assert any("Saved route plan" in s.value for s in at.success)
    with Store.open(ws) as store:
        plans = list_plans(store, "demo-prefs")
    assert len(plans) == 1
    assert plans[0]["human"] == plans[0]["budget"] == round(0.25 * PAIRS)
    assert plans[0]["method"] == "topk"
    assert list(frame_with(at, "method", "predicted_score")["id"]) == [plans[0]["id"]]


def test_a_saved_plan_goes_to_the_chosen_annotators_queue(ws):
    with Store.open(ws) as store:
        add_user(store, "boss", "curator", PASSWORD)
        add_user(store, "ana", "annotator", PASSWORD)
    at = signed_in("boss")
    no_errors(at)
    at.button(key="route_create_plan").click().run()
    no_errors(at)
    at.multiselect(key="route_annotators").set_value(["ana"])
    at.button(key="route_send_submit").click().run()
    no_errors(at)
    assert any("queued" in s.value for s in at.success)
    with Store.open(ws) as store:
        [plan] = list_plans(store, "demo-prefs")
        rows = store.conn.execute(
            "SELECT a.origin, a.plan_id, u.name, count(*) FROM assignments a "
            "JOIN users u ON u.id = a.user_id GROUP BY 1, 2, 3"
        ).fetchall()
    assert [tuple(r) for r in rows] == [("route_plan", plan["id"], "ana", plan["human"])]


def test_running_a_sweep_from_the_page_fits_and_shows_a_new_predictor(ws):
    """The form's defaults (grouped sampler, crossfit, the linear predictor) need no eval set."""
    at = route_page()
    assert at.selectbox(key="route_sampler").value == "grouped"
    assert at.selectbox(key="route_target").value == "crossfit"
    assert at.selectbox(key="route_kind").value == "linear"
    at.number_input(key="route_runs").set_value(6)
    at.button(key="route_run_sweep").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        sweeps = list_sweeps(store, "demo-prefs")
        newest = load_ppm(store, dataset="demo-prefs")
        config = sweep_info(store, sweeps[0]["id"])["config"]
    assert [s["runs"] for s in sweeps] == [6, 30]
    assert sweeps[0]["eval_dataset"] is None  # crossfit reads no eval set
    assert (config["target"], config["sampler"]) == ("crossfit", "grouped")
    assert newest.kind == "linear" and newest.provenance["sweep_id"] == sweeps[0]["id"]
    assert any(f"predictor {newest.id} (linear)" in s.value for s in at.success)
    assert metrics(at)["Sweep runs"] == "6"
    assert any(f"Predictor {newest.id} (linear)" in c.value for c in at.caption)


def test_a_sweep_run_in_the_background_is_queued_as_a_job(ws, monkeypatch):
    from training import jobs

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    at = route_page()
    at.number_input(key="route_runs").set_value(7)
    at.selectbox(key="route_scorer").set_value("reward_model")
    at.button(key="route_run_sweep").click().run()
    assert any("In the background" in e.value for e in at.error)  # a model a run: not here
    at.checkbox(key="route_sweep_background").check()
    at.button(key="route_run_sweep").click().run()
    no_errors(at)
    assert any("scored on an eval set" in e.value for e in at.error)  # not on crossfit
    at.selectbox(key="route_target").set_value("eval")
    at.button(key="route_run_sweep").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        queued = jobs.list_jobs(store)
        assert [s["runs"] for s in list_sweeps(store, "demo-prefs")] == [30]  # none ran here
    assert [(j.kind, j.status) for j in queued] == [("sweep", "queued")]
    assert queued[0].spec["config"]["runs"] == 7
    assert queued[0].spec["config"]["scorer"] == "reward_model"
    assert queued[0].spec["dataset"] == "demo-prefs" and queued[0].spec["eval_dataset"]
    assert any("a 7-run sweep as job" in s.value for s in at.success)


def test_features_are_computed_from_the_page_and_errors_are_shown(ws):
    with Store.open(ws) as store:
        dataset = store.create_dataset("tiny", "preference")
        store.insert_instances(
            dataset["id"],
            [
                Instance(
                    uid=f"t{i}",
                    prompt=f"How do I water plant number {i}?",
                    response_a=f"Water plant {i} twice a week.",
                    response_b="Once a month is plenty for most plants.",
                )
                for i in range(6)
            ],
        )
    at = route_page()
    at.selectbox(key="route_dataset").set_value("tiny").run()
    no_errors(at)
    assert any("'tiny' has no features yet" in i.value for i in at.info)
    assert any("No performance predictor for 'tiny'" in i.value for i in at.info)
    at.selectbox(key="route_tagger").set_value("none")
    at.button(key="route_compute_features").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        matrix = FeatureMatrix.load(store, "tiny")
    assert matrix.matrix.shape[0] == 6 and not any(
        n.startswith("expertise_level") for n in matrix.names
    )
    assert any(
        f"tiny: {len(matrix.names)} binary features over 6 pairs" in s.value for s in at.success
    )
    assert any(f"{len(matrix.names)} binary features over 6 pairs" in m.value for m in at.markdown)
    # no labels on these pairs: the sweep cannot start, and the page says why before any wait
    assert at.button(key="route_run_sweep").disabled
    assert any("A sweep cannot run yet" in w.value and "no instance" in w.value for w in at.warning)


def test_features_for_a_large_dataset_default_to_the_background_with_an_estimate(ws):
    """Thousands of pairs take minutes: the page says how long, and offers the background
    (a job the Jobs page follows) by default."""
    at = route_page()
    no_errors(at)
    with Store.open(ws) as store:
        n = store.count_instances(InstanceFilter(dataset=at.selectbox(key="route_dataset").value))
    assert any(f"{n:,} pairs: about" in c.value for c in at.caption)
    assert at.checkbox(key="route_features_background").value is (n / 17.5 / 60 > 2)
