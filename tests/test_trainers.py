"""Real tiny end-to-end runs of the three trainers on CPU: queued jobs run by the real worker in
their own process, with their metrics, checkpoints, model cards, runs and evaluations checked, and
the saved models loaded back. A cancelled job resumes from its checkpoint when retried. A MiniLM
reward model trained on part of Anthropic's hh-rlhf harmless test set beats chance on the rest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from curation.demo import build_demo
from curation.mixtures import build_mixture, parse_spec, resolve_mixture
from curation.records import Annotation, Instance
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.dpo import DPOTrainConfig
from training.reward import RewardTrainConfig
from training.runs import run_for_job
from training.sft import SFTTrainConfig
from training.worker import Worker, WorkerConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Workspace:
    """A workspace with the simulated demo datasets (a small preference set)."""
    workspace = Workspace(tmp_path_factory.mktemp("trainers") / "ws").ensure()
    with Store.open(workspace) as store:
        build_demo(store, n_pairs=48)
        # a 3-per-subset sample of demo-eval, so scoring it takes a second, not ten
        kept, per_subset = [], {}
        for _, instance in store.iter_instances("demo-eval"):
            per_subset[instance.subset] = per_subset.get(instance.subset, 0) + 1
            if per_subset[instance.subset] <= 3:
                kept.append(instance)
        small = store.create_dataset("demo-eval-small", "eval")
        store.insert_instances(small["id"], kept)
    return workspace


@pytest.fixture
def demo_store(demo_ws):
    with Store.open(demo_ws) as store:
        yield store


def _run_queue(workspace: Workspace) -> None:
    Worker(workspace, WorkerConfig(drain=True, poll_s=0.1, heartbeat_s=0.5)).run()


def _succeeded(store: Store, job_id: int) -> jobs.Job:
    job = jobs.get_job(store, job_id)
    assert job.status == "succeeded", f"{job.error}\n{jobs.log_tail(job)}"
    return job


def _steps(store: Store, job_id: int, name: str = "loss") -> list[int]:
    return [m["step"] for m in jobs.job_metrics(store, job_id) if m["name"] == name]


def test_reward_model_job_trains_evaluates_and_judges(demo_ws, demo_store):
    """A reward job run by the worker streams its loss, checkpoints, writes a model card and a
    run with its RewardBench score, and registers a judge that labels pairs (resumably)."""
    from training.reward import RewardScorer, RewardTrainConfig
    from training.reward_judge import label_with_reward_model
    from training.runs import run_for_job

    config = RewardTrainConfig(
        dataset="demo-prefs",
        max_steps=3,
        batch_size=4,
        max_length=64,
        logging_steps=1,
        save_steps=2,
        eval_set="demo-eval-small",
        register_as_judge="rm-demo",
    )
    job_id = jobs.enqueue(demo_store, "reward", config.validate().to_spec())
    _run_queue(demo_ws)
    job = _succeeded(demo_store, job_id)
    assert _steps(demo_store, job_id) == [1, 2, 3]
    assert Path(job.checkpoint_path).name == "checkpoint-3"
    assert (Path(job.checkpoint_path) / "trainer_state.json").is_file()

    run = run_for_job(demo_store, job_id)
    assert job.result["run_id"] == run.id and run.base_model == "all-minilm-l6-v2"
    assert run.config["max_steps"] == 3 and run.config["data"]["dataset"] == "demo-prefs"
    assert run.metrics["global_step"] == 3 and run.metrics["train_loss"] > 0
    assert 0 <= run.evaluation["held_out"]["accuracy"] <= 1
    score = run.evaluation["rewardbench:demo-eval-small"]
    assert score["n"] == 36
    assert set(score["categories"]) == {
        "chat",
        "chat-hard",
        "safety",
        "reasoning",
    }
    card = (Path(run.artifact_path) / "README.md").read_text()
    assert "base_model: all-minilm-l6-v2" in card and "demo-prefs" in card
    assert "## Evaluation" in card and "### rewardbench:demo-eval-small" in card

    scorer = RewardScorer.load(run.artifact_path)
    assert scorer.max_length == 64  # read back from the run's info beside the weights
    rewards = scorer.score([[{"role": "user", "content": "Hi"}]] * 2, ["Hello!", "Go away."])
    assert rewards.shape == (2,) and rewards[0] != rewards[1]

    first = label_with_reward_model(demo_store, "demo-prefs", "rm-demo", limit=10)
    again = label_with_reward_model(demo_store, "demo-prefs", "rm-demo", limit=10)
    assert (first["judged"], again["skipped_done"]) == (10, 10)
    label = demo_store.conn.execute(
        "SELECT * FROM annotations WHERE annotator = 'rm-demo' LIMIT 1"
    ).fetchone()
    probs = json.loads(label["probs"])
    assert label["annotator_kind"] == "lm" and label["origin"] == "reward_model"
    assert probs[0] + probs[1] == pytest.approx(1) and label["confidence"] == max(probs)


def test_a_cancelled_job_resumes_from_its_checkpoint_when_retried(demo_ws, demo_store):
    """Cancelling a running trainer saves a checkpoint; the retried job continues at that global
    step instead of starting over."""
    from training import runner
    from training.reward import RewardTrainConfig

    config = RewardTrainConfig(
        dataset="demo-prefs", max_steps=3, batch_size=4, max_length=32, logging_steps=1
    )
    job_id = jobs.enqueue(demo_store, "reward", config.validate().to_spec())
    assert jobs.claim_next(demo_store, "test").id == job_id
    jobs.request_cancel(demo_store, job_id)  # noticed at the end of the first step
    runner.run(str(demo_ws.root), job_id)
    cancelled = jobs.get_job(demo_store, job_id)
    assert cancelled.status == "cancelled"
    assert Path(cancelled.checkpoint_path).name == "checkpoint-1"

    retry_id = jobs.retry(demo_store, job_id)
    assert jobs.claim_next(demo_store, "test").id == retry_id
    runner.run(str(demo_ws.root), retry_id)
    retried = _succeeded(demo_store, retry_id)
    assert retried.result["metrics"]["resumed_from_step"] == 1
    assert retried.result["metrics"]["global_step"] == 3
    assert _steps(demo_store, retry_id) == [2, 3]


def test_sft_job_fine_tunes_smollm2_with_lora(demo_ws, demo_store, smollm2_workspace):
    """An SFT job (LoRA on the converted SmolLM2) trains, saves a merged model that generates,
    and records held-out loss and a refusal suite on the demo safety prompts."""
    from routing.models import DEFAULT_MODEL, default_model_dir
    from training.evaluate import Generator, evaluate_generative
    from training.runs import run_for_job
    from training.sft import SFTTrainConfig
    from training.trainer_base import resolve_base_model

    base_dir = default_model_dir(smollm2_workspace)
    assert resolve_base_model("sft", None, smollm2_workspace) == (str(base_dir), DEFAULT_MODEL)
    config = SFTTrainConfig(
        dataset="demo-sft",
        base_model=str(base_dir),
        limit=8,
        max_steps=2,
        batch_size=2,
        max_length=64,
        logging_steps=1,
        eval_sets=("safety:demo-safety",),
        eval_limit=2,
        max_new_tokens=8,
    )
    job_id = jobs.enqueue(demo_store, "sft", config.validate().to_spec())
    _run_queue(demo_ws)
    job = _succeeded(demo_store, job_id)
    assert _steps(demo_store, job_id) == [1, 2]
    assert Path(job.checkpoint_path).name == "checkpoint-2"

    run = run_for_job(demo_store, job_id)
    model_dir = Path(run.artifact_path)
    assert run.kind == "sft" and run.metrics["eval_loss"] == run.evaluation["heldout"]["loss"]
    assert run.evaluation["safety"]["n_unsafe"] + run.evaluation["safety"]["n_safe"] == 2
    assert not (model_dir / "adapter_config.json").exists()  # LoRA merged: a plain HF folder
    assert "LoRA r=16" in (model_dir / "README.md").read_text()
    generator = Generator.load(model_dir)
    (text,) = generator.generate(["Say hello."], max_new_tokens=4)
    assert isinstance(text, str)

    # evaluated again later: the held-out split is rebuilt from the run's recorded config
    later = evaluate_generative(
        demo_store, run.id, ("heldout", "safety:demo-safety"), limit=4, max_new_tokens=4
    )
    assert later["heldout"]["examples"] > run.evaluation["heldout"]["examples"]  # no cap of 2
    assert run_for_job(demo_store, job_id).evaluation["safety"]["n_safe"] >= 1


def test_dpo_job_trains_with_the_length_normalised_loss(demo_ws, demo_store, smollm2_workspace):
    """A DPO job (Tulu 3's length-normalised loss and beta, LoRA on SmolLM2) trains and reports
    the implicit-reward metrics on held-out pairs."""
    from routing.models import default_model_dir
    from training.dpo import DPOTrainConfig
    from training.evaluate import Generator
    from training.runs import run_for_job

    config = DPOTrainConfig(
        dataset="demo-prefs",
        base_model=str(default_model_dir(smollm2_workspace)),
        loss_type="sigmoid_norm",
        beta=5.0,
        limit=4,
        eval_fraction=0.05,
        max_steps=2,
        batch_size=2,
        max_length=64,
        logging_steps=1,
    )
    job_id = jobs.enqueue(demo_store, "dpo", config.validate().to_spec())
    _run_queue(demo_ws)
    _succeeded(demo_store, job_id)
    assert _steps(demo_store, job_id) == [1, 2]
    assert _steps(demo_store, job_id, "rewards/accuracies") == [1, 2]
    run = run_for_job(demo_store, job_id)
    held = run.evaluation["held_out_pairs"]
    assert 0 <= held["rewards/accuracies"] <= 1 and held["loss"] > 0
    assert run.config["loss_type"] == "sigmoid_norm" and run.config["beta"] == 5.0
    (text,) = Generator.load(run.artifact_path).generate(["Hi"], max_new_tokens=2)
    assert isinstance(text, str)


def test_jobs_on_a_mixture_edited_after_its_build_fail_and_leave_the_store_consistent(
    workspace, store
):
    """SFT, DPO and reward jobs on a mixture whose data.jsonl was edited behind the store's back
    fail before any training, with the stored and the found hash in their error; no run or model
    is written and the mixture's stored version is as built."""
    dataset = store.create_dataset("prefs", "preference")
    ids = store.insert_instances(
        dataset["id"],
        [Instance(uid=f"p{i}", prompt=f"prompt {i}", response_a=f"A{i}", response_b=f"B{i}")
         for i in range(6)],
    )  # fmt: skip
    store.add_annotations((i, Annotation("human", "ann", overall=-2)) for i in ids)
    spec = parse_spec({"name": "mix", "kind": "preference", "sources": {"prefs": 1.0}})
    built = build_mixture(store, spec)
    stored = built.mixture["content_hash"]
    path = Path(built.mixture["path"]) / "data.jsonl"
    edited = path.read_bytes().replace(b'"chosen":"A0"', b'"chosen":"edited reply"')
    path.write_bytes(edited)
    found = "sha256:" + hashlib.sha256(edited).hexdigest()
    assert found != stored

    # No model is ever loaded: the data is refused first (were it not, the job would fail on
    # this missing base model, without the hashes in its error).
    tiny = {"mixture": built.ref, "base_model": str(workspace.root / "no-model"), "max_steps": 1}
    configs = {
        "sft": SFTTrainConfig(**tiny),
        "dpo": DPOTrainConfig(**tiny),
        "reward": RewardTrainConfig(**tiny),
    }
    job_ids = {
        kind: jobs.enqueue(store, kind, c.validate().to_spec()) for kind, c in configs.items()
    }
    _run_queue(workspace)
    for kind, job_id in job_ids.items():
        job = jobs.get_job(store, job_id)
        assert (job.status, job.finished_at is not None) == ("failed", True), (kind, job.error)
        assert "no longer matches its content hash" in job.error, (kind, job.error)
        assert f"(expected {stored}, found {found})" in job.error, (kind, job.error)
        assert run_for_job(store, job_id) is None
        assert not (workspace.root / "runs" / f"job-{job_id}" / "model").exists()
    assert store.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    assert resolve_mixture(store, built.ref)["content_hash"] == stored
    assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.realdata
def test_reward_model_learns_hh_rlhf_harmlessness(shared_data, tmp_path, store):
    """A MiniLM reward model trained on 480 pairs of hh-rlhf harmless-base (test split) ranks the
    less harmful reply first on ~400 held-out pairs well above chance (n=400: 0.54 is 1.6
    standard errors above 0.5; seeds 0, 1 and 2 measured 0.62, 0.61 and 0.56 here)."""
    from curation.importer import ImportOptions, import_path
    from training.reward import RewardTrainConfig, train_reward
    from training.trainer_base import LocalContext

    source = shared_data / "hh_rlhf_harmless_test" / "harmless-base_test.jsonl.gz"
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        rows = [next(handle) for _ in range(880)]
    subset = tmp_path / "hh-880.jsonl"
    subset.write_text("".join(rows))
    report = import_path(store, subset, ImportOptions(dataset="hh", preset="hh-rlhf"))
    assert report.instances == 880

    config = RewardTrainConfig(
        dataset="hh",
        labels="human",
        batch_size=16,
        max_length=64,
        learning_rate=3e-4,
        epochs=1,
        limit=480,
        eval_fraction=400 / 880,
        save_steps=1000,
        logging_steps=10,
    )
    result = train_reward(LocalContext.create(store, "hh"), config)
    held_out = result["evaluation"]["held_out"]
    assert result["data"]["train"] <= 480 and held_out["n"] >= 395  # 2 rows lack a reply
    assert held_out["accuracy"] > 0.54, held_out


def test_settings_mistakes_fail_before_training_with_a_clear_message(demo_store):
    """A base model that cannot be found or an eval set that is not one is a curator's error,
    raised before any training time is spent."""
    from curation.errors import CuratorError
    from training.reward import RewardTrainConfig, train_reward
    from training.trainer_base import LocalContext

    ctx = LocalContext.create(demo_store, "mistakes")
    with pytest.raises(CuratorError, match="cannot load the base model's tokenizer"):
        train_reward(ctx, RewardTrainConfig(dataset="demo-prefs", base_model="/no/such/model"))
    with pytest.raises(CuratorError, match="is not an eval set"):
        train_reward(ctx, RewardTrainConfig(dataset="demo-prefs", eval_set="demo-prefs"))
    assert not (ctx.run_dir / "model").exists()
