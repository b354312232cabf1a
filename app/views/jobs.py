"""Jobs: launch reward-model, SFT and DPO training in the background; follow, cancel and retry.

A job is a row of the workspace's job table (:mod:`training.jobs`), run by a local worker
(:mod:`training.worker`), so this page re-attaches to it after a refresh or a restart: everything
shown is read back from the store, and the job in view is in the URL (``?job=N``). The page starts
a worker when there is queued work and none runs (:func:`training.worker.auto_worker`).
"""

from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from app import state, widgets
from app.config_form import config_inputs
from curation.errors import CuratorError
from curation.users import User
from curation.workspace import Workspace
from training import jobs
from training.config import TRAINER_KINDS, config_class
from training.jobs import Job
from training.runs import run_for_job
from training.worker import auto_worker, running_worker

REFRESH_S = 2.0
TRAINERS = {"reward": "Reward model", "sft": "SFT", "dpo": "DPO"}
# Settings shown at once; the rest of a trainer's config folds into "More settings".
PRIMARY = ("dataset", "mixture", "base_model", "name", "epochs", "max_steps", "learning_rate",
           "batch_size", "max_length")  # fmt: skip
_SELECTED = "jobs_selected"
_SHOW_NEXT = "jobs_show_next"  # a job just queued, to select on the next run
# Terminal colours in a log: CSI and OSC escapes, and SGR codes whose ESC byte was lost ("[1m").
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])"
                   r"|\[(?:\d{1,3}(?:;\d{1,3})*)?m")  # fmt: skip
# transformers' load report for a sequence-classification head it had to initialise, in its table
# form ("score.weight | MISSING") and its older sentence ("newly initialized: ['score.weight']").
_NEW_HEAD = re.compile(r"\b(?:score|classifier)\.[\w.]*(?:weight|bias)\b[\s|]*MISSING"
                       r"|newly initialized: \[[^\]]*'(?:score|classifier)\.")  # fmt: skip
UNTRAINED_HEAD = (
    "Expected: the reward head reported MISSING in the log. A reward model puts a new head "
    "(`score` or `classifier`) on its base model; the checkpoint has no weights for it, so "
    "transformers reports it MISSING and the head starts untrained, for training to fit."
)


def main() -> None:
    user = state.require_page_role(state.CURATOR)
    st.title("Jobs")
    st.caption(
        "Training runs in the background: a worker process takes queued jobs one at a time. "
        "Leave or reload this page at will; the jobs go on and are shown again as they stand."
    )
    state.show_flash()
    store = state.store()
    _launch_section(store, user)
    listed = jobs.list_jobs(store)
    if any(j.status == "queued" for j in listed):
        _ensure_worker(store.workspace)  # queued work and, perhaps after a restart, no worker
    polling = any(not j.finished for j in listed)
    st.fragment(_jobs_section, run_every=REFRESH_S if polling else None)(store, user, polling)


# ---- launching ------------------------------------------------------------------------------


def _trainers() -> list[str]:
    """The trainer kinds whose module is installed."""
    available = []
    for kind in TRAINER_KINDS:
        try:
            config_class(kind)
        except (ImportError, AttributeError):
            continue
        available.append(kind)
    return available


def _launch_section(store, user: User) -> None:
    st.subheader("Launch")
    kinds = _trainers()
    if not kinds:
        st.info("No trainer is installed in this environment.")
        return
    kind = st.selectbox("Trainer", kinds, format_func=TRAINERS.get, key="jobs_kind")
    config_cls = config_class(kind)
    datasets = {d["name"]: d["kind"] for d in state.memo("datasets", store.list_datasets)}
    with st.form(f"jobs_launch_{kind}"):
        values = config_inputs(
            config_cls,
            key=f"jobs_{kind}",
            choices={"dataset": list(datasets)},
            defaults={"dataset": next(iter(datasets), None)},
            format_choice={"dataset": lambda n: f"{n} ({datasets[n]})" if n in datasets else n},
            primary=PRIMARY,
        )
        retries = st.number_input(
            "Retries", 0, 10, 0, key="jobs_retries",
            help="Requeue the job this often if its worker dies mid-run; it resumes from its "
            "last checkpoint.",
        )  # fmt: skip
        submitted = st.form_submit_button("Launch", key="jobs_launch", type="primary")
    if not submitted:
        return
    try:
        config = config_cls(**_confined(values, store.workspace)).validate()
        job_id = jobs.enqueue(
            store, kind, config.to_spec(), max_retries=int(retries), created_by=user.name
        )
    except CuratorError as exc:
        widgets.error(exc)
        return
    _queued(store.workspace, job_id, f"Queued job {job_id} ({TRAINERS[kind]})")


def _confined(values: dict, workspace: Workspace) -> dict:
    """The form's values with the model and eval files it names held to the workspace: a page
    must not make the server read its other files (``Workspace.confine_source``)."""
    from training.evaluate import confined_suite

    values = dict(values)
    if values.get("base_model"):
        values["base_model"] = workspace.confine_source(values["base_model"], what="base model")
    if values.get("eval_sets"):
        values["eval_sets"] = tuple(confined_suite(s, workspace) for s in values["eval_sets"])
    return values


def _queued(workspace: Workspace, job_id: int, message: str) -> None:
    """After a job was queued: show it, make sure a worker takes it, rerun the page."""
    st.session_state[_SHOW_NEXT] = job_id
    pid = _ensure_worker(workspace)
    state.forget()
    state.flash("success", f"{message}; " + (f"worker pid {pid}" if pid else "no worker started"))
    st.rerun()


def _ensure_worker(workspace: Workspace) -> int | None:
    """Start the workspace's worker unless one runs (or the environment says not to)."""
    try:
        return auto_worker(workspace)
    except CuratorError as exc:
        widgets.error(exc)
        return None


# ---- following ------------------------------------------------------------------------------


def _jobs_section(store, user: User, polling: bool) -> None:
    """The job table and the selected job; reruns every few seconds while a job is unfinished."""
    listed = jobs.list_jobs(store)
    if polling and all(j.finished for j in listed):
        st.rerun()  # the last job ended: redraw the page once and stop polling
    st.subheader("Jobs")
    pid = running_worker(store.workspace)
    st.caption(f"Worker: running (pid {pid})" if pid else "Worker: none running")
    if not listed:
        st.info("No jobs yet: launch one above, or run `curator train`.")
        return
    st.dataframe(
        _jobs_frame(listed),
        hide_index=True,
        key="jobs_table",
        column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0.0,
                                                                   max_value=1.0)},
    )  # fmt: skip
    by_id = {j.id: j for j in listed}
    if st.session_state.get(_SHOW_NEXT) in by_id:
        st.session_state[_SELECTED] = st.session_state.pop(_SHOW_NEXT)
    if st.session_state.get(_SELECTED) not in by_id:
        st.session_state[_SELECTED] = _default_job(listed)
    # No status in the label: it changes while the page polls, and the browser may keep an
    # option's old label, so the selector would contradict the header. The table shows it.
    job_id = st.selectbox(
        "Job", list(by_id), key=_SELECTED, format_func=lambda i: _job_label(by_id[i])
    )
    st.query_params["job"] = str(job_id)
    _job_detail(store, by_id[job_id], user)


def _jobs_frame(listed: list[Job]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "progress": j.progress,
                "message": j.message or "",
                "attempts": f"{j.attempts} of {j.max_retries + 1}",
                "where": _where(j),
                "created": j.created_at,
                "by": j.created_by or "",
            }
            for j in listed
        ]
    )


def _where(job: Job) -> str:
    """Where a job runs or ran: a Ray node (shortened id), Ray before a node is known, or here."""
    if job.node:
        return f"Ray node {job.node[:8]}"
    return "Ray" if job.ray_job_id or job.artifact_uri else "this host"


def _job_label(job: Job) -> str:
    """A job as the selector names it: what never changes about it."""
    name = job.spec.get("name") if isinstance(job.spec, dict) else None
    return " · ".join([f"#{job.id}", TRAINERS.get(job.kind, job.kind), *([name] if name else [])])


def _default_job(listed: list[Job]) -> int:
    """The job in the URL, else the newest unfinished one, else the newest."""
    ids = {j.id for j in listed}
    asked = st.query_params.get("job", "")
    if asked.isdigit() and int(asked) in ids:
        return int(asked)
    return next((j.id for j in listed if not j.finished), listed[0].id)


def _job_detail(store, job: Job, user: User) -> None:
    st.markdown(f"#### Job {job.id}: {TRAINERS.get(job.kind, job.kind)}, {job.status}")
    st.progress(job.progress, text=f"{job.progress:.0%} · {job.message or job.status}")
    times = " · ".join(
        f"{label} {value}"
        for label, value in (("created", job.created_at), ("started", job.started_at),
                             ("finished", job.finished_at))
        if value
    )  # fmt: skip
    st.caption(
        f"attempt {job.attempts} of {job.max_retries + 1} · by {job.created_by or 'unknown'} · "
        f"{times}" + (f" · worker {job.worker}" if job.worker else "")
    )
    if job.ray_job_id or job.node or job.artifact_uri:
        st.caption(
            f"On Ray as {job.ray_job_id or '(not submitted now)'} · node "
            f"{job.node or 'not known yet'} · artefacts at {job.artifact_uri or 'not known yet'}"
        )
    if not job.finished:
        if st.button("Cancel", key="jobs_cancel", icon=":material/cancel:"):
            _cancel(store, job.id)
    elif st.button("Retry", key="jobs_retry", icon=":material/replay:"):
        try:
            new_id = jobs.retry(store, job.id, created_by=user.name)
        except CuratorError as exc:
            widgets.error(exc)
        else:
            _queued(store.workspace, new_id, f"Queued job {new_id}, a retry of job {job.id}")

    if job.status == "failed":
        st.error(f"Failed: {job.error or 'no error recorded'}", icon=":material/error:")
    if job.status == "cancelled" and job.error:
        st.warning(job.error)
    widgets.metric_curves(jobs.job_metrics(store, job.id), key=f"jobs_metrics_{job.id}")
    run = run_for_job(store, job.id)
    if run is not None:
        st.success(f"Recorded as run {run.id} ({run.name}): compare it on the Compare page.")
    if job.result:
        with st.expander("Result"):
            st.json(job.result)
    with st.expander("Settings"):
        st.code(json.dumps(job.spec, indent=2, sort_keys=True), language="json")
    st.markdown("**Log**")
    tail = plain_log(jobs.log_tail(job))
    if tail:
        st.code(tail, language=None)
        if _NEW_HEAD.search(tail):
            st.caption(UNTRAINED_HEAD)
    else:
        st.caption(f"No log yet ({job.log_path}).")


def plain_log(text: str) -> str:
    """A log as text to read: terminal colour and cursor codes removed."""
    return _ANSI.sub("", text)


def _cancel(store, job_id: int) -> None:
    try:
        job = jobs.request_cancel(store, job_id)
    except CuratorError as exc:
        widgets.error(exc)
        return
    state.forget()
    if job.status == "cancelled":
        state.flash("success", f"Cancelled job {job_id}.")
    else:
        state.flash("info", f"Cancel requested for job {job_id}: its worker is stopping it.")
    st.rerun()


main()
