"""The Ray worker against a real local Ray head that this module starts (and alone stops).

The jobs are the queue's test kinds (``tests/job_kinds.py``) run by the real runner, submitted
through the Ray Jobs API; the tests skip where the ``cluster`` extra is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from processes import free_port, session_processes

from curation.errors import CuratorError
from training import jobs
from training.ray_worker import RayWorker, RayWorkerConfig

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray not installed (the cluster extra)")
RAY = Path(sys.executable).parent / "ray"


def _alive(pid: int) -> bool:
    """Running, not a zombie (the head, our child, stays one until we wait for it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_all(pids: set[int], grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray cluster of our own: ``ray start --block`` as the leader of a new session.

    ``ray stop`` would end every Ray process on the machine, so teardown kills only this
    session's processes (Ray's workers keep the session but not the process group) and what
    they started. The temp dir is short: Ray's unix socket paths must fit in 107 bytes."""
    if not HAVE_RAY:
        pytest.skip("ray not installed (the cluster extra)")
    from ray.job_submission import JobSubmissionClient

    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    dashboard_port = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard_port,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    command = [str(RAY), "start", "--head", "--block", "--dashboard-host", "127.0.0.1",
               "--temp-dir", temp_dir, "--disable-usage-stats", "--num-cpus", "2",
               "--include-dashboard", "true", "--object-store-memory", str(100 * 1024**2)]  # fmt: skip
    for flag, port in ports.items():
        command += [flag, str(port)]
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115 - open for the whole module
    head = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if head.poll() is not None:
                raise RuntimeError(f"ray start exited: {(Path(temp_dir) / 'head.log').read_text()}")
            try:
                JobSubmissionClient(address)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        _kill_all(session_processes(head.pid), grace_s=3)
        head.wait(timeout=10)
        log.close()
        subprocess.run(["rm", "-rf", temp_dir], check=False)


@pytest.fixture
def test_kinds(monkeypatch):
    """The test job kinds, for this process (enqueue checks kinds) and for the runner on Ray
    (the worker forwards PYTHONPATH and CURATOR_JOB_PLUGINS to the cluster)."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("CURATOR_JOB_PLUGINS", "job_kinds")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS_DIR),
                                                                   os.environ.get("PYTHONPATH")])))  # fmt: skip


def _config(**overrides) -> RayWorkerConfig:
    values = dict(poll_s=0.2, heartbeat_s=0.5, log_s=0.5, drain=True, stop_wait_s=20)
    return RayWorkerConfig(**(values | overrides))


def _ray_status(address: str, submission_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(address).get_job_status(submission_id))


def test_missing_ray_is_a_curator_error(workspace, store, monkeypatch):
    """Without the cluster extra the worker says how to install it, not an ImportError."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.job_submission", None)
    with pytest.raises(CuratorError, match=r"pip install 'hybrid-curator\[cluster\]'"):
        RayWorker(workspace, "http://127.0.0.1:8265")


@needs_ray
def test_unreachable_cluster_is_a_curator_error(workspace, store):
    """A wrong address fails at start, before any job is claimed."""
    job_id = jobs.enqueue(store, "reward", {})
    with pytest.raises(CuratorError, match="cannot reach the Ray Jobs API"):
        RayWorker(workspace, f"http://127.0.0.1:{free_port()}")
    assert jobs.get_job(store, job_id).status == "queued"


@pytest.mark.slow
def test_steps_job_succeeds_on_ray(ray_head, workspace, store, test_kinds):
    """A job runs on the cluster: the runner's result, metrics and log output land in the
    workspace, and the row remembers the Ray submission."""
    job_id = jobs.enqueue(store, "steps", {"steps": 3, "step_s": 0.05})
    assert RayWorker(workspace, ray_head, _config()).run() == 1
    job = jobs.get_job(store, job_id)
    assert job.status == "succeeded", job.error
    assert job.result == {"steps": 3, "resumed_from": 0}
    assert [(m["step"], m["name"]) for m in jobs.job_metrics(store, job_id)] == [
        (1, "loss"), (2, "loss"), (3, "loss")
    ]  # fmt: skip
    log = Path(job.log_path).read_text()
    assert f"on Ray {ray_head} as {job.ray_job_id}" in log
    assert "step 3" in log and "succeeded:" in log and log.endswith("\n")
    assert _ray_status(ray_head, job.ray_job_id) == "SUCCEEDED"


@pytest.mark.slow
def test_jobs_run_concurrently(ray_head, workspace, store, test_kinds):
    """With room for two, two jobs are on the cluster at the same time."""
    ids = [jobs.enqueue(store, "steps", {"steps": 4, "step_s": 0.5}) for _ in range(2)]
    assert RayWorker(workspace, ray_head, _config(max_concurrent=2)).run() == 2
    a, b = (jobs.get_job(store, i) for i in ids)
    assert a.status == b.status == "succeeded"
    assert a.started_at < b.finished_at and b.started_at < a.finished_at


@pytest.mark.slow
def test_a_worker_with_max_jobs_one_returns_after_one_job_has_ended(
    ray_head, workspace, store, test_kinds
):
    """`curator worker --ray ... --once` (max_jobs=1) claims one job even with room for more,
    and returns once it has ended; the next job stays queued."""
    ids = [jobs.enqueue(store, "steps", {"steps": 1, "step_s": 0.05}) for _ in range(2)]
    config = _config(drain=False, max_jobs=1, max_concurrent=4)
    assert RayWorker(workspace, ray_head, config).run() == 1
    assert [jobs.get_job(store, i).status for i in ids] == ["succeeded", "queued"]


@pytest.mark.slow
def test_crashing_job_fails_with_its_error(ray_head, workspace, store, test_kinds):
    """A job that raises ends failed with the exception, its traceback in the log."""
    job_id = jobs.enqueue(store, "crasher", {"message": "kaboom"})
    RayWorker(workspace, ray_head, _config()).run()
    job = jobs.get_job(store, job_id)
    assert job.status == "failed"
    assert job.error == "RuntimeError: kaboom"
    assert "Traceback" in Path(job.log_path).read_text()
    assert _ray_status(ray_head, job.ray_job_id) == "FAILED"


@pytest.mark.slow
def test_job_that_never_starts_fails_with_rays_reason(ray_head, workspace, store, test_kinds):
    """When the runner cannot even start on the cluster, the worker ends the row from Ray's
    verdict instead of leaving it running."""
    job_id = jobs.enqueue(store, "steps", {"steps": 1})
    RayWorker(workspace, ray_head, _config(python="/nonexistent/python")).run()
    job = jobs.get_job(store, job_id)
    assert job.status == "failed"
    assert job.error.startswith("the Ray job failed:")
    assert "/nonexistent/python" in job.error


def _wait_for_runner(job_id: int, store) -> int:
    """The runner's pid, once its first line has been copied from Ray into the job's log."""
    log_path = Path(jobs.get_job(store, job_id).log_path)
    deadline = time.monotonic() + 30
    while "attempt 1 in pid" not in (log_path.read_text() if log_path.exists() else ""):
        assert time.monotonic() < deadline, "the runner never started on Ray"
        time.sleep(0.2)
    return int(log_path.read_text().split("attempt 1 in pid ")[1].split()[0])


@pytest.mark.slow
def test_cancel_stops_the_ray_job(ray_head, workspace, store, test_kinds):
    """Cancelling a running job stops its Ray job (the runner mid-step is killed, not asked)
    and the row ends cancelled."""
    job_id = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 60})
    worker = RayWorker(workspace, ray_head, _config())
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    pid = _wait_for_runner(job_id, store)
    jobs.request_cancel(store, job_id)
    thread.join(timeout=30)
    assert not thread.is_alive()
    job = jobs.get_job(store, job_id)
    assert job.status == "cancelled"
    assert job.error == "cancelled by request"
    assert _ray_status(ray_head, job.ray_job_id) == "STOPPED"
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the runner outlived its stopped Ray job"


@pytest.mark.slow
def test_stopped_worker_hands_its_jobs_back(ray_head, workspace, store, test_kinds):
    """Stopping the worker twice (a second Ctrl-C) stops its Ray jobs and leaves the rows to the
    reaper, which requeues a job with retries left, as for a local worker that died."""
    job_id = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 60}, max_retries=1)
    worker = RayWorker(workspace, ray_head, _config(drain=False))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    _wait_for_runner(job_id, store)
    ray_job_id = jobs.get_job(store, job_id).ray_job_id
    worker.stop()  # the first only drains: the job would run on
    worker.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert _ray_status(ray_head, ray_job_id) == "STOPPED"
    job = jobs.get_job(store, job_id)
    assert (job.status, job.ray_job_id) == ("running", None)
    assert jobs.reap_stale(store, stale_after_s=0) == [(job_id, "queued")]


@pytest.mark.slow
def test_a_new_worker_takes_over_the_ray_jobs_of_one_that_was_killed(
    ray_head, workspace, store, test_kinds
):
    """A Ray worker SIGKILLed mid-job leaves its job running on the cluster; the next worker
    adopts the row (no heartbeat for stale_after_s) and watches it: here it carries out a cancel,
    which only the worker watching the Ray job can."""
    job_id = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 60})
    worker = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--workspace", str(workspace.root),
         "--ray", ray_head, "--poll", "0.2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for_runner(job_id, store)
    finally:
        worker.kill()
        worker.wait()
    ray_job_id = jobs.get_job(store, job_id).ray_job_id
    time.sleep(1.5)
    successor = RayWorker(workspace, ray_head, _config(stale_after_s=1))
    thread = threading.Thread(target=successor.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while jobs.get_job(store, job_id).worker != successor.name:
        assert time.monotonic() < deadline, "the job was not adopted"
        time.sleep(0.2)
    jobs.request_cancel(store, job_id)
    thread.join(timeout=60)
    assert not thread.is_alive()
    job = jobs.get_job(store, job_id)
    assert (job.status, job.worker) == ("cancelled", successor.name)
    assert _ray_status(ray_head, ray_job_id) == "STOPPED"
    assert "took over watching" in Path(job.log_path).read_text()


def test_a_bundled_job_runs_without_the_workspace_and_reports_through_events(
    workspace, store, test_kinds, tmp_path
):
    """The process a cluster node runs gets a bundle, not the workspace: it runs the job from
    the bundle's snapshot and reports progress, metrics, checkpoints and its result as events
    on stdout, with its files written to the storage."""
    from training.bundle import build_bundle, open_bundle
    from training.remote import parse_event

    job_id = jobs.enqueue(store, "steps", {"steps": 2, "step_s": 0.01})
    job = jobs.claim_next(store, "test")
    storage = tmp_path / "storage"
    build_bundle(store, job, tmp_path / "bundle", storage=str(storage), run=f"job-{job_id}")
    assert open_bundle(tmp_path / "bundle").job["id"] == job_id
    assert str(workspace.root) not in (tmp_path / "bundle" / "job.json").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "training.remote", "--bundle", str(tmp_path / "bundle")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS_DIR)])},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    events = [e for line in done.stdout.splitlines() if (e := parse_event(line))]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "node" and kinds[-1] == "result"
    assert [e["step"] for e in events if e["type"] == "metrics"] == [1, 2]
    assert events[-1]["status"] == "succeeded"
    assert events[-1]["result"] == {"steps": 2, "resumed_from": 0}
    # no probe file: the node "cannot see" the folder, so the files came through the log
    assert {e["path"] for e in events if e["type"] == "file"} >= {"checkpoint.json"}


def test_a_job_on_a_node_cannot_open_a_workspace_store(workspace, store):
    """The node's process refuses to open any curator.db, even one it could reach."""
    code = (
        "import sqlite3, sys; from training.remote import refuse_workspace_store; "
        "refuse_workspace_store(); sqlite3.connect(sys.argv[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(workspace.db_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "never opens a workspace store" in done.stderr


def test_a_ray_job_that_dies_without_a_verdict_is_requeued_while_retries_remain(workspace, store):
    """A job whose process died with its node (Ray says FAILED, and no result came) goes back
    to the queue with its checkpoint while it has retries, and fails after."""
    job_id = jobs.enqueue(store, "reward", {}, max_retries=1)
    jobs.claim_next(store, "w")
    jobs.set_checkpoint(store, job_id, "s3://bucket/job-1/checkpoints/checkpoint-4")
    assert jobs.requeue(store, job_id, "the node died")
    job = jobs.get_job(store, job_id)
    assert (job.status, job.checkpoint_path) == (
        "queued",
        "s3://bucket/job-1/checkpoints/checkpoint-4",
    )
    jobs.claim_next(store, "w")
    assert not jobs.requeue(store, job_id, "the node died again")
    assert jobs.get_job(store, job_id).status == "failed"


@pytest.mark.parametrize(
    ("kind", "spec_gpus", "default", "process_gpus", "travelling_gpus"),
    [
        ("sft", None, None, None, None),  # nothing asked: a CPU job
        ("sft", None, 2.0, 2.0, None),  # the worker's default
        ("sft", 1, 2.0, 1.0, 1),  # the job's own setting wins
        ("dpo", 0, 2.0, None, 0),  # a job that asks for none gets none
        ("sweep", None, 1.0, None, 1.0),  # spread: the default goes to each run, not the driver
        ("features", 0.5, 1.0, None, 0.5),  # spread: its own per-shard setting travels as is
    ],
)
def test_gpus_go_to_the_job_process_or_to_each_task_of_a_kind_that_spreads(
    kind, spec_gpus, default, process_gpus, travelling_gpus
):
    from training.jobs import Job
    from training.ray_worker import place_gpus

    spec = {"dataset": "d"} | ({} if spec_gpus is None else {"num_gpus": spec_gpus})
    job = Job(id=1, kind=kind, spec=spec, status="running")
    travelling, gpus = place_gpus(job, default)
    assert gpus == process_gpus
    assert travelling.spec.get("num_gpus") == travelling_gpus
    assert job.spec == spec  # the row's own spec is left as it was
