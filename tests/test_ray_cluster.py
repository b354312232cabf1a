"""Jobs on a real two-node Ray cluster on one machine, where the second node cannot see the
workspace: a head of our own, and a node started in its own mount namespace (``unshare -m``) with
a tmpfs over the workspace's parent folder and a custom resource (``far``) the jobs ask for.

Everything a job needs travels in its bundle and everything it makes comes back through its log
and the storage; the tests skip, saying why, where Ray, ``unshare`` or mount namespaces are not
available.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import free_port, session_processes
from typer.testing import CliRunner

from app.cli import cli
from curation.demo import build_demo
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.ray_worker import RayWorker, RayWorkerConfig
from training.runs import run_for_job

pytestmark = pytest.mark.slow  # real Ray nodes and real models

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
RAY = Path(sys.executable).parent / "ray"
FAR = {"far": 1.0}
# A tiny model's whole vocabulary (tests/tiny_models.py): with A and B, it can answer as a judge.
WORDS = ["<pad>", "<unk>", "<s>", "</s>", "user", "assistant", ":", "the", "a", "is", "A", "B"]


def _kill_session(
    proc: subprocess.Popen, grace_s: float = 3, signals=(signal.SIGTERM, signal.SIGKILL)
) -> None:
    pids = session_processes(proc.pid)
    for sig in signals:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _node_ports() -> list[str]:
    flags = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
             "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
             "--runtime-env-agent-port")  # fmt: skip
    return [x for flag in flags for x in (flag, str(free_port()))]


def _why_no_namespaces() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare command"
    if sys.platform != "linux":
        return "mount namespaces are Linux only"
    probe = tempfile.mkdtemp(prefix="ns")
    try:
        done = subprocess.run(
            ["unshare", "-rm", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs none {probe} && echo ok"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if done.returncode != 0 or "ok" not in done.stdout:
        return f"user/mount namespaces refused: {done.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(dashboard address, workspace): a head, and a far node that sees an empty tmpfs where
    the workspace's parent folder is. Torn down by killing only these two sessions."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError:
        pytest.skip("ray not installed (the cluster extra: make cluster)")
    why = _why_no_namespaces()
    if why:
        print(f"\nSKIPPING the multi-node Ray tests: {why}", file=sys.stderr)
        pytest.skip(f"cannot start a node that hides the workspace: {why}")
    hidden = tmp_path_factory.mktemp("hidden")  # the far node sees an empty folder here
    workspace = Workspace(hidden / "ws").ensure()
    with Store.open(workspace) as store:
        build_demo(store, n_pairs=60)
    (hidden / "secret.txt").write_text("only the head's machine sees this")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # unix socket paths stay short
    gcs_port, dashboard_port = free_port(), free_port()
    env = os.environ | {"RAY_health_check_period_ms": "1000",
                        "RAY_health_check_failure_threshold": "3"}  # fmt: skip
    head_cmd = [str(RAY), "start", "--head", "--block", "--port", str(gcs_port),
                "--dashboard-port", str(dashboard_port), "--dashboard-host", "127.0.0.1",
                "--include-dashboard", "true", "--temp-dir", temp_dir,
                "--disable-usage-stats", "--num-cpus", "1",
                "--object-store-memory", str(100 * 1024**2),
                "--ray-client-server-port", str(free_port()), *_node_ports()]  # fmt: skip
    logs = Path(temp_dir)
    head_log = open(logs / "head.log", "wb")  # noqa: SIM115 - open for the whole module
    head = subprocess.Popen(head_cmd, stdout=head_log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=env)  # fmt: skip
    far = None
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        _wait(lambda: _reachable(JobSubmissionClient, address), 60, "the Ray head",
              head, logs / "head.log")  # fmt: skip
        far_cmd = " ".join([
            f"mount -t tmpfs none {hidden} &&", "exec", str(RAY), "start", "--block",
            "--address", f"127.0.0.1:{gcs_port}", "--num-cpus", "2",
            "--resources", "'" + json.dumps(FAR) + "'",
            "--object-store-memory", str(100 * 1024**2), "--disable-usage-stats", *_node_ports(),
        ])  # fmt: skip
        far_log = open(logs / "far.log", "wb")  # noqa: SIM115
        far = subprocess.Popen(
            ["unshare", "-rm", "--propagation", "private", "sh", "-c", far_cmd],
            stdout=far_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )  # fmt: skip
        client = JobSubmissionClient(address)
        # The far node is up once a job pinned to it runs; it must not see the workspace.
        probe = client.submit_job(
            entrypoint=f"echo entries=$(ls -A {hidden} | wc -l) store=$(test -e {workspace.db_path} "
            "&& echo seen || echo hidden)",
            entrypoint_resources=FAR,
        )  # fmt: skip
        _wait(lambda: str(client.get_job_status(probe)) in ("SUCCEEDED", "FAILED"), 90,
              "the far node", far, logs / "far.log")  # fmt: skip
        seen = client.get_job_logs(probe)
        assert "entries=0 store=hidden" in seen, seen
        yield Cluster(address, workspace, far)
    finally:
        if far is not None:
            _kill_session(far)
        _kill_session(head)
        head_log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class Cluster:
    address: str
    workspace: Workspace
    far: subprocess.Popen  # the far node's session (the node-death test ends it)


def _reachable(client_cls, address: str) -> bool:
    try:
        client_cls(address)
        return True
    except Exception:
        return False


def _wait(check, timeout_s: float, what: str, proc=None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-2000:] if log else ''}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not come up in {timeout_s}s")
        time.sleep(0.5)


@pytest.fixture
def test_kinds(monkeypatch):
    """The queue's test kinds, here and on the nodes (PYTHONPATH and the plugin travel)."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("CURATOR_JOB_PLUGINS", "job_kinds")
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))


def _worker(address: str, workspace: Workspace, **overrides) -> RayWorker:
    values = dict(poll_s=0.2, heartbeat_s=0.5, log_s=0.5, drain=True, stop_wait_s=20,
                  resources=FAR)  # fmt: skip
    return RayWorker(workspace, address, RayWorkerConfig(**(values | overrides)))


def _far_node_id(address: str) -> str:
    from ray.util.state import list_nodes

    nodes = list_nodes(address=address, detail=True)
    return next(n.node_id for n in nodes if n.resources_total.get("far"))


def test_a_reward_job_trains_on_the_far_node_and_its_model_comes_back(cluster, tmp_path):
    """A reward model trains on a node that cannot see the workspace; its metrics, checkpoints,
    run and model files arrive in the workspace, and `jobs show` names the node and the URI."""
    from tiny_models import save_tiny_llama

    address, workspace = cluster.address, cluster.workspace
    base = save_tiny_llama(tmp_path / "tiny", WORDS)
    with Store.open(workspace) as store:
        job_id = jobs.enqueue(store, "reward", {
            "dataset": "demo-prefs", "labels": "gold", "base_model": str(base),
            "max_steps": 2, "batch_size": 4, "max_length": 32, "save_steps": 1,
            "precision": "fp32", "eval_fraction": 0.2, "logging_steps": 1,
        })  # fmt: skip
    started = time.monotonic()
    assert _worker(address, workspace).run() == 1
    with Store.open(workspace) as store:
        job = jobs.get_job(store, job_id)
        assert job.status == "succeeded", (job.error, Path(job.log_path).read_text()[-3000:])
        assert {m["name"] for m in jobs.job_metrics(store, job_id)} >= {"loss"}
        run = run_for_job(store, job_id)
    assert job.node == _far_node_id(address)
    assert job.artifact_uri == str(workspace.root / "runs" / f"job-{job_id}")
    assert job.checkpoint_path.startswith(job.artifact_uri + "/checkpoints/checkpoint-")
    assert Path(job.checkpoint_path, "trainer_state.json").is_file()
    assert run is not None and run.artifact_path == f"{job.artifact_uri}/model"
    assert run.base_model == str(base)  # the reference, not the bundle's copy
    assert job.result["run_id"] == run.id
    assert (Path(run.artifact_path) / "model.safetensors").is_file()
    assert (Path(run.artifact_path) / "README.md").is_file()
    assert "through the job's log" in Path(job.log_path).read_text()
    shown = CliRunner().invoke(
        cli, ["jobs", "show", str(job_id), "--json", "--workspace", str(workspace.root)]
    )
    report = json.loads(shown.output)
    assert (report["node"], report["artifact_uri"]) == (job.node, job.artifact_uri)
    print(f"reward job on the far node: {time.monotonic() - started:.1f}s")


def test_features_then_a_probe_sweep_run_on_the_far_node(cluster):
    """A features job and a sweep job run where the workspace is not: the features, the
    sweep's runs and its predictor (with its model file) land in the workspace's store."""
    from routing.features import FeatureMatrix
    from routing.sweeps import sweep_info

    address, workspace = cluster.address, cluster.workspace
    with Store.open(workspace) as store:
        features = jobs.enqueue(store, "features", {"dataset": "demo-prefs", "config": {}})
    assert _worker(address, workspace).run() == 1
    with Store.open(workspace) as store:  # a job's snapshot is taken when it is claimed
        sweep = jobs.enqueue(store, "sweep", {
            "dataset": "demo-prefs", "eval_dataset": "demo-eval",
            "config": {"runs": 6}, "ppm_kind": "linear",
        })  # fmt: skip
    assert _worker(address, workspace).run() == 1
    with Store.open(workspace) as store:
        done = jobs.get_job(store, features)
        assert done.status == "succeeded", (done.error, Path(done.log_path).read_text()[-3000:])
        assert done.result["instances"] == 60
        assert (done.result["pool"], done.result["shards"]) == ("ray", 1)  # 60 pairs: one shard
        assert FeatureMatrix.load(store, "demo-prefs").matrix.shape[0] == 60
        swept = jobs.get_job(store, sweep)
        assert swept.status == "succeeded", (swept.error, Path(swept.log_path).read_text()[-3000:])
        assert sweep_info(store, swept.result["sweep_id"])["runs"] == 6
        ppm = store.conn.execute(
            "SELECT sweep_id, path FROM ppms WHERE id = ?", (swept.result["ppm_id"],)
        ).fetchone()
    assert ppm["sweep_id"] == swept.result["sweep_id"]
    assert (workspace.root / "models" / ppm["path"]).is_file()


def test_a_reward_model_sweep_spreads_its_runs_as_ray_tasks(cluster, tmp_path):
    """`--scorer reward_model` on the cluster: the job hands each run to a Ray task (a reward
    model trained wherever Ray places it, from the base model its bundle carries), and the runs
    come back to the workspace's sweep in the order they were drawn."""
    from tiny_models import save_tiny_llama

    from routing.features import compute_features
    from routing.sweeps import sweep_info

    address, workspace = cluster.address, cluster.workspace
    base = save_tiny_llama(tmp_path / "tiny", WORDS)
    with Store.open(workspace) as store:
        if not store.conn.execute("SELECT 1 FROM features LIMIT 1").fetchone():
            compute_features(store, "demo-prefs")
        job_id = jobs.enqueue(store, "sweep", {
            "dataset": "demo-prefs", "eval_dataset": "demo-eval", "ppm_kind": "linear",
            "config": {"runs": 3, "scorer": "reward_model"},
            "reward": {"base_model": str(base), "max_steps": 1, "batch_size": 4,
                       "max_length": 32, "precision": "fp32"},
        })  # fmt: skip
    assert _worker(address, workspace).run() == 1
    with Store.open(workspace) as store:
        job = jobs.get_job(store, job_id)
        assert job.status == "succeeded", (job.error, Path(job.log_path).read_text()[-3000:])
        info = sweep_info(store, job.result["sweep_id"])
        details = [json.loads(r["details"]) for r in store.conn.execute(
            "SELECT details FROM sweep_runs WHERE sweep_id = ? ORDER BY id", (info["id"],))]  # fmt: skip
    assert job.result["spread_over"] == "ray tasks"
    assert info["runs"] == 3 and info["config"]["scorer"] == "reward_model"
    assert all(d["n_train"] > 0 and d["categories"] for d in details)
    assert job.node == _far_node_id(address)  # the job's own process; its tasks go anywhere


def test_a_judge_sft_and_dpo_job_run_on_the_far_node(cluster, tmp_path):
    """The other kinds on a node that cannot see the workspace: a judge whose model is a local
    folder (carried in the bundle), an SFT and a DPO fine-tune; their labels and runs arrive,
    naming the model by its reference, not the bundle's copy."""
    from tiny_models import save_tiny_llama

    address, workspace = cluster.address, cluster.workspace
    base = save_tiny_llama(tmp_path / "tiny", WORDS)
    tune = {"base_model": str(base), "max_steps": 1, "batch_size": 2, "max_length": 32,
            "precision": "fp32", "limit": 4, "logging_steps": 1}  # fmt: skip
    with Store.open(workspace) as store:
        judged = jobs.enqueue(store, "judge", {
            "dataset": "demo-prefs", "name": "tiny", "model": str(base), "limit": 4,
            "engine": "auto",
        })  # fmt: skip
        sft = jobs.enqueue(store, "sft", tune | {"dataset": "demo-sft", "eval_sets": []})
        dpo = jobs.enqueue(store, "dpo", tune | {"dataset": "demo-prefs", "eval_fraction": 0.25})
    assert _worker(address, workspace, max_concurrent=3).run() == 3
    with Store.open(workspace) as store:
        done = {i: jobs.get_job(store, i) for i in (judged, sft, dpo)}
        for job in done.values():
            assert job.status == "succeeded", (job.kind, job.error,
                                               Path(job.log_path).read_text()[-3000:])  # fmt: skip
        labels = store.conn.execute(
            "SELECT count(*) FROM annotations WHERE annotator_kind = 'lm' AND annotator = ?",
            ("tiny",),
        ).fetchone()[0]
        model = store.conn.execute("SELECT model FROM judges WHERE name = 'tiny'").fetchone()[0]
        runs = {i: run_for_job(store, i) for i in (sft, dpo)}
    assert done[judged].result["judged"] == 4 and labels == 4
    assert done[judged].result["engine"] == "transformers"  # no GPU on these nodes
    assert done[judged].result["spread_over"] == "ray tasks"
    assert model == str(base)
    assert {job.node for job in done.values()} == {_far_node_id(address)}
    for run in runs.values():
        assert run.base_model == str(base)
        assert (Path(run.artifact_path) / "config.json").is_file()


def test_cancel_stops_the_job_on_the_far_node(cluster, test_kinds):
    """A cancel stops the Ray job on the far node; the row ends cancelled."""
    from ray.job_submission import JobSubmissionClient

    address, workspace = cluster.address, cluster.workspace
    with Store.open(workspace) as store:
        job_id = jobs.enqueue(store, "steps", {"steps": 3, "step_s": 60})
    worker = _worker(address, workspace)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    with Store.open(workspace) as store:
        _wait(lambda: "attempt 1 in pid" in _log(store, job_id), 60, "the job")
        jobs.request_cancel(store, job_id)
        thread.join(timeout=60)
        assert not thread.is_alive()
        job = jobs.get_job(store, job_id)
    assert (job.status, job.error) == ("cancelled", "cancelled by request")
    assert str(JobSubmissionClient(address).get_job_status(job.ray_job_id)) == "STOPPED"


def _log(store, job_id: int) -> str:
    path = Path(jobs.get_job(store, job_id).log_path)
    return path.read_text() if path.exists() else ""


def test_a_sigkilled_worker_is_taken_over_and_each_event_applied_once(cluster, test_kinds):
    """A worker SIGKILLed while its job runs on the far node: the next one adopts the job,
    reads its log on from where the first stopped, and the job succeeds with every metric
    recorded exactly once."""
    address, workspace = cluster.address, cluster.workspace
    with Store.open(workspace) as store:
        job_id = jobs.enqueue(store, "steps", {"steps": 8, "step_s": 1.0})
    first = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker", "--workspace", str(workspace.root),
         "--ray", address, "--poll", "0.2", "--resources", json.dumps(FAR)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with Store.open(workspace) as store:
            _wait(lambda: jobs.get_job(store, job_id).progress >= 0.25, 90, "the first steps")
    finally:
        first.kill()
        first.wait()
    time.sleep(1.2)
    assert _worker(address, workspace, stale_after_s=1).run() == 1
    with Store.open(workspace) as store:
        job = jobs.get_job(store, job_id)
        metrics = jobs.job_metrics(store, job_id)
    assert job.status == "succeeded", job.error
    assert [m["step"] for m in metrics] == list(range(1, 9))
    assert "took over watching" in Path(job.log_path).read_text()


def test_a_job_whose_node_dies_is_requeued_and_resumes_from_its_checkpoint(cluster, test_kinds):
    """Last, as it takes the far node down: a job on a node that dies is requeued (it has a
    retry left) with its last checkpoint, which is in the storage; its retry, on another node,
    resumes from that checkpoint instead of starting over."""
    address, workspace = cluster.address, cluster.workspace
    with Store.open(workspace) as store:
        # retries to spare: the worker may claim the requeued job again (for a node that is
        # gone) before the test stops it, which spends one
        job_id = jobs.enqueue(store, "steps", {"steps": 16, "step_s": 1.0}, max_retries=3)
    worker = _worker(address, workspace, drain=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with Store.open(workspace) as store:
            _wait(lambda: (jobs.get_job(store, job_id).checkpoint_path or "").endswith(
                "checkpoint.json"), 90, "a checkpoint")  # fmt: skip
            _kill_session(
                cluster.far, grace_s=0, signals=(signal.SIGKILL,)
            )  # the node dies: no goodbye
            _wait(lambda: jobs.get_job(store, job_id).status == "queued"
                  or jobs.get_job(store, job_id).attempts > 1, 90, "the requeue")  # fmt: skip
            job = jobs.get_job(store, job_id)
    finally:
        worker.stop()
        worker.stop()
        thread.join(timeout=60)
    assert "requeued" in (job.message or "") or job.attempts > 1
    assert Path(job.checkpoint_path).is_file()  # in the workspace's runs/: a retry resumes
    # The retry runs where it can (the head: the far node is gone) and goes on from there.
    time.sleep(1.5)  # a row the stopped worker still held is stale by then, and requeued
    with Store.open(workspace) as store:
        before = jobs.get_job(store, job_id)
    assert _worker(address, workspace, resources={}, stale_after_s=1).run() == 1, (
        before.status, before.attempts, before.message, before.error)  # fmt: skip
    with Store.open(workspace) as store:
        retried = jobs.get_job(store, job_id)
    assert retried.status == "succeeded", retried.error
    assert retried.result["steps"] == 16 and retried.result["resumed_from"] > 0
    assert "resuming from" in Path(retried.log_path).read_text()
