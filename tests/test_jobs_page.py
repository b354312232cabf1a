"""The Jobs page, driven headless through AppTest against a real job table.

Finished jobs come from a real worker running the test job kinds (tests/job_kinds.py) once, built
once per module and copied for each test. ``CURATOR_NO_AUTO_WORKER`` keeps the page from starting
a background worker, so a queued job stays queued while a test looks at it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.reward import RewardTrainConfig
from training.worker import Worker, WorkerConfig, running_worker

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
HOME = str(ROOT / "app" / "Home.py")
PAGE = str(ROOT / "app" / "views" / "jobs.py")
PASSWORD = "a long enough password"


def _plugin_env(mp: pytest.MonkeyPatch) -> None:
    """Workers, runners and this process load the test job kinds; the page starts no worker."""
    mp.setenv("CURATOR_JOB_PLUGINS", "job_kinds")
    mp.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    mp.setenv("CURATOR_NO_AUTO_WORKER", "1")
    mp.syspath_prepend(str(TESTS))


@pytest.fixture(scope="module")
def finished_workspace(tmp_path_factory) -> Path:
    """A workspace with a preference dataset, a succeeded ``steps`` job (1) and a failed
    ``crasher`` job (2), both run by a real worker."""
    ws = Workspace(tmp_path_factory.mktemp("jobs") / "ws").ensure()
    with pytest.MonkeyPatch.context() as mp:
        _plugin_env(mp)
        with Store.open(ws) as store:
            store.create_dataset("prefs", "preference")
            jobs.enqueue(store, "steps", {"steps": 3, "step_s": 0}, created_by="boss")
            jobs.enqueue(store, "crasher", {"message": "kaboom"}, max_retries=0)
        Worker(ws, WorkerConfig(drain=True, poll_s=0.05)).run()
    return ws.root


@pytest.fixture
def ws(finished_workspace, tmp_path, monkeypatch, cheap_password_hashing) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(finished_workspace, root)
    _plugin_env(monkeypatch)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(root))
    return Workspace(root)


def no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def jobs_page(job: int | None = None) -> AppTest:
    """The page as the local curator reaches it from the menu (``?job=N`` when given)."""
    at = AppTest.from_file(HOME, default_timeout=60)
    if job is not None:
        at.query_params["job"] = str(job)
    at.run()
    at.switch_page("views/jobs.py").run()
    no_errors(at)
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in ("info", "warning", "error", "success"):
        parts += [str(e.value) for e in at.get(kind)]
    return "\n".join(parts)


def test_the_finished_jobs_are_listed_with_their_status_and_who_launched_them(ws):
    """The table reads the job rows back from the store; nothing runs, so no worker is shown."""
    at = jobs_page()
    table = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert list(table["id"]) == [2, 1]
    assert list(table["status"]) == ["failed", "succeeded"]
    assert list(table["by"]) == ["", "boss"]
    assert table.loc[table["id"] == 1, "progress"].item() == 1.0
    assert "Worker: none running" in texts(at)


def test_a_finished_job_shows_its_metrics_log_and_result(ws):
    """Opened by its URL (``?job=1``), as after a refresh: progress, loss curve, log tail."""
    at = jobs_page(job=1)
    assert at.selectbox(key="jobs_selected").value == 1
    assert "Job 1: steps, succeeded" in texts(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 1 and '"loss"' in charts[0].proto.spec
    log = "\n".join(c.value for c in at.code)
    assert "step 3" in log and "succeeded" in log
    assert at.button(key="jobs_retry") and not [b for b in at.button if b.key == "jobs_cancel"]


# What a transformers Trainer logs through the job callback: a curve per logging step, eval
# numbers per eval, and at the end one line of run summaries (and the epoch again).
TRAINER_LOGS = {
    1: {"grad_norm": 1.5, "learning_rate": 5e-5, "epoch": 0.33},
    2: {"grad_norm": 1.2, "learning_rate": 3e-5, "epoch": 0.67, "eval_loss": 0.6,
        "eval_accuracy": 0.6, "eval_runtime": 0.5, "eval_samples_per_second": 80.0},
    3: {"grad_norm": 0.9, "learning_rate": 1e-5, "epoch": 1.0, "eval_loss": 0.5,
        "eval_accuracy": 0.7, "eval_runtime": 0.4, "eval_samples_per_second": 100.0},
}  # fmt: skip
SUMMARIES = {"train_runtime": 12.3456, "train_samples_per_second": 31.4159,
             "train_steps_per_second": 2.5, "total_flos": 123456789.0, "train_loss": 0.61234}  # fmt: skip


def figure(at: AppTest, key: str) -> dict:
    [found] = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]
    return json.loads(found.proto.spec)


def panels_px(fig: dict) -> list[tuple[float, float]]:
    """Each facet row's (bottom, top) in pixels from the plot area's bottom, top row first."""
    layout = fig["layout"]
    plot_px = layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]
    domains = {tuple(v["domain"]) for k, v in layout.items() if k.startswith("yaxis")}
    return sorted(((lo * plot_px, hi * plot_px) for lo, hi in domains), reverse=True)


def test_metric_panels_are_readable_and_summaries_are_a_table(ws):
    """Panels keep their height and gaps in pixels however many rows there are; a metric logged
    at one step only is a final value in a table, not a one-point chart; the loss and eval curves
    are shown at first, the rest on request."""
    with Store.open(ws) as store:
        for step, values in TRAINER_LOGS.items():
            jobs.add_metrics(store, 1, step, values)
        jobs.add_metrics(store, 1, 3, SUMMARIES | {"epoch": 1.0})
    at = jobs_page(job=1)
    picker = at.multiselect(key="jobs_metrics_1_shown")
    assert picker.options == ["loss", "grad_norm", "learning_rate", "epoch", "eval_loss",
                              "eval_accuracy", "eval_runtime", "eval_samples_per_second"]  # fmt: skip
    assert picker.value == ["loss", "eval_loss", "eval_accuracy"]
    summaries = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert summaries.to_dict("list") == {
        "metric": list(SUMMARIES),
        "value": ["12.35", "31.42", "2.5", "1.235e+08", "0.6123"],
        "step": [3] * 5,
    }
    assert len(panels_px(figure(at, "jobs_metrics_1"))) == 2

    picker.set_value(picker.options).run()  # all eight: four rows of two
    no_errors(at)
    fig = figure(at, "jobs_metrics_1")
    assert {a["text"] for a in fig["layout"]["annotations"]} == set(picker.options)
    rows = panels_px(fig)
    assert len(rows) == 4
    assert all(top - bottom == pytest.approx(220, abs=1) for bottom, top in rows)
    gaps = [upper[0] - lower[1] for upper, lower in itertools.pairwise(rows)]
    assert gaps == pytest.approx([70] * 3, abs=1)


def test_the_selector_and_the_header_agree_when_a_job_finishes(ws):
    """The selector names a job by what never changes (no status, which the browser may show
    stale while the page polls); the header and the table say the status as it stands."""
    with Store.open(ws) as store:
        job_id = jobs.enqueue(store, "steps", {"steps": 1, "name": "tiny"})
    at = jobs_page()
    options = at.selectbox(key="jobs_selected").options
    assert options == ["#3 · steps · tiny", "#2 · crasher", "#1 · steps"]
    assert "Job 3: steps, queued" in texts(at)
    with Store.open(ws) as store:
        assert jobs.claim_next(store, "w1").id == job_id
        assert jobs.finish(store, job_id, "succeeded", result={})
    at.run()
    no_errors(at)
    assert "Job 3: steps, succeeded" in texts(at)
    assert at.selectbox(key="jobs_selected").value == job_id
    assert at.selectbox(key="jobs_selected").options == options
    table = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert table.loc[table["id"] == job_id, "status"].item() == "succeeded"


# A reward model's log as transformers writes it: a bold title (with its ESC byte), a load report
# whose head is MISSING (in red), and a colour code whose ESC byte a log shipper dropped.
REWARD_LOG = (
    "\x1b[1mLlamaForSequenceClassification LOAD REPORT\x1b[0m from: tiny\n"
    "Key          | Status  | \n"
    "-------------+---------+-\n"
    "score.weight | \x1b[31mMISSING\x1b[0m | \n\n"
    "Notes:\n- \x1b[31mMISSING:\x1b[0m\t\x1b[3mthose params were newly initialized\x1b[0m\n"
    "[1m{'loss': 0.69}[0m\n"
)


def test_the_log_has_no_colour_codes_and_explains_a_missing_reward_head(ws):
    with Store.open(ws) as store:
        job = jobs.get_job(store, 1)
    with open(job.log_path, "a") as handle:
        handle.write(REWARD_LOG)
    at = jobs_page(job=1)
    log = "\n".join(c.value for c in at.code if "step 3" in c.value)
    assert "\x1b" not in log and "[0m" not in log and "[1m" not in log and "[31m" not in log
    assert "LlamaForSequenceClassification LOAD REPORT from: tiny" in log
    assert "score.weight | MISSING |" in log and "{'loss': 0.69}" in log
    assert any("starts untrained" in c.value and "expected" in c.value.lower() for c in at.caption)
    at.selectbox(key="jobs_selected").set_value(2).run()  # a log without a load report
    no_errors(at)
    assert not any("starts untrained" in c.value for c in at.caption)


def test_a_failed_job_shows_its_error(ws):
    at = jobs_page(job=2)
    assert at.selectbox(key="jobs_selected").value == 2
    assert any("RuntimeError: kaboom" in e.value for e in at.error)
    assert "RuntimeError: kaboom" in "\n".join(c.value for c in at.code)  # the traceback


def test_retry_queues_a_new_job_with_the_same_settings_and_shows_it(ws):
    at = jobs_page(job=2)
    at.button(key="jobs_retry").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        newest = jobs.list_jobs(store)[0]
    assert newest.id == 3 and newest.status == "queued" and newest.kind == "crasher"
    assert newest.spec == {"message": "kaboom", "retry_of": 2}
    assert newest.created_by == "local"
    assert any("Queued job 3, a retry of job 2" in s.value for s in at.success)
    assert at.selectbox(key="jobs_selected").value == 3
    assert at.query_params["job"] == "3"  # a refresh re-attaches to it
    assert running_worker(ws) is None  # CURATOR_NO_AUTO_WORKER: nothing started


def test_cancel_cancels_a_queued_job(ws):
    with Store.open(ws) as store:
        queued = jobs.enqueue(store, "steps", {"steps": 50})
    at = jobs_page()
    assert at.selectbox(key="jobs_selected").value == queued  # the unfinished one comes first
    assert "Job 3: steps, queued" in texts(at)
    at.button(key="jobs_cancel").click().run()
    no_errors(at)
    with Store.open(ws) as store:
        assert jobs.get_job(store, queued).status == "cancelled"
    assert any(f"Cancelled job {queued}." in s.value for s in at.success)
    assert at.button(key="jobs_retry")


def test_the_page_starts_a_worker_for_queued_work_when_none_runs(ws, monkeypatch):
    """Without CURATOR_NO_AUTO_WORKER: queued work and no worker, so the page starts a real
    ``curator worker``, which runs the job; reloading shows it done and starts no second one."""
    monkeypatch.delenv("CURATOR_NO_AUTO_WORKER")
    with Store.open(ws) as store:
        job_id = jobs.enqueue(store, "steps", {"steps": 1, "step_s": 0})
    at = jobs_page()
    pid = running_worker(ws)
    assert pid is not None
    try:
        assert f"Worker: running (pid {pid})" in texts(at)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with Store.open(ws) as store:
                if jobs.get_job(store, job_id).finished:
                    break
            time.sleep(0.2)
        at.run()
        no_errors(at)
        assert "Job 3: steps, succeeded" in texts(at)
        assert running_worker(ws) == pid  # the same worker: no second one started
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)  # the page started it from this process: reap it


def test_the_launch_form_queues_a_reward_job_with_the_settings_given(ws):
    at = jobs_page()
    at.selectbox(key="jobs_kind").set_value("reward").run()
    no_errors(at)
    assert at.selectbox(key="jobs_reward_dataset").value == "prefs"
    at.number_input(key="jobs_reward_max_steps").set_value(2)
    at.number_input(key="jobs_reward_batch_size").set_value(2)
    at.number_input(key="jobs_reward_max_length").set_value(32)
    at.text_input(key="jobs_reward_name").set_value("tiny rm")
    at.number_input(key="jobs_retries").set_value(1)
    at.button(key="jobs_launch").click().run()
    no_errors(at)
    expected = RewardTrainConfig(
        dataset="prefs", max_steps=2, batch_size=2, max_length=32, name="tiny rm"
    ).to_spec()
    with Store.open(ws) as store:
        job = jobs.list_jobs(store)[0]
    assert (job.kind, job.status, job.max_retries, job.created_by) == (
        "reward",
        "queued",
        1,
        "local",
    )
    assert job.spec == expected
    assert any(f"Queued job {job.id} (Reward model)" in s.value for s in at.success)
    assert at.selectbox(key="jobs_selected").value == job.id
    assert running_worker(ws) is None


def test_the_launch_form_shows_a_settings_mistake_and_queues_nothing(ws):
    at = jobs_page()
    at.selectbox(key="jobs_kind").set_value("reward").run()
    at.selectbox(key="jobs_reward_dataset").set_value("(none)")
    at.button(key="jobs_launch").click().run()
    no_errors(at)
    assert any("dataset or mixture" in e.value for e in at.error)
    with Store.open(ws) as store:
        assert len(jobs.list_jobs(store)) == 2


def _settings_form() -> None:
    """A form for a config with every field type a trainer's config may use."""
    from dataclasses import dataclass, field

    import streamlit as st

    from app.config_form import config_inputs

    @dataclass
    class Settings:
        dataset: str | None = field(default=None, metadata={"help": "Data."})
        name: str = field(default="", metadata={"help": "Name."})
        steps: int = field(default=-1, metadata={"help": "Steps."})
        learning_rate: float = field(default=5e-5, metadata={"help": "Rate."})
        epochs: float = field(default=1.0, metadata={"help": "Epochs."})
        limit: int | None = field(default=None, metadata={"help": "Limit."})
        lora: bool = field(default=False, metadata={"help": "LoRA."})
        targets: tuple[str, ...] = field(default=("q_proj",), metadata={"help": "Modules."})
        precision: str = field(default="auto", metadata={"help": "P.", "choices": ("auto", "fp32")})

    values = config_inputs(Settings, key="t", choices={"dataset": ["a", "b"]}, primary=("name",))
    st.session_state["values"] = values
    st.session_state["config"] = Settings(**values)


DEFAULTS = {
    "dataset": None,
    "name": "",
    "steps": -1,
    "learning_rate": 5e-5,
    "epochs": 1.0,
    "limit": None,
    "lora": False,
    "targets": ("q_proj",),
    "precision": "auto",
}


def test_the_config_form_has_an_input_per_field_type_with_its_help():
    """Defaults come back unchanged; optional fields start empty; tuples are one per line."""
    at = AppTest.from_function(_settings_form).run()
    no_errors(at)
    assert at.session_state["values"] == DEFAULTS
    assert at.selectbox(key="t_dataset").options == ["(none)", "a", "b"]
    assert at.number_input(key="t_learning_rate").step == pytest.approx(1e-5)
    assert at.number_input(key="t_epochs").step == 1.0  # a float step for a float field
    assert at.number_input(key="t_limit").value is None
    assert at.selectbox(key="t_precision").options == ["auto", "fp32"]
    assert at.checkbox(key="t_lora").help == "LoRA."
    assert [e.label for e in at.expander] == ["More settings"]
    at.selectbox(key="t_dataset").set_value("b")
    at.number_input(key="t_limit").set_value(7)
    at.checkbox(key="t_lora").check()
    at.text_area(key="t_targets").input("q_proj\nv_proj\n")
    at.text_input(key="t_name").input("  run  ")
    at.run()
    no_errors(at)
    assert at.session_state["values"] == DEFAULTS | {
        "dataset": "b",
        "name": "run",
        "limit": 7,
        "lora": True,
        "targets": ("q_proj", "v_proj"),
    }


def test_a_job_that_ran_on_ray_names_its_node_and_where_its_artefacts_are(ws):
    """A Ray worker records the submission, the node and the storage URI on the row; the table
    says where each job ran and the job's page names the node and the artefacts' location."""
    with Store.open(ws) as store:
        jobs.set_ray_job_id(store, 1, "curator-job-1-abc")
        jobs.set_ray_placement(store, 1, node="f00dfeed" * 7, artifact_uri="s3://bucket/job-1")
    at = jobs_page(job=1)
    table = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert dict(zip(table["id"], table["where"], strict=True)) == {
        1: "Ray node f00dfeed", 2: "this host"}  # fmt: skip
    shown = texts(at)
    assert "On Ray as curator-job-1-abc" in shown and "f00dfeed" * 7 in shown
    assert "artefacts at s3://bucket/job-1" in shown
