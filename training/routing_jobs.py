"""Routing work as background jobs: features (``features``) and reward-model sweeps (``sweep``);
LM judging is :mod:`training.judge_job`.

Both write as they go, so a job adds progress, cancel between steps, and resume: a sweep's id
is its checkpoint here (a requeued sweep adds only the runs still missing), and on a cluster's
node its scored runs are, replayed by a retry. On a cluster, feature shards and the runs of a
reward-model sweep are Ray tasks (:mod:`training.task_pool`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.errors import CuratorError
from curation.evalsets import EvalScore, EvalSet
from curation.pairs import SplitLabels
from training.kinds import JobCancelled, JobContext, stopping_progress
from training.task_pool import TaskPool, TaskResources, node_workspace, relative_to_working_dir

if TYPE_CHECKING:
    from routing.sweeps import RunScorer


def sweep_spec(
    dataset: str,
    eval_dataset: str | None,
    config: Any,
    *,
    ppm_kind: str = "lightgbm",
    reward: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The spec of a sweep job (``config`` is a :class:`routing.sweeps.SweepConfig`; ``reward``
    holds :class:`training.reward.RewardTrainConfig` settings for ``scorer="reward_model"``)."""
    return {
        "dataset": dataset,
        "eval_dataset": eval_dataset,
        "config": config.validate().to_dict(),
        "ppm_kind": ppm_kind,
        "reward": reward or {},
    }


@dataclass
class RewardModelSweepData:
    """A sweep's data when each run trains a full reward model (TRL ``RewardTrainer``, default
    base MiniLM) on its split and scores it on the eval set, instead of the frozen-embedding
    probe: :func:`routing.sweeps.run_sweep` calls :meth:`score` once per run, or, for a job on a
    cluster, spreads the runs as tasks through :meth:`score_on`."""

    features: Any
    labels: Any
    instances: list[Any]
    shared: RewardRunShared

    @classmethod
    def load(cls, ctx: JobContext, dataset: str, eval_dataset: str, sweep: Any,
             reward: dict[str, Any]) -> RewardModelSweepData:  # fmt: skip
        from routing.features import FeatureMatrix
        from training.reward import RewardTrainConfig

        features = FeatureMatrix.load(ctx.store, dataset).for_routing()
        labels = SplitLabels.load(ctx.store, dataset, sweep.labels)
        labels.require_both()
        evalset = EvalSet.load(ctx.store, eval_dataset)  # a wrong one fails before any training
        by_id = dict(ctx.store.iter_instances(dataset))
        instances = [by_id[int(i)] for i in labels.instance_ids]
        config = RewardTrainConfig.from_spec({"dataset": dataset, **reward})
        shared = RewardRunShared(config, evalset, str(ctx.workspace.root))
        return cls(features, labels, instances, shared)

    def surviving(self, human_mask: Any) -> Any:
        return human_mask & (self.labels.human != 0)

    def score(
        self, human_mask: Any, rows: Any = None, *, part: str = "fit", seed: Any = None
    ) -> tuple[EvalScore, int]:
        """A full reward model on the split, scored on the whole eval set (``part`` and ``seed``
        are the probe's: a reward-model sweep is not proven by :mod:`routing.evaluation`)."""
        score, n_train, _ = score_reward_run(self.shared, self.pairs(human_mask, rows))
        return score, n_train

    def pairs(self, human_mask: Any, rows: Any = None) -> list[Any]:
        """The preference pairs a run trains on: each pair with the label its split gives it."""
        from training.data import as_pair

        labels = self.labels.for_split(human_mask)
        keep = range(len(labels)) if rows is None else rows
        return [as_pair(self.instances[k], int(labels[k])) for k in keep if labels[k] != 0]

    def score_on(self, pool: TaskPool, resources: TaskResources, should_stop: Any) -> RunScorer:
        """Score the runs as tasks of ``pool``, each training its own reward model wherever the
        pool places it: the pairs are cut here, the training and scoring run there (with no
        workspace: a node has none)."""
        config = dataclasses.replace(self.shared.config,
                                     base_model=relative_to_working_dir(self.shared.config.base_model))  # fmt: skip
        shared = RewardRunShared(config, self.shared.evalset, None)

        def scores(masks: list[Any]) -> Any:
            return pool.map(score_reward_run, shared, (self.pairs(m) for m in masks),
                            resources=resources, should_stop=should_stop)  # fmt: skip

        return scores


@dataclass
class RewardRunShared:
    """What every run of a reward-model sweep shares: the training settings, the eval set (read
    from the store once), and the workspace (None on a cluster's node, which has none)."""

    config: Any
    evalset: EvalSet
    workspace: str | None


def score_reward_run(shared: RewardRunShared, pairs: list[Any]) -> tuple[EvalScore, int, float]:
    """One sweep run: train a reward model on ``pairs`` in a scratch folder and score it on the
    eval set, keeping nothing on disk. Module-level, so a cluster runs it as a task."""
    import tempfile
    import time

    from training.evaluate import score_on_evalset
    from training.reward import train_reward_scorer

    started = time.perf_counter()
    workspace = node_workspace(shared.workspace)
    with tempfile.TemporaryDirectory(prefix="curator-sweep-run-") as scratch:
        scorer = train_reward_scorer(workspace, shared.config, pairs, Path(scratch))
        score = score_on_evalset(scorer, shared.evalset)
    return score, len(pairs), time.perf_counter() - started


def run_sweep_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Train and score ``config.runs`` probes, then fit the performance predictor."""
    from routing.ppm import PPMConfig, min_runs, train_ppm
    from routing.sweeps import SweepConfig, create_sweep, run_sweep, sweep_info

    try:
        dataset, eval_dataset = spec["dataset"], spec.get("eval_dataset") or None
    except KeyError as exc:
        raise CuratorError(f"a sweep job needs {exc.args[0]!r} in its spec") from None
    config = SweepConfig.from_dict(spec.get("config", {})).validate()
    store = ctx.store
    resumed = ctx.resumed_state() or {}
    on_node = ctx.store_is_snapshot
    replay: list[tuple[EvalScore, int, float]] = []
    if resumed and not resumed.get("snapshot"):  # requeued or retried here: the same sweep
        sweep_id = resumed["sweep_id"]
    else:  # a new sweep; after an attempt on a node, its scored runs are replayed into it
        store.dataset(dataset)
        if eval_dataset:
            store.dataset(eval_dataset)
        sweep_id = create_sweep(store, dataset, eval_dataset, config)
        replay = [_run_from_state(r) for r in resumed.get("runs", [])]
        ctx.checkpoint_state("sweep.json", _sweep_state(sweep_id, replay if on_node else None))
        if replay:
            ctx.progress(len(replay) / config.runs,
                         f"{len(replay)} runs replayed from the checkpoint")  # fmt: skip
    missing = config.runs - sweep_info(store, sweep_id)["runs"]
    on_run = _checkpoint_runs(ctx, sweep_id) if on_node else None
    score_runs = None
    if missing > 0:
        remaining = SweepConfig.from_dict(config.to_dict())
        remaining.runs = missing
        data = None
        if config.scorer == "reward_model":
            data = RewardModelSweepData.load(ctx, dataset, eval_dataset, config,
                                             spec.get("reward", {}))  # fmt: skip
            if ctx.pool.name != "local":  # one task per run, over the cluster's nodes
                gpus = float(spec.get("num_gpus") or 0)
                ctx.progress(0.0, f"{missing} runs as tasks on {ctx.pool.name} "
                                  f"({ctx.pool.workers} CPUs)")  # fmt: skip
                score_runs = data.score_on(ctx.pool, TaskResources(num_gpus=gpus),
                                           ctx.should_stop)  # fmt: skip
        run_sweep(
            store,
            dataset,
            eval_dataset,
            remaining,
            sweep_id=sweep_id,
            data=data,
            progress=stopping_progress(ctx),
            should_stop=ctx.should_stop,
            score_runs=score_runs,
            replay=replay,
            on_run=on_run,
        )
    if ctx.should_stop():
        raise JobCancelled
    runs = sweep_info(store, sweep_id)["runs"]
    ppm_config = PPMConfig(kind=spec.get("ppm_kind", "lightgbm"))
    done = {"sweep_id": sweep_id, "runs": runs}
    if score_runs is not None:
        done["spread_over"] = f"{ctx.pool.name} tasks"
    if runs < min_runs(ppm_config):  # the runs are kept; more can be added to the sweep later
        return done | {"ppm_id": None,
                       "note": f"{runs} runs are too few to fit a predictor ({min_runs(ppm_config)})"}  # fmt: skip
    ctx.progress(1.0, "fitting the performance predictor")
    predictor = train_ppm(store, sweep_id, ppm_config)
    cv = predictor.metrics["cv"]
    ctx.metrics(runs, ppm_r2=cv["r2"], ppm_spearman=cv["spearman"])
    return done | {"ppm_id": predictor.id, "cv": cv}


# On a node, the scored runs go into the sweep's checkpoint at most this often (and after
# every run that took longer): a retry replays them instead of training them again.
SWEEP_CHECKPOINT_S = 10.0


def _sweep_state(sweep_id: int, runs: list[tuple[EvalScore, int, float]] | None) -> dict:
    """A sweep job's checkpoint. Here it is the sweep's id (its runs are in the store); on a
    node, whose store is a snapshot, it also holds each scored run (a few numbers: the splits
    are drawn again from the seed), as the runs in that store are lost with the node."""
    if runs is None:
        return {"sweep_id": sweep_id}
    return {"sweep_id": sweep_id, "snapshot": True,
            "runs": [score.to_dict() | {"n_train": n, "seconds": s} for score, n, s in runs]}  # fmt: skip


def _run_from_state(run: dict[str, Any]) -> tuple[EvalScore, int, float]:
    score = EvalScore(run["overall"], run["categories"], run["subsets"], run["n"])
    return score, int(run["n_train"]), float(run["seconds"])


def _checkpoint_runs(ctx: JobContext, sweep_id: int) -> Any:
    """``run_sweep``'s ``on_run`` for a job on a node: keep each stored run (replayed ones too)
    and checkpoint them every :data:`SWEEP_CHECKPOINT_S` seconds."""
    import time

    runs: list[tuple[EvalScore, int, float]] = []
    last = time.monotonic()

    def on_run(score: EvalScore, n_train: int, seconds: float) -> None:
        nonlocal last
        runs.append((score, n_train, seconds))
        if time.monotonic() - last >= SWEEP_CHECKPOINT_S:
            ctx.checkpoint_state("sweep.json", _sweep_state(sweep_id, runs))
            last = time.monotonic()

    return on_run


def features_spec(dataset: str, config: Any) -> dict[str, Any]:
    """The spec of a features job (``config`` is a :class:`routing.features.FeatureConfig`)."""
    return {"dataset": dataset, "config": config.validate().to_dict()}


def run_features_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Compute a dataset's routing features (they replace the earlier ones when done).

    On a cluster, the measures and sentence vectors (the slow part) run as shards of
    ``shard_pairs`` pairs, one task each; the result then says how many shards ran and on which
    pool. A shard reserves the spec's ``num_gpus`` (per task, as for every kind that spreads its
    steps), at least one where the encoder's device is cuda, and none where it is cpu.
    """
    from routing.features import FeatureConfig, compute_features

    dataset = spec.get("dataset")
    if not dataset:
        raise CuratorError("a features job needs a dataset")
    config = FeatureConfig.from_dict(spec.get("config", {}))
    ctx.store.dataset(dataset)

    def progress(stage: str, done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0, f"{stage}: {done}/{total}")
        if ctx.should_stop():
            raise JobCancelled

    pool = ctx.pool
    if pool.name == "local":
        return compute_features(ctx.store, dataset, config, progress=progress).to_dict()

    device = config.encoder.device
    gpus = 0.0 if device == "cpu" else float(spec.get("num_gpus") or 0)
    if device.startswith("cuda"):
        gpus = gpus or 1.0
    elif device == "auto" and not gpus:
        # Ray leaves every GPU of a node visible to a task that reserved none: "auto" would
        # take one nobody reserved.
        config = dataclasses.replace(
            config, encoder=dataclasses.replace(config.encoder, device="cpu")
        )
    resources = TaskResources(num_cpus=1, num_gpus=gpus)
    ran = 0

    def on_pool(fn, shared, shards):
        nonlocal ran
        for part in pool.map(fn, shared, shards, resources=resources,
                             should_stop=ctx.should_stop):  # fmt: skip
            ran += 1
            yield part
        if ran < len(shards):  # the pool stops early only on a cancel
            raise JobCancelled

    ctx.progress(0.0, f"measures in shards of {config.shard_pairs} pairs on {pool.name}")
    summary = compute_features(ctx.store, dataset, config, progress=progress, shard_map=on_pool)
    return {**summary.to_dict(), "shards": ran, "pool": pool.name}
