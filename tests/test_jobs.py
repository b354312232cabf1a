"""The job queue and the local worker: atomic claims, streaming, cancel of a whole process tree,
retries and heartbeats. A worker killed mid-job: tests/reliability/test_worker_killed.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curation.errors import CuratorError
from training import jobs
from training.worker import Worker, WorkerConfig

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


@pytest.fixture
def plugin_env(monkeypatch):
    """Workers and runners load the test job kinds (tests/job_kinds.py)."""
    monkeypatch.setenv("CURATOR_JOB_PLUGINS", "job_kinds")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(ROOT)]))
    monkeypatch.syspath_prepend(str(TESTS))
    return dict(os.environ)


def _wait(predicate, timeout: float = 30.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _worker_process(workspace, env, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--workspace", str(workspace.root),
         "--poll", "0.2", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_enqueue_refuses_an_unknown_kind_by_name(store):
    with pytest.raises(CuratorError, match="unknown job kind 'nope'"):
        jobs.enqueue(store, "nope", {})
    assert jobs.list_jobs(store) == []


def test_a_queued_job_has_a_log_path_in_the_workspace_and_is_claimed_oldest_first(
    store, workspace, plugin_env
):
    first = jobs.enqueue(store, "steps", {"steps": 1})
    second = jobs.enqueue(store, "steps", {"steps": 2})
    job = jobs.get_job(store, first)
    assert job.status == "queued"
    assert Path(job.log_path).parent == workspace.dir("logs")
    claimed = jobs.claim_next(store, "w1")
    assert (claimed.id, claimed.status, claimed.worker, claimed.attempts) == (first, "running",
                                                                            "w1", 1)  # fmt: skip
    assert jobs.claim_next(store, "w2").id == second
    assert jobs.claim_next(store, "w3") is None


def test_workers_in_many_processes_claim_each_job_exactly_once(store, workspace, plugin_env):
    ids = [jobs.enqueue(store, "steps", {"steps": 1}) for _ in range(40)]
    script = (
        "import sys, json; from curation.store import Store; from training import jobs\n"
        "s = Store.open(sys.argv[1], create=False); got = []\n"
        "while (j := jobs.claim_next(s, sys.argv[2])) is not None: got.append(j.id)\n"
        "print(json.dumps(got))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(workspace.root), f"w{i}"],
                         cwd=ROOT, env=plugin_env, stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]  # fmt: skip
    claimed = [i for p in procs for i in json.loads(p.communicate(timeout=60)[0])]
    assert sorted(claimed) == ids
    assert {j.status for j in jobs.list_jobs(store)} == {"running"}


def test_worker_runs_a_job_streams_metrics_and_progress_and_records_the_result(
    store, workspace, plugin_env
):
    job_id = jobs.enqueue(store, "steps", {"steps": 3, "step_s": 0.05})
    assert Worker(workspace, WorkerConfig(drain=True)).run() == 1
    job = jobs.get_job(store, job_id)
    assert job.status == "succeeded"
    assert job.progress == 1.0
    assert job.result == {"steps": 3, "resumed_from": 0}
    assert [(m["step"], m["name"]) for m in jobs.job_metrics(store, job_id)] == [
        (1, "loss"), (2, "loss"), (3, "loss")]  # fmt: skip
    assert "step 3" in jobs.log_tail(job)
    assert job.pid and job.pgid == job.pid  # ran as the leader of its own process group


def test_a_crashing_job_fails_with_its_error_and_the_traceback_in_its_log(
    store, workspace, plugin_env
):
    job_id = jobs.enqueue(store, "crasher", {"message": "disk on fire"})
    Worker(workspace, WorkerConfig(drain=True)).run()
    job = jobs.get_job(store, job_id)
    assert job.status == "failed"
    assert job.error == "RuntimeError: disk on fire"
    assert "Traceback" in jobs.log_tail(job)
    assert job.finished_at is not None


def test_worker_once_runs_one_job_and_drain_runs_the_rest(store, workspace, plugin_env):
    """`curator worker --once` returns after one job has ended, leaving the rest queued;
    `--drain` runs what is queued and returns; `--once` with another `--max-jobs` is refused."""
    ids = [jobs.enqueue(store, "steps", {"steps": 1, "step_s": 0.01}) for _ in range(3)]
    once = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--workspace", str(workspace.root),
         "--poll", "0.1", "--once"],
        cwd=ROOT, env=plugin_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert "worker ran 1 job(s)" in once.stdout
    assert [jobs.get_job(store, i).status for i in ids] == ["succeeded", "queued", "queued"]
    assert Worker(workspace, WorkerConfig(drain=True, poll_s=0.05)).run() == 2
    assert {jobs.get_job(store, i).status for i in ids} == {"succeeded"}
    clash = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--workspace", str(workspace.root),
         "--once", "--max-jobs", "2"],
        cwd=ROOT, env=plugin_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert clash.returncode != 0 and "--once is --max-jobs 1" in clash.stdout + clash.stderr


def test_cancel_stops_every_process_the_job_started(store, workspace, plugin_env, tmp_path):
    pids_file = tmp_path / "pids.json"
    job_id = jobs.enqueue(store, "spawner", {"children": 2, "pids_file": str(pids_file)})
    worker = _worker_process(workspace, plugin_env, "--once")
    try:
        _wait(pids_file.exists, 60)
        pids = json.loads(pids_file.read_text())
        runner_pid = jobs.get_job(store, job_id).pid
        assert len(pids) == 4 and all(_alive(p) for p in pids + [runner_pid])
        assert jobs.request_cancel(store, job_id).status == "running"  # asked, not yet stopped
        _wait(lambda: jobs.get_job(store, job_id).status == "cancelled", 30)
        _wait(lambda: not any(_alive(p) for p in pids + [runner_pid]), 10)
    finally:
        worker.kill()
        worker.wait()
    assert jobs.get_job(store, job_id).error == "cancelled by request"


def test_cancelling_a_queued_job_ends_it_before_any_worker_sees_it(store, plugin_env):
    job_id = jobs.enqueue(store, "steps", {})
    assert jobs.request_cancel(store, job_id).status == "cancelled"
    assert jobs.claim_next(store, "w") is None
    with pytest.raises(CuratorError, match="already ended"):
        jobs.request_cancel(store, job_id)


def test_a_late_finish_never_overwrites_a_cancel(store, plugin_env):
    job_id = jobs.enqueue(store, "steps", {})
    jobs.claim_next(store, "w")
    assert jobs.finish(store, job_id, "cancelled")
    assert not jobs.finish(store, job_id, "succeeded", result={"x": 1})
    assert jobs.get_job(store, job_id).status == "cancelled"


def test_retry_queues_a_new_job_with_the_same_spec_and_the_old_checkpoint(
    store, workspace, plugin_env
):
    job_id = jobs.enqueue(store, "crasher", {"message": "x"})
    jobs.claim_next(store, "w")
    jobs.set_checkpoint(store, job_id, "/some/checkpoint")
    with pytest.raises(CuratorError, match="still running"):
        jobs.retry(store, job_id)
    jobs.finish(store, job_id, "failed", error="x")
    new_id = jobs.retry(store, job_id)
    new = jobs.get_job(store, new_id)
    assert (new.kind, new.status, new.checkpoint_path) == ("crasher", "queued", "/some/checkpoint")
    assert new.spec == {"message": "x", "retry_of": job_id}


def test_heartbeats_only_count_for_the_worker_that_owns_the_job(store, plugin_env):
    job_id = jobs.enqueue(store, "steps", {})
    jobs.claim_next(store, "owner")
    assert jobs.heartbeat(store, job_id, "owner")
    assert not jobs.heartbeat(store, job_id, "intruder")


def test_metrics_skip_values_that_are_not_finite_numbers(store, plugin_env):
    job_id = jobs.enqueue(store, "steps", {})
    jobs.add_metrics(store, job_id, 1, {"loss": 0.5, "lr": float("nan"), "note": "text"})
    assert [(m["name"], m["value"]) for m in jobs.job_metrics(store, job_id)] == [("loss", 0.5)]


def test_the_app_starts_one_background_worker_that_runs_jobs_and_exits_when_idle(
    store, workspace, plugin_env
):
    from training.worker import ensure_local_worker, running_worker

    job_id = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 0.05})
    pid = ensure_local_worker(workspace, idle_exit_s=2)
    assert ensure_local_worker(workspace, idle_exit_s=2) == pid  # one worker per workspace
    assert _wait(lambda: running_worker(workspace) == pid, 30)
    _wait(lambda: jobs.get_job(store, job_id).status == "succeeded", 60)
    _wait(lambda: not _alive(pid), 30)  # idle for 2 s: gone, and its pidfile with it
    assert running_worker(workspace) is None
    assert not (workspace.dir("logs") / "worker.pid").exists()


def test_retrying_a_succeeded_job_starts_afresh_instead_of_resuming(store, plugin_env):
    job_id = jobs.enqueue(store, "steps", {})
    jobs.claim_next(store, "w")
    jobs.set_checkpoint(store, job_id, "/old/checkpoint")
    jobs.finish(store, job_id, "succeeded", result={})
    assert jobs.get_job(store, jobs.retry(store, job_id)).checkpoint_path is None


def test_the_cli_contract_train_enqueues_and_jobs_show_json_reports_status_and_metrics(
    store, workspace, plugin_env, monkeypatch
):
    """`curator train reward` queues the config's spec and prints the id; `jobs show --json` has
    status, metrics and evaluation; cancel, retry and list work by id."""
    from typer.testing import CliRunner

    from app.cli import cli
    from curation.records import Instance
    from training.reward import RewardTrainConfig

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    dataset = store.create_dataset("prefs", "preference")
    store.insert_instances(
        dataset["id"], [Instance(prompt="q", uid="q1", response_a="a", response_b="b")]
    )
    ws = ["--workspace", str(workspace.root)]
    run = CliRunner().invoke
    queued = run(cli, ["train", "reward", "--dataset", "prefs", "--max-steps", "2", "--lora", *ws])
    assert queued.exit_code == 0, queued.output
    job = jobs.get_job(store, int(queued.output.strip()))
    expected = RewardTrainConfig(dataset="prefs", max_steps=2, lora=True).to_spec()
    assert (job.kind, job.status, job.spec) == ("reward", "queued", expected)
    assert job.created_by.startswith("cli")
    on_gpu = run(cli, ["train", "sft", "--dataset", "prefs", "--num-gpus", "1", *ws])
    assert on_gpu.exit_code == 0, on_gpu.output
    gpu_id = int(on_gpu.output.strip())
    assert jobs.get_job(store, gpu_id).spec["num_gpus"] == 1.0
    jobs.request_cancel(store, gpu_id)
    judged = run(cli, ["judge", "prefs", "--background", "--num-gpus", "1", "--json", *ws])
    assert judged.exit_code == 0, judged.output
    judge_id = json.loads(judged.output)["job_id"]
    spec = jobs.get_job(store, judge_id).spec
    assert (spec["num_gpus"], spec["engine"]) == (1.0, "auto")
    jobs.request_cancel(store, judge_id)
    typo = run(cli, ["train", "sft", "--dataset", "nope", *ws])
    assert isinstance(typo.exception, CuratorError) and "nope" in str(typo.exception)
    assert len(jobs.list_jobs(store)) == 3

    assert "cancelled" in run(cli, ["jobs", "cancel", str(job.id), *ws]).output
    steps = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 0.01})
    Worker(workspace, WorkerConfig(drain=True)).run()
    shown = json.loads(run(cli, ["jobs", "show", str(steps), "--json", *ws]).output)
    assert shown["status"] == "succeeded" and shown["result"]["steps"] == 2
    assert [m["name"] for m in shown["metrics"]] == ["loss", "loss"]
    assert shown["evaluation"] is None and shown["run_id"] is None  # not a training job
    retried = int(run(cli, ["jobs", "retry", str(job.id), *ws]).output.strip())
    listed = json.loads(run(cli, ["jobs", "list", "--json", *ws]).output)
    assert [j["id"] for j in listed] == [retried, steps, judge_id, gpu_id, job.id]
    assert listed[0]["spec"] == expected | {"retry_of": job.id}


def test_a_checkpoint_interrupted_while_written_leaves_the_last_one_whole(store, workspace):
    """A job killed mid-write must not leave its retry an empty checkpoint to resume from."""
    from training.kinds import JobContext

    job_id = jobs.enqueue(store, "reward", {})
    ctx = JobContext(store=store, workspace=workspace, job=jobs.claim_next(store, "w"))
    ctx.checkpoint_state("state.json", {"step": 3})
    with pytest.raises(TypeError):  # the write dies half-way through: "model" is not JSON
        ctx.checkpoint_state("state.json", {"step": 4, "model": object()})
    resumed = JobContext(store=store, workspace=workspace, job=jobs.get_job(store, job_id))
    assert resumed.resumed_state() == {"step": 3}
    assert [p.name for p in ctx.run_dir.iterdir() if not p.name.startswith(".")] == ["state.json"]
