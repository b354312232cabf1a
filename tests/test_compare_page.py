"""The Compare page, driven headless through AppTest against real run rows.

Runs are written with :func:`training.runs.record_run` and their jobs' metrics with
:func:`training.jobs.add_metrics`, as a trainer does; the generative runs point at the tiny random
Llama from conftest, so generating side by side runs the real model path in a second.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation.records import Instance
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.runs import record_run

ROOT = Path(__file__).resolve().parents[1]
HOME = str(ROOT / "app" / "Home.py")
PAGE = str(ROOT / "app" / "views" / "compare.py")
PASSWORD = "a long enough password"


def _rewardbench(overall: float, chat: float, safety: float) -> dict:
    """A reward run's evaluation as training.evaluate stores it: keyed by eval set."""
    return {
        "rewardbench:demo-eval": {
            "overall": overall,
            "categories": {"chat": chat, "safety": safety},
            "subsets": {"alpacaeval-easy": chat},
            "n": 40,
            "dataset": "demo-eval",
        }
    }


@pytest.fixture
def ws(tmp_path, monkeypatch, cheap_password_hashing, tiny_model) -> Workspace:
    """Two reward runs on ``prefs`` (different learning rates, each with a loss curve), an SFT run
    on the mixture ``chat@1`` and a DPO run on ``prefs``, both saved as the tiny model."""
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as store:
        prefs = store.create_dataset("prefs", "preference")
        store.insert_instances(
            prefs["id"], [Instance(uid=f"p{i}", prompt=f"A B {i}") for i in range(4)]
        )
        with store.write():
            store.conn.execute(
                "INSERT INTO mixtures(name, version, kind, spec) VALUES ('chat', 1, 'sft', '{}')"
            )
        for lr, losses, evaluation in (
            (1e-5, [0.9, 0.7, 0.6], _rewardbench(0.70, 0.9, 0.5)),
            (5e-5, [0.8, 0.5, 0.3], _rewardbench(0.75, 0.8, 0.7)),
        ):
            job_id = jobs.enqueue(store, "reward", {"dataset": "prefs", "learning_rate": lr})
            for step, loss in enumerate(losses, 1):
                jobs.add_metrics(store, job_id, step, {"loss": loss, "learning_rate": lr})
            record_run(
                store, kind="reward", name=f"rm lr={lr:g}", job_id=job_id, dataset="prefs",
                base_model="tiny", config={"learning_rate": lr, "epochs": 1.0},
                metrics={"train_loss": losses[-1]}, evaluation=evaluation,
            )  # fmt: skip
        record_run(
            store, kind="sft", name="sft chat", mixture="chat@1", base_model="tiny",
            config={"learning_rate": 2e-5}, evaluation={"held_out_loss": 1.5, "gsm8k": {"accuracy": 0.1}},
            artifact_path=str(tiny_model),
        )  # fmt: skip
        record_run(
            store, kind="dpo", name="dpo prefs", dataset="prefs", base_model="tiny",
            config={"beta": 0.1}, evaluation={"refusal_rate": 0.2}, artifact_path=str(tiny_model),
        )  # fmt: skip
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    return ws


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def compare_page() -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=60).run()
    at.switch_page("views/compare.py").run()
    no_errors(at)
    return at


def frame_with(at: AppTest, *columns: str):
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def chart(at: AppTest, key: str) -> dict:
    [found] = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]
    return json.loads(found.proto.spec)


def values(array) -> list:
    """A plotly array as a list (plotly 6 ships numbers as base64 ``bdata``)."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_the_runs_table_lists_every_run_and_the_filters_narrow_it(ws):
    at = compare_page()
    table = frame_with(at, "kind", "dataset", "mixture")
    assert list(table["name"]) == ["dpo prefs", "sft chat", "rm lr=5e-05", "rm lr=1e-05"]
    assert list(table["mixture"]) == ["", "chat@1", "", ""]
    assert table["eval rewardbench:demo-eval.overall"].tolist() == ["", "", "0.75", "0.7"]
    assert list(table["job"]) == ["", "", "2", "1"]  # blank, never "None", where a run has none
    at.selectbox(key="compare_kind").set_value("reward").run()
    no_errors(at)
    assert list(frame_with(at, "kind")["kind"]) == ["reward", "reward"]
    at.selectbox(key="compare_kind").set_value("any")
    at.selectbox(key="compare_dataset").set_value("prefs").run()
    assert list(frame_with(at, "kind")["name"]) == ["dpo prefs", "rm lr=5e-05", "rm lr=1e-05"]
    at.selectbox(key="compare_dataset").set_value("any")
    at.selectbox(key="compare_mixture").set_value("chat@1").run()
    no_errors(at)
    assert list(frame_with(at, "kind")["name"]) == ["sft chat"]
    assert any("at least two runs" in i.value for i in at.info)


def test_two_reward_runs_side_by_side_settings_scores_curves_and_categories(ws):
    at = compare_page()
    at.selectbox(key="compare_kind").set_value("reward").run()
    no_errors(at)
    assert at.multiselect(key="compare_chosen").value == [2, 1]  # the two newest listed
    settings = frame_with(at, "setting")
    assert list(settings["setting"]) == ["learning_rate"]
    assert list(settings.iloc[0])[1:] == ["5e-05", "1e-05"]
    scores = frame_with(at, "metric").set_index("metric")
    assert scores.loc["eval.rewardbench:demo-eval.overall"].tolist() == ["0.75", "0.7"]
    assert scores.loc["eval.rewardbench:demo-eval.categories.safety"].tolist() == ["0.7", "0.5"]
    assert scores.loc["train.train_loss"].tolist() == ["0.3", "0.6"]

    curves = chart(at, "compare_curves")
    assert {t["name"] for t in curves["data"]} == {"#2 rm lr=5e-05", "#1 rm lr=1e-05"}
    losses = {t["name"]: values(t["y"]) for t in curves["data"]}
    assert losses == {"#2 rm lr=5e-05": [0.8, 0.5, 0.3], "#1 rm lr=1e-05": [0.9, 0.7, 0.6]}
    assert at.multiselect(key="compare_curve_metrics").value == ["loss"]

    bars = chart(at, "compare_categories")
    by_run = {
        t["name"]: dict(zip(values(t["x"]), values(t["y"]), strict=True)) for t in bars["data"]
    }
    assert by_run == {
        "#2 rm lr=5e-05": {"chat": 0.8, "safety": 0.7},
        "#1 rm lr=1e-05": {"chat": 0.9, "safety": 0.5},
    }


def test_numbers_logged_once_are_final_values_per_run_not_curves(ws):
    """A trainer's end-of-run summaries (``train_runtime``) are a table, one column per run; a
    number one run lacks is blank."""
    with Store.open(ws) as store:
        jobs.add_metrics(store, 1, 3, {"train_runtime": 12.3456, "total_flos": 2e9})
        jobs.add_metrics(store, 2, 3, {"train_runtime": 9.87654})
    at = compare_page()
    at.selectbox(key="compare_kind").set_value("reward").run()
    no_errors(at)
    assert at.multiselect(key="compare_curve_metrics").options == ["loss", "learning_rate"]
    [summaries] = [
        d.value for d in at.dataframe if "train_runtime" in set(d.value.get("metric", []))
    ]
    assert summaries.to_dict("list") == {
        "metric": ["train_runtime", "total_flos"],
        "#2 rm lr=5e-05": ["9.877", ""],
        "#1 rm lr=1e-05": ["12.35", "2e+09"],
    }


def test_generative_runs_without_categories_say_so(ws):
    at = compare_page()
    at.multiselect(key="compare_chosen").set_value([4, 3]).run()
    no_errors(at)
    scores = frame_with(at, "metric").set_index("metric")
    assert scores.loc["eval.gsm8k.accuracy"].tolist() == ["", "0.1"]  # the DPO run has none
    assert scores.loc["eval.refusal_rate"].tolist() == ["0.2", ""]
    [said] = [c.value for c in at.caption if "per-category scores" in c.value]
    assert said.startswith("None of these runs has per-category scores.")
    assert "SFT and DPO runs have none" in said and "reward model" not in said
    assert any("logged no metrics" in c.value for c in at.caption)


def test_reward_runs_without_categories_say_how_to_get_them(ws):
    """Two reward models not scored on a categorised eval set: the page says so, and that
    launching with ``eval_set`` gives them per-category scores."""
    with Store.open(ws) as store:
        bare = [
            record_run(store, kind="reward", name=f"rm {i}", evaluation={"accuracy": 0.6})
            for i in (1, 2)
        ]
    at = compare_page()
    at.multiselect(key="compare_chosen").set_value(bare).run()
    no_errors(at)
    [said] = [c.value for c in at.caption if "per-category scores" in c.value]
    assert said.startswith("None of these runs has per-category scores.")
    assert "evaluated on a categorised eval set" in said and "these were not" in said
    assert "`eval_set`" in said and "demo-eval" in said
    assert "SFT and DPO" not in said
    assert not [c for c in at.get("plotly_chart") if "compare_categories" in (c.proto.id or "")]
    # beside a run that has them: the bars, and a word on the one left out
    at.multiselect(key="compare_chosen").set_value([bare[0], 2]).run()
    no_errors(at)
    assert chart(at, "compare_categories")
    [said] = [c.value for c in at.caption if "per-category scores" in c.value]
    assert said.startswith(f"Without per-category scores: #{bare[0]} rm 1.")
    assert "this one was not" in said


def test_two_models_answer_the_same_prompts_side_by_side(ws):
    at = compare_page()
    assert at.selectbox(key="compare_gen_left").value == 4
    assert at.selectbox(key="compare_gen_right").value == 3
    at.text_area(key="compare_gen_prompts").input("A B\nB A A")
    at.number_input(key="compare_gen_max_new").set_value(4)
    at.button(key="compare_gen_submit").click().run()
    no_errors(at)
    shown = at.session_state["compare_generations"]
    assert shown["prompts"] == ["A B", "B A A"]
    assert shown["labels"] == ("#4 dpo prefs", "#3 sft chat")
    # the same weights, greedy: both columns say the same thing
    assert shown["outputs"][0] == shown["outputs"][1] and len(shown["outputs"][0]) == 2
    assert [c.value for c in at.caption if c.value.startswith("#")] == [
        "#4 dpo prefs", "#3 sft chat", "#4 dpo prefs", "#3 sft chat"
    ]  # fmt: skip
    # prompts sampled from a dataset, with the models loaded once for the session
    at.radio(key="compare_gen_source").set_value("Sample from a dataset").run()
    at.number_input(key="compare_gen_n").set_value(2)
    at.button(key="compare_gen_submit").click().run()
    no_errors(at)
    sampled = at.session_state["compare_generations"]["prompts"]
    assert len(sampled) == 2 and all(p.startswith("A B ") for p in sampled)
    assert len(at.session_state["compare_models"]) == 1  # both runs share one folder


def test_a_model_that_cannot_be_loaded_is_reported_as_such(ws):
    with Store.open(ws) as store:
        gone = record_run(
            store, kind="sft", name="gone", artifact_path=str(ws.root / "runs" / "missing")
        )
    at = compare_page()
    at.selectbox(key="compare_gen_left").set_value(gone)
    at.text_area(key="compare_gen_prompts").input("A B")
    at.button(key="compare_gen_submit").click().run()
    no_errors(at)
    assert any(f"the model of run {gone} is missing" in e.value for e in at.error)
    assert "compare_generations" not in at.session_state
    (ws.root / "runs" / "missing").mkdir()  # there, but holding no model
    at.button(key="compare_gen_submit").click().run()
    no_errors(at)
    assert any("cannot load the model's tokenizer" in e.value for e in at.error)
    assert "compare_generations" not in at.session_state
