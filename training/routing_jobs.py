"""Routing work as background jobs: reward-model sweeps (``sweep``) and LM judging (``judge``).

Both are long loops that already write as they go, so a job only adds progress, cancel between
steps, and resume: a sweep's id is its checkpoint (a requeued sweep adds only the runs still
missing), and a judge skips the pairs it has labelled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from training.kinds import JobCancelled, JobContext


def _stopper(ctx: JobContext):
    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0, f"{done}/{total}")
        if ctx.should_stop():
            raise JobCancelled

    return progress


def sweep_spec(
    dataset: str, eval_dataset: str, config: Any, *, ppm_kind: str = "lightgbm"
) -> dict[str, Any]:
    """The spec of a sweep job (``config`` is a :class:`routing.sweeps.SweepConfig`)."""
    return {
        "dataset": dataset,
        "eval_dataset": eval_dataset,
        "config": config.validate().to_dict(),
        "ppm_kind": ppm_kind,
    }


def run_sweep_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Train and score ``config.runs`` probes, then fit the performance predictor."""
    from routing.ppm import PPMConfig, train_ppm
    from routing.sweeps import SweepConfig, create_sweep, run_sweep, sweep_info

    try:
        dataset, eval_dataset = spec["dataset"], spec["eval_dataset"]
    except KeyError as exc:
        raise CuratorError(f"a sweep job needs {exc.args[0]!r} in its spec") from None
    config = SweepConfig.from_dict(spec.get("config", {})).validate()
    store = ctx.store
    if ctx.resume_from:  # requeued, or retried after a cancel: continue the same sweep
        sweep_id = json.loads(Path(ctx.resume_from).read_text())["sweep_id"]
    else:
        marker = ctx.run_dir / "sweep.json"
        store.dataset(dataset)
        store.dataset(eval_dataset)
        sweep_id = create_sweep(store, dataset, eval_dataset, config)
        marker.write_text(json.dumps({"sweep_id": sweep_id}))
        ctx.checkpoint(marker)
    missing = config.runs - sweep_info(store, sweep_id)["runs"]
    if missing > 0:
        remaining = SweepConfig.from_dict(config.to_dict())
        remaining.runs = missing
        run_sweep(
            store,
            dataset,
            eval_dataset,
            remaining,
            sweep_id=sweep_id,
            progress=_stopper(ctx),
            should_stop=ctx.should_stop,
        )
    if ctx.should_stop():
        raise JobCancelled
    ctx.progress(1.0, "fitting the performance predictor")
    predictor = train_ppm(store, sweep_id, PPMConfig(kind=spec.get("ppm_kind", "lightgbm")))
    cv = predictor.metrics["cv"]
    ctx.metrics(sweep_info(store, sweep_id)["runs"], ppm_r2=cv["r2"], ppm_spearman=cv["spearman"])
    return {"sweep_id": sweep_id, "runs": sweep_info(store, sweep_id)["runs"],
            "ppm_id": predictor.id, "cv": cv}  # fmt: skip


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
