"""Sweeps and LM judging as background jobs: run by the worker, cancelled between steps, and
continued (not restarted) when retried."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from curation.demo import build_demo
from curation.store import Store
from curation.workspace import Workspace
from routing.features import FeatureConfig, FeatureMatrix, compute_features
from routing.sweeps import sweep_blocker, sweep_info
from training import jobs
from training.kinds import JobCancelled, JobContext
from training.routing_jobs import run_sweep_job
from training.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow  # features on a 60-pair demo with the real MiniLM

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def featured(tmp_path_factory) -> Path:
    ws = Workspace(tmp_path_factory.mktemp("routing-jobs") / "ws").ensure()
    with Store.open(ws) as store:
        build_demo(store, n_pairs=60)
        compute_features(store, "demo-prefs", FeatureConfig())
    return ws.root


@pytest.fixture
def ws(featured, tmp_path, monkeypatch) -> Workspace:
    import shutil

    root = tmp_path / "ws"
    shutil.copytree(featured, root)
    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return Workspace(root)


def test_sweep_cli_in_the_background_queues_a_sweep_job_with_its_settings(ws):
    result = CliRunner().invoke(
        cli,
        ["sweep", "demo-prefs", "--eval", "demo-eval", "--runs", "8", "--kind", "linear",
         "--background", "--json", "--workspace", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["job_id"]
    with Store.open(ws) as store:
        job = jobs.get_job(store, job_id)
    assert (job.kind, job.status, job.spec["ppm_kind"]) == ("sweep", "queued", "linear")
    assert (job.spec["dataset"], job.spec["eval_dataset"]) == ("demo-prefs", "demo-eval")
    assert job.spec["config"]["runs"] == 8 and job.spec["config"]["scorer"] == "probe"


def test_a_cancelled_sweep_stops_between_runs_and_a_retry_continues_it(ws):
    with Store.open(ws) as store:
        spec = {"dataset": "demo-prefs", "eval_dataset": "demo-eval",
                "config": {"runs": 6}, "ppm_kind": "linear"}  # fmt: skip
        job_id = jobs.enqueue(store, "sweep", spec)
        job = jobs.claim_next(store, "test")
        jobs.request_cancel(store, job_id)
        with pytest.raises(JobCancelled):
            run_sweep_job(JobContext(store, ws, job), dict(job.spec))
        jobs.finish(store, job_id, "cancelled")
        sweep_id = json.loads(Path(jobs.get_job(store, job_id).checkpoint_path).read_text())[
            "sweep_id"
        ]
        assert sweep_info(store, sweep_id)["runs"] == 0  # asked to stop before the first run
        retry_id = jobs.retry(store, job_id)
    assert Worker(ws, WorkerConfig(drain=True)).run() == 1
    with Store.open(ws) as store:
        retried = jobs.get_job(store, retry_id)
        assert retried.status == "succeeded", retried.error
        assert retried.result["sweep_id"] == sweep_id
        assert sweep_info(store, sweep_id)["runs"] == 6
        assert retried.result["ppm_id"] is not None  # six runs: the predictor is fitted
        names = {m["name"] for m in jobs.job_metrics(store, retry_id)}
    assert names == {"ppm_r2", "ppm_spearman"}


def test_features_cli_in_the_background_computes_them_in_a_worker(ws):
    with Store.open(ws) as store:
        store.conn.execute("DELETE FROM features")  # as if never computed
        store.conn.commit()
    result = CliRunner().invoke(
        cli,
        ["features", "demo-prefs", "--tagger", "none", "--no-domain", "--background", "--json",
         "--workspace", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["job_id"]
    with Store.open(ws) as store:
        spec = jobs.get_job(store, job_id).spec
    assert (spec["dataset"], spec["config"]["tagger"], spec["config"]["domain"]) == (
        "demo-prefs",
        "none",
        False,
    )
    Worker(ws, WorkerConfig(drain=True)).run()
    with Store.open(ws) as store:
        job = jobs.get_job(store, job_id)
        assert job.status == "succeeded", (job.error or "") + jobs.log_tail(job)
        assert job.result["instances"] == 60
        matrix = FeatureMatrix.load(store, "demo-prefs")
    assert matrix.matrix.shape[0] == 60 and not any(n.startswith("domain") for n in matrix.names)


def test_a_sweep_is_refused_before_it_starts_where_the_data_cannot_support_one(ws):
    with Store.open(ws) as store:
        assert sweep_blocker(store, "demo-prefs") is None
        store.conn.execute(
            "DELETE FROM annotations WHERE annotator_kind = 'lm' AND instance_id IN "
            "(SELECT id FROM instances ORDER BY id LIMIT 30)"
        )
        store.conn.commit()
        store.refresh_dataset_summary("demo-prefs")
        reason = sweep_blocker(store, "demo-prefs")
    assert reason is not None and "a sweep needs at least 50" in reason


def test_judge_cli_in_the_background_labels_pairs_in_a_worker(ws, tiny_model):
    result = CliRunner().invoke(
        cli,
        ["judge", "demo-prefs", "--model", str(tiny_model), "--limit", "4", "--name", "tiny",
         "--background", "--workspace", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = int(result.output.strip())
    Worker(ws, WorkerConfig(drain=True)).run()
    with Store.open(ws) as store:
        job = jobs.get_job(store, job_id)
        assert job.status == "succeeded", job.error + jobs.log_tail(job)
        assert job.result["judged"] == 4
        n = store.conn.execute(
            "SELECT count(*) FROM annotations WHERE annotator = 'tiny'"
        ).fetchone()[0]
    assert n == 4
    assert os.environ["CURATOR_NO_AUTO_WORKER"] == "1"


def test_a_reward_model_sweep_trains_a_real_reward_model_per_run(ws):
    """`--scorer reward_model`: each run trains MiniLM with TRL's RewardTrainer on the split's
    labels and scores it on the eval set; the runs then feed the predictor like probe runs."""
    refused = CliRunner().invoke(
        cli, ["sweep", "demo-prefs", "--eval", "demo-eval", "--scorer", "reward_model",
              "--workspace", str(ws.root)],
    )  # fmt: skip
    assert refused.exit_code != 0 and "--background" in refused.output
    result = CliRunner().invoke(
        cli,
        ["sweep", "demo-prefs", "--eval", "demo-eval", "--runs", "1", "--scorer", "reward_model",
         "--reward-steps", "1", "--background", "--json", "--workspace", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["job_id"]
    with Store.open(ws) as store:  # short texts keep the test quick; the CLI gave the rest
        spec = jobs.get_job(store, job_id).spec
        assert spec["reward"] == {"max_steps": 1}
        with store.write():
            store.conn.execute(
                "UPDATE jobs SET spec = ? WHERE id = ?",
                (json.dumps(spec | {"reward": {"max_steps": 1, "max_length": 48}}), job_id),
            )
    Worker(ws, WorkerConfig(drain=True)).run()
    with Store.open(ws) as store:
        job = jobs.get_job(store, job_id)
        assert job.status == "succeeded", (job.error, jobs.log_tail(job))
        assert job.result["ppm_id"] is None and "too few" in job.result["note"]
        info = sweep_info(store, job.result["sweep_id"])
        assert info["runs"] == 1 and info["config"]["scorer"] == "reward_model"
        rows = store.conn.execute(
            "SELECT score, details FROM sweep_runs WHERE sweep_id = ?", (info["id"],)
        ).fetchall()
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert all(json.loads(r["details"])["n_train"] > 0 for r in rows)
    assert all(json.loads(r["details"])["categories"] for r in rows)


class NodeContext(JobContext):
    """A job's context whose store is a snapshot made for the attempt, as on a cluster's node
    (training.remote.RemoteJobContext): what it leaves in the store is lost with the node."""

    @property
    def store_is_snapshot(self) -> bool:
        return True


def _sweep_rows(store, sweep_id: int) -> list[tuple]:
    rows = store.conn.execute(
        "SELECT human_ids, feature_vector, score, details FROM sweep_runs WHERE sweep_id = ? "
        "ORDER BY id", (sweep_id,)
    ).fetchall()  # fmt: skip
    return [(r["human_ids"], r["feature_vector"], r["score"], json.loads(r["details"])["seconds"])
            for r in rows]  # fmt: skip


def test_a_sweep_retried_after_its_node_died_replays_the_checkpointed_runs(ws, monkeypatch):
    """On a node the sweep's runs live in a snapshot store, so its checkpoint carries each scored
    run. A retry makes a new sweep, replays the checkpointed runs on the same splits (drawn again
    from the seed) and scores only the rest: its rows equal a sweep that never stopped."""
    import training.routing_jobs as routing_jobs

    monkeypatch.setattr(routing_jobs, "SWEEP_CHECKPOINT_S", 0.0)  # a checkpoint after each run
    spec = {"dataset": "demo-prefs", "eval_dataset": "demo-eval", "config": {"runs": 6},
            "ppm_kind": "linear"}  # fmt: skip
    with Store.open(ws) as store:
        first = jobs.enqueue(store, "sweep", spec)
        job = jobs.claim_next(store, "node")
        whole = run_sweep_job(NodeContext(store, ws, job), dict(job.spec))
        state = json.loads(Path(jobs.get_job(store, first).checkpoint_path).read_text())
        assert state["snapshot"] is True and len(state["runs"]) == 6
        # the node died after three runs: its store (here: this sweep's rows) is gone
        half = Path(ws.root) / "half.json"
        marked = [run | {"seconds": 123.0} for run in state["runs"][:3]]  # seen if replayed
        half.write_text(json.dumps(state | {"runs": marked}))
        second = jobs.enqueue(store, "sweep", spec)
        job = jobs.claim_next(store, "other node")
        job.checkpoint_path = str(half)
        messages: list[str] = []

        class Watched(NodeContext):
            def progress(self, fraction, message=None):
                messages.append(message or "")

        again = run_sweep_job(Watched(store, ws, job), dict(job.spec))
        assert again["sweep_id"] != whole["sweep_id"] and again["runs"] == 6
        before, after = _sweep_rows(store, whole["sweep_id"]), _sweep_rows(store, again["sweep_id"])
    assert "3 runs replayed from the checkpoint" in messages
    assert [row[:3] for row in after] == [row[:3] for row in before]  # same splits, same scores
    # the first three were replayed, not trained again; the rest were
    assert [row[3] for row in after[:3]] == [123.0] * 3
    assert all(row[3] < 123.0 for row in after[3:])
    assert second != first
