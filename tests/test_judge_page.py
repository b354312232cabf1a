"""The Judges page: calibrate a judge on the workspace's labels and escalate the rest to people."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.demo import build_demo
from curation.store import Store
from curation.users import add_user
from curation.workspace import Workspace

HOME = str(Path(__file__).resolve().parents[1] / "app" / "Home.py")


@pytest.fixture
def demo_ws(tmp_path, monkeypatch, cheap_password_hashing) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as store:
        build_demo(store, n_pairs=300)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


def _judge_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    at.switch_page("views/judge.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_calibrates_the_demo_judge_and_plots_coverage_against_agreement(demo_ws):
    at = _judge_page()
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Threshold", "Coverage", "Agreement on kept", "Guaranteed"}
    assert at.get("plotly_chart")
    strict = metrics["Coverage"]
    at.number_input(key="judges_alpha").set_value(0.05).run()
    assert not at.exception
    # a stricter agreement target can only keep fewer items
    looser, stricter = float(strict.rstrip("%")), float(at.metric[1].value.rstrip("%"))
    assert stricter <= looser


def test_escalated_items_go_to_the_chosen_annotators(demo_ws):
    with Store.open(demo_ws) as store:
        add_user(store, "boss", "curator", "a long enough password")
        add_user(store, "ana", "annotator", "a long enough password")
    at = AppTest.from_file(HOME, default_timeout=60)
    at.run()
    at.text_input(key="login_name").set_value("boss")
    at.text_input(key="login_password").set_value("a long enough password")
    at.button(key="login_submit").click().run()
    at.switch_page("views/judge.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.multiselect(key="escalate_annotators").set_value(["ana"])
    at.button(key="escalate_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and "queued" in at.success[0].value
    with Store.open(demo_ws) as store:
        origins = store.conn.execute("SELECT DISTINCT origin FROM assignments").fetchall()
        queued = store.conn.execute("SELECT count(*) FROM assignments").fetchone()[0]
    assert [r[0] for r in origins] == ["escalation"] and queued > 0


def test_running_a_judge_from_the_page_stores_its_labels(demo_ws, tiny_model):
    """The form runs the real transformers backend (a tiny local model) and the labels land."""
    at = _judge_page()
    inputs = {w.label: w for w in at.text_input}
    inputs["Model"].set_value(str(tiny_model))
    inputs["Label name"].set_value("tiny-judge")
    [n for n in at.number_input if n.label == "Pairs to judge"][0].set_value(4)
    at.button(key="run_judge_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("tiny-judge: judged 4 pairs" in s.value for s in at.success)
    with Store.open(demo_ws) as store:
        n = store.conn.execute(
            "SELECT count(*) FROM annotations WHERE annotator = 'tiny-judge' AND annotator_kind = 'lm'"
        ).fetchone()[0]
    assert n == 4


def test_a_judge_run_in_the_background_is_queued_as_a_job_with_its_settings(
    demo_ws, tiny_model, monkeypatch
):
    """Ticked "In the background": nothing is judged in the page; a judge job with the form's
    settings is queued for the worker."""
    from training import jobs

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    at = _judge_page()
    inputs = {w.label: w for w in at.text_input}
    inputs["Model"].set_value(str(tiny_model))
    inputs["Label name"].set_value("bg-judge")
    [n for n in at.number_input if n.label == "Personas"][0].set_value(2)
    at.checkbox(key="run_judge_background").check()
    at.button(key="run_judge_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("as job 1" in s.value for s in at.success)
    with Store.open(demo_ws) as store:
        job = jobs.get_job(store, 1)
        labelled = store.conn.execute(
            "SELECT count(*) FROM annotations WHERE annotator = 'bg-judge'"
        ).fetchone()[0]
    assert (job.kind, job.status, labelled) == ("judge", "queued", 0)
    assert job.spec["model"] == str(tiny_model) and job.spec["personas"] == 2
    assert job.spec["dataset"] == "demo-prefs" and job.spec["limit"] == 20
