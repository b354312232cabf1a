"""A worker SIGKILLed in the middle of a job: the job is noticed, failed or recovered from its last
checkpoint by the next worker, and the store passes SQLite's integrity check throughout."""

from __future__ import annotations

import signal
import time

import test_jobs
from test_jobs import _alive, _wait, _worker_process

from curation.store import Store
from training import jobs
from training.worker import Worker, WorkerConfig

plugin_env = test_jobs.plugin_env  # the fixture: workers load the test job kinds


def _kill_worker_mid_job(store, workspace, env, job_id):
    """Start a real `curator worker`, SIGKILL it once the job is a fifth done, and wait until
    the job's own process group has noticed and stopped."""
    worker = _worker_process(workspace, env, "--stale-after", "2")
    _wait(lambda: jobs.get_job(store, job_id).progress >= 0.2, 60)
    runner_pid = jobs.get_job(store, job_id).pid
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    # the job's process group notices its worker is gone and stops itself
    _wait(lambda: not _alive(runner_pid), 15)
    return runner_pid


def _integrity(workspace) -> str:
    with Store.open(workspace, create=False) as fresh:
        return fresh.integrity_check()


def test_a_worker_killed_mid_job_leaves_it_failed_and_the_store_intact(
    store, workspace, plugin_env
):
    """With no retries left, the reaper fails the orphaned job, saying why."""
    job_id = jobs.enqueue(store, "steps", {"steps": 40, "step_s": 0.25})
    _kill_worker_mid_job(store, workspace, plugin_env, job_id)
    assert jobs.get_job(store, job_id).status == "running"  # nobody has noticed yet
    time.sleep(2.5)
    assert jobs.reap_stale(store, stale_after_s=2) == [(job_id, "failed")]
    job = jobs.get_job(store, job_id)
    assert job.status == "failed"
    assert "stopped heartbeating" in job.error
    assert _integrity(workspace) == "ok"


def test_a_job_whose_worker_was_killed_is_recovered_from_its_last_checkpoint(
    store, workspace, plugin_env
):
    """With a retry left, the next worker requeues the job and resumes it where it stopped."""
    job_id = jobs.enqueue(store, "steps", {"steps": 12, "step_s": 0.25}, max_retries=1)
    _kill_worker_mid_job(store, workspace, plugin_env, job_id)
    assert _integrity(workspace) == "ok"
    time.sleep(2.5)
    # a fresh worker reaps the lost job, requeues it, and runs it again from its checkpoint
    Worker(workspace, WorkerConfig(drain=True, stale_after_s=2)).run()
    job = jobs.get_job(store, job_id)
    assert job.status == "succeeded", (job.error, jobs.log_tail(job, 4000))
    assert job.attempts == 2
    resumed = job.result["resumed_from"]
    assert 1 <= resumed < 12
    started = (workspace.dir("runs") / f"job-{job_id}" / "started_at_step.txt").read_text().split()
    assert started == ["0", str(resumed)]
    assert "--- attempt 2" in jobs.log_tail(job, 100_000)
    assert _integrity(workspace) == "ok"
