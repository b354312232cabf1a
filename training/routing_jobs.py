"""Routing work as background jobs: features (``features``), reward-model sweeps (``sweep``) and
LM judging (``judge``).

Both are long loops that already write as they go, so a job only adds progress, cancel between
steps, and resume: a sweep's id is its checkpoint (a requeued sweep adds only the runs still
missing), and a judge skips the pairs it has labelled.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.errors import CuratorError
from curation.evalsets import EvalScore, EvalSet
from curation.pairs import SplitLabels
from training.kinds import JobCancelled, JobContext
from training.task_pool import TaskPool, TaskResources

if TYPE_CHECKING:
    from routing.sweeps import RunScorer


def _stopper(ctx: JobContext, after: Any = None):
    """A progress callback that reports, calls ``after`` (a checkpoint), and stops the job
    when it was cancelled."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0, f"{done}/{total}")
        if after is not None:
            after()
        if ctx.should_stop():
            raise JobCancelled

    return progress


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
                                     base_model=_bundle_relative(self.shared.config.base_model))  # fmt: skip
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


def _bundle_relative(ref: str | None) -> str | None:
    """A base model as a path relative to this job's working folder when it lies inside it (a
    job on a cluster carries its base model in its bundle, which Ray unpacks as the working
    folder of every task, at a path of its own on each node); else unchanged."""
    if ref:
        path = Path(ref)
        if path.is_absolute() and path.is_relative_to(Path.cwd()):
            return path.relative_to(Path.cwd()).as_posix()
    return ref


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
            progress=_stopper(ctx),
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


def run_judge_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Label a dataset's pairs with an LM judge (pairs already labelled are skipped).

    On a cluster a judge with a model of its own (not a server) spreads the pairs over tasks,
    :data:`JUDGE_TASK_PAIRS` pairs each, every task with the model loaded once per process on
    its node (on vLLM where the node has a GPU and vLLM, with ``engine`` auto); a task reserves
    the spec's ``num_gpus``."""
    from routing.judges import Judge, judge_dataset, open_backend

    spec = dict(spec)
    dataset = spec.pop("dataset", None)
    limit = spec.pop("limit", None)
    engine = spec.pop("engine", "auto")
    spec.pop("retry_of", None)
    gpus = float(spec.pop("num_gpus", None) or 0)  # for a Ray worker, not a judge setting
    if not dataset:
        raise CuratorError("a judge job needs a dataset")
    judge = Judge(**spec)
    ctx.store.dataset(dataset)
    saved = None
    if ctx.store_is_snapshot:  # on a node: its labels survive the node in the checkpoint
        saved = NodeLabels(ctx, judge.name)
        restored = saved.restore()
        if restored:
            ctx.progress(0.0, f"{restored} labels restored from the checkpoint")
    progress = _stopper(ctx, saved.maybe_save if saved else None)
    if ctx.pool.name == "local" or judge.backend == "openai":
        ctx.progress(0.0, f"loading {judge.model or 'the embedded model'}")
        backend = open_backend(judge, ctx.workspace, engine=engine)
        result = judge_dataset(ctx.store, dataset, judge, backend, limit=limit,
                               progress=progress)  # fmt: skip
        return result | {"engine": backend.name}
    resources = TaskResources(num_gpus=gpus)
    return _judge_on_pool(ctx, dataset, judge, engine, limit, resources, progress)


# On a node, a judge's new labels go into its checkpoint at most this often.
JUDGE_CHECKPOINT_S = 10.0


class NodeLabels:
    """A judge's labels on a node, kept in its checkpoint: a folder of JSONL parts, one per
    save, each holding the labels added since the one before (so a save writes only what is
    new). A retry after the node died restores them into its snapshot, so it judges only the
    pairs still left, and they come back to the workspace with the rest."""

    def __init__(self, ctx: JobContext, annotator: str):
        self.ctx, self.annotator = ctx, annotator
        self.folder = ctx.run_dir / "judge-labels"
        self.last_id = 0
        self.saved_at = 0.0

    def _rows_after(self, last_id: int) -> list[dict[str, Any]]:
        rows = self.ctx.store.conn.execute(
            "SELECT * FROM annotations WHERE annotator_kind = 'lm' AND annotator = ? AND id > ? "
            "ORDER BY id", (self.annotator, last_id)).fetchall()  # fmt: skip
        return [dict(r) for r in rows]

    def restore(self) -> int:
        """Insert the labels of the checkpoint this attempt resumes from; returns how many."""
        import shutil

        store = self.ctx.store
        start = self._rows_after(0)
        self.last_id = max((r["id"] for r in start), default=0)
        source = Path(self.ctx.resume_from or "")
        if not self.ctx.resume_from or not source.is_dir():
            return 0
        columns = {r["name"] for r in store.conn.execute("PRAGMA table_info(annotations)")}
        columns.discard("id")
        self.folder.mkdir(parents=True, exist_ok=True)
        restored: list[int] = []
        with store.write():
            for part in sorted(source.glob("part-*.jsonl")):
                if part.resolve() != (self.folder / part.name).resolve():
                    shutil.copy2(part, self.folder / part.name)  # the next save keeps them
                for line in part.read_text().splitlines():
                    row = {k: v for k, v in json.loads(line).items() if k in columns}
                    marks = ", ".join("?" * len(row))
                    cursor = store.conn.execute(
                        f"INSERT OR IGNORE INTO annotations ({', '.join(row)}) "  # noqa: S608
                        f"VALUES ({marks})", list(row.values()))  # fmt: skip
                    if cursor.rowcount:
                        restored.append(int(row["instance_id"]))
            store.refresh_summary(sorted(set(restored)))
        self.last_id = max((r["id"] for r in self._rows_after(0)), default=0)
        return len(restored)

    def maybe_save(self) -> None:
        """Write the labels added since the last save as a new part, then checkpoint the
        folder; at most every :data:`JUDGE_CHECKPOINT_S` seconds."""
        import time

        if time.monotonic() - self.saved_at < JUDGE_CHECKPOINT_S:
            return
        rows = self._rows_after(self.last_id)
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        part = self.folder / f"part-{len(list(self.folder.glob('part-*.jsonl'))):05d}.jsonl"
        partial = part.with_name(f".{part.name}.partial")
        partial.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        partial.replace(part)
        self.last_id = rows[-1]["id"]
        self.ctx.checkpoint(self.folder)
        self.saved_at = time.monotonic()


# Pairs per task of a judge spread over a cluster (rounded up to whole batches, so each task's
# batches are those a one-process run makes, and so are its labels).
JUDGE_TASK_PAIRS = 256


@dataclass(frozen=True)
class JudgeTask:
    """What each task of a spread judge gets: the work (with the model named as the node finds
    it) and the engine wanted."""

    work: Any
    engine: str


_NODE_BACKEND: dict[tuple, Any] = {}


def judge_chunk(task: JudgeTask, pairs: list[Any]) -> tuple[str, list[Any]]:
    """One chunk of a spread judge run as a task: (the engine that ran, each pair's results).
    The model loads once per worker process and stays for its next chunks."""
    from routing.judges import open_backend, score_pairs

    judge = task.work.judge
    key = (judge.backend, judge.model, task.engine)
    if key not in _NODE_BACKEND:
        _NODE_BACKEND.clear()
        _NODE_BACKEND[key] = open_backend(judge, node_workspace(None), engine=task.engine)
    backend = _NODE_BACKEND[key]
    return backend.name, score_pairs(backend, task.work, pairs)


def _judge_on_pool(ctx: JobContext, dataset: str, judge: Any, engine: str, limit: Any,
                   resources: TaskResources, progress: Any) -> dict[str, Any]:  # fmt: skip
    from routing.judges import ENGINES, judge_dataset
    from routing.models import DEFAULT_MODEL, is_default

    if engine not in ENGINES:  # fail before any task starts
        raise CuratorError(f"unknown judge engine {engine!r}; choose one of {', '.join(ENGINES)}")
    model_id = DEFAULT_MODEL if is_default(judge.model) else judge.model
    engines: set[str] = set()
    chunks_done = 0

    def on_pool(work: Any, chunks: list[Any]) -> Any:
        nonlocal chunks_done
        node_judge = dataclasses.replace(work.judge, model=_bundle_relative(work.judge.model))
        task = JudgeTask(dataclasses.replace(work, judge=node_judge), engine)
        for ran, results in ctx.pool.map(judge_chunk, task, chunks, resources=resources,
                                         should_stop=ctx.should_stop):  # fmt: skip
            engines.add(ran)
            chunks_done += 1
            yield results

    size = -(-JUDGE_TASK_PAIRS // judge.batch_size) * judge.batch_size
    ctx.progress(0.0, f"judging in tasks of {size} pairs on {ctx.pool.name}")
    result = judge_dataset(ctx.store, dataset, judge, None, limit=limit, model_id=model_id,
                           progress=progress, score_chunks=on_pool, chunk_pairs=size)  # fmt: skip
    if ctx.should_stop():
        raise JobCancelled
    return result | {"engine": "+".join(sorted(engines)) or None, "tasks": chunks_done,
                     "spread_over": f"{ctx.pool.name} tasks"}  # fmt: skip


def node_workspace(root: str | None) -> Any:
    """The workspace a task uses: the job's own where it has one, else one of the node's, only
    for models converted on first use (the embedded SmolLM2), so each node converts once."""
    import tempfile

    from curation.workspace import Workspace

    return Workspace(Path(root or Path(tempfile.gettempdir()) / "curator-task-workspace")).ensure()
