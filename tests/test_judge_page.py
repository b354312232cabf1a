"""The Judges page: calibrate a judge on the workspace's labels and escalate the rest to people."""

from __future__ import annotations

import shutil
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


def _in_workspace(model: Path, ws: Workspace) -> str:
    """The model copied into the workspace's models/ folder, where the page may load it from;
    its path as a curator types it (relative to the workspace)."""
    shutil.copytree(model, ws.root / "models" / model.name, dirs_exist_ok=True)
    return f"models/{model.name}"


def _judge_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    at.switch_page("views/judge.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_page_calibrates_the_demo_judge_and_plots_coverage_against_agreement(demo_ws):
    """The demo carries gold on its pairs, so by default the judge is held to gold (routing's
    rule), and the page says so; asked to, it calibrates against the people instead."""
    at = _judge_page()
    assert any("against gold labels" in c.value for c in at.caption)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"Threshold", "Coverage", "Agreement on kept", "Guaranteed"}
    assert at.get("plotly_chart")
    strict = metrics["Coverage"]
    at.number_input(key="judges_alpha").set_value(0.05).run()
    assert not at.exception
    # a stricter agreement target can only keep fewer items
    looser, stricter = float(strict.rstrip("%")), float(at.metric[1].value.rstrip("%"))
    assert stricter <= looser
    at.selectbox(key="judges_reference").select("human").run()
    assert not at.exception
    assert any("against the human majority" in c.value for c in at.caption)


def test_a_judge_that_cannot_be_certified_says_why_and_figures_share_one_precision(demo_ws):
    at = _judge_page()
    at.number_input(key="judges_alpha").set_value(0.01).run()
    assert at.metric[0].value == "abstains"
    assert any("No threshold passes the test" in w.value for w in at.warning)
    at.number_input(key="judges_alpha").set_value(0.3).run()
    threshold, _, kept, guaranteed = (m.value for m in at.metric)
    assert len(threshold.split(".")[1]) == len(kept.split(".")[1]) == 3
    assert len(guaranteed.split(".")[1]) == 3


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
    # every escalated item at once: asked first, nothing queued until confirmed
    assert any("Tick the box to queue" in w.value for w in at.warning)
    with Store.open(demo_ws) as store:
        assert store.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] == 0
    at.checkbox(key="escalate_confirm").check()
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
    inputs["Model"].set_value(_in_workspace(tiny_model, demo_ws))
    inputs["Label name"].set_value("tiny-judge")
    [n for n in at.number_input if n.label == "Pairs to judge"][0].set_value(4)
    at.button(key="run_judge_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("tiny-judge: judged 4 pairs" in s.value for s in at.success)
    assert at.selectbox(key="judges_judge").value == "tiny-judge"  # the new judge is shown
    # four labels: the domain table compares only those, not the domains' totals
    table = at.dataframe[-1].value
    assert list(table.columns) == ["domain", "compared", "with a human majority", "agreement"]
    assert table["compared"].sum() <= 4 < table["with a human majority"].sum()
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
    inputs["Model"].set_value(_in_workspace(tiny_model, demo_ws))
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
    assert job.spec["model"] == str((demo_ws.root / "models" / tiny_model.name).resolve())
    assert job.spec["personas"] == 2
    assert job.spec["dataset"] == "demo-prefs" and job.spec["limit"] == 20


def test_the_cli_escalates_the_instances_below_the_threshold_to_annotators(demo_ws, tmp_path):
    """`curator calibrate DATASET --escalate-to` queues what the Judge page's button would:
    exactly the instances below the calibrated threshold; a second run adds nothing. (The demo
    judge is held to gold; at alpha 0.25 it keeps its confident verdicts, not its ties.)"""
    import json

    from typer.testing import CliRunner

    from app.cli import cli
    from routing.selective import escalated_instance_ids

    with Store.open(demo_ws) as store:
        add_user(store, "ana", "annotator", "a long enough password")
        add_user(store, "bo", "annotator", "a long enough password")
    args = ["calibrate", "demo-prefs", "--alpha", "0.25", "--json"]
    first = CliRunner().invoke(cli, [*args, "--escalate-to", "ana,bo", "--overlap", "2"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["reference"] == "gold" and report["certified"]
    with Store.open(demo_ws) as store:
        expected = escalated_instance_ids(store, "demo-prefs", report["judge"], report["threshold"])
        queued = store.conn.execute(
            "SELECT instance_id, count(*) FROM assignments WHERE origin = 'escalation' "
            "GROUP BY instance_id ORDER BY instance_id"
        ).fetchall()
    assert 0 < len(expected) < 300
    assert [tuple(r) for r in queued] == [(i, 2) for i in expected]  # each, to both people
    assert report["escalation"]["created"] == 2 * len(expected)
    again = json.loads(CliRunner().invoke(cli, [*args, "--escalate-to", "ana"]).output)
    assert again["escalation"]["created"] == 0
    calibration = tmp_path / "judge.jsonl"
    calibration.write_text('{"human": "A", "probs": [0.9, 0.1]}\n')
    refused = CliRunner().invoke(cli, ["calibrate", str(calibration), "--escalate-to", "ana"])
    assert refused.exit_code == 1 and "name one dataset" in str(refused.exception)


def test_a_cascade_escalates_only_what_no_judge_keeps(demo_ws):
    """`unkept_instance_ids` intersects the stages: a stage with a higher threshold keeps less,
    so the cascade's unkept set is the lower threshold's; a judge that keeps nothing changes
    nothing."""
    import dataclasses

    from routing.selective import (
        calibrate,
        calibration_items_from_store,
        escalated_instance_ids,
        judges_in,
        unkept_instance_ids,
    )

    with Store.open(demo_ws) as store:
        judge = judges_in(store, "demo-prefs")[0]
        result = calibrate(calibration_items_from_store(store, "demo-prefs", judge), 0.25, 0.1)
        result = dataclasses.replace(result, judge=judge)
        low, high, never = (dataclasses.replace(result, threshold=t) for t in (0.6, 0.9, None))
        at_low = escalated_instance_ids(store, "demo-prefs", judge, 0.6)
        at_high = escalated_instance_ids(store, "demo-prefs", judge, 0.9)
        assert len(at_low) < len(at_high)
        assert unkept_instance_ids(store, "demo-prefs", [high, low, never]) == at_low
        assert unkept_instance_ids(store, "demo-prefs", [never]) == escalated_instance_ids(
            store, "demo-prefs", judge, None
        )
