"""Routing work as background jobs: features (``features``), reward-model sweeps (``sweep``) and
LM judging (``judge``).

Both are long loops that already write as they go, so a job only adds progress, cancel between
steps, and resume: a sweep's id is its checkpoint (a requeued sweep adds only the runs still
missing), and a judge skips the pairs it has labelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.evalsets import EvalScore, EvalSet
from curation.pairs import SplitLabels
from training.kinds import JobCancelled, JobContext


def _stopper(ctx: JobContext):
    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0, f"{done}/{total}")
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
    probe: :func:`routing.sweeps.run_sweep` calls :meth:`score` once per run."""

    features: Any
    labels: Any
    instances: list[Any]
    store: Any
    workspace: Any
    eval_dataset: str
    config: Any
    scratch: Path

    @classmethod
    def load(cls, ctx: JobContext, dataset: str, eval_dataset: str, sweep: Any,
             reward: dict[str, Any]) -> RewardModelSweepData:  # fmt: skip
        from routing.features import FeatureMatrix
        from training.reward import RewardTrainConfig

        features = FeatureMatrix.load(ctx.store, dataset).for_routing()
        labels = SplitLabels.load(ctx.store, dataset, sweep.labels)
        labels.require_both()
        EvalSet.load(ctx.store, eval_dataset)  # a wrong eval set fails before any training
        by_id = dict(ctx.store.iter_instances(dataset))
        instances = [by_id[int(i)] for i in labels.instance_ids]
        config = RewardTrainConfig.from_spec({"dataset": dataset, **reward})
        return cls(features, labels, instances, ctx.store, ctx.workspace, eval_dataset, config,
                   ctx.run_dir / "scratch")  # fmt: skip

    def surviving(self, human_mask: Any) -> Any:
        return human_mask & (self.labels.human != 0)

    def score(
        self, human_mask: Any, rows: Any = None, *, part: str = "fit", seed: Any = None
    ) -> tuple[Any, int]:
        """A full reward model on the split, scored on the whole eval set (``part`` and ``seed``
        are the probe's: a reward-model sweep is not proven by :mod:`routing.evaluation`)."""
        from training.data import as_pair
        from training.evaluate import evaluate_reward_model
        from training.reward import train_reward_scorer

        labels = self.labels.for_split(human_mask)
        keep = range(len(labels)) if rows is None else rows
        pairs = [as_pair(self.instances[k], int(labels[k])) for k in keep if labels[k] != 0]
        scorer = train_reward_scorer(self.workspace, self.config, pairs, self.scratch)
        result = evaluate_reward_model(self.store, scorer, self.eval_dataset)
        score = EvalScore(result["overall"], result["categories"], result["subsets"], result["n"])
        return score, len(pairs)


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
    resumed = ctx.resumed_state()
    if resumed:  # requeued, or retried after a cancel: continue the same sweep
        sweep_id = resumed["sweep_id"]
    else:
        store.dataset(dataset)
        if eval_dataset:
            store.dataset(eval_dataset)
        sweep_id = create_sweep(store, dataset, eval_dataset, config)
        ctx.checkpoint_state("sweep.json", {"sweep_id": sweep_id})
    missing = config.runs - sweep_info(store, sweep_id)["runs"]
    if missing > 0:
        remaining = SweepConfig.from_dict(config.to_dict())
        remaining.runs = missing
        data = None
        if config.scorer == "reward_model":
            data = RewardModelSweepData.load(ctx, dataset, eval_dataset, config,
                                             spec.get("reward", {}))  # fmt: skip
        run_sweep(
            store,
            dataset,
            eval_dataset,
            remaining,
            sweep_id=sweep_id,
            data=data,
            progress=_stopper(ctx),
            should_stop=ctx.should_stop,
        )
    if ctx.should_stop():
        raise JobCancelled
    runs = sweep_info(store, sweep_id)["runs"]
    ppm_config = PPMConfig(kind=spec.get("ppm_kind", "lightgbm"))
    if runs < min_runs(ppm_config):  # the runs are kept; more can be added to the sweep later
        return {"sweep_id": sweep_id, "runs": runs, "ppm_id": None,
                "note": f"{runs} runs are too few to fit a predictor ({min_runs(ppm_config)})"}  # fmt: skip
    ctx.progress(1.0, "fitting the performance predictor")
    predictor = train_ppm(store, sweep_id, ppm_config)
    cv = predictor.metrics["cv"]
    ctx.metrics(runs, ppm_r2=cv["r2"], ppm_spearman=cv["spearman"])
    return {"sweep_id": sweep_id, "runs": runs, "ppm_id": predictor.id, "cv": cv}


def features_spec(dataset: str, config: Any) -> dict[str, Any]:
    """The spec of a features job (``config`` is a :class:`routing.features.FeatureConfig`)."""
    return {"dataset": dataset, "config": config.validate().to_dict()}


def run_features_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Compute a dataset's routing features (they replace the earlier ones when done)."""
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

    return compute_features(ctx.store, dataset, config, progress=progress).to_dict()


def run_judge_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Label a dataset's pairs with an LM judge (pairs already labelled are skipped)."""
    from routing.judges import Judge, judge_dataset, open_backend

    spec = dict(spec)
    dataset = spec.pop("dataset", None)
    limit = spec.pop("limit", None)
    spec.pop("retry_of", None)
    if not dataset:
        raise CuratorError("a judge job needs a dataset")
    judge = Judge(**spec)
    ctx.store.dataset(dataset)
    ctx.progress(0.0, f"loading {judge.model or 'the embedded model'}")
    backend = open_backend(judge, ctx.workspace)
    return judge_dataset(ctx.store, dataset, judge, backend, limit=limit, progress=_stopper(ctx))
