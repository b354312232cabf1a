"""`curator train`, `curator worker`, `curator jobs`, `curator runs`: background training jobs.

`curator train reward|sft|dpo` takes its options from the trainer's config dataclass (one
definition feeds this CLI, the job spec and the Jobs page), enqueues a job and prints its id.
"""

from __future__ import annotations

import dataclasses
import getpass
import inspect
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store
from app.cli_options import ConfigSettings, config_command
from curation.errors import CuratorError
from curation.workspace import Workspace

train_app = typer.Typer(
    help="Launch a reward-model, SFT or DPO training job.", no_args_is_help=True
)
jobs_app = typer.Typer(
    help="List, inspect, cancel and retry background jobs.", no_args_is_help=True
)
runs_app = typer.Typer(help="Finished training runs and their evaluations.", no_args_is_help=True)

JobArg = Annotated[int, typer.Argument(help="Job id (see `curator jobs list`).")]


def _cli_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _train_command(kind: str) -> Any:
    from training.config import config_class

    config_cls = config_class(kind)

    def command(
        settings: ConfigSettings,
        workspace: WorkspaceOpt = None,
        retries: Annotated[
            int, typer.Option(help="Requeue this often if the worker dies mid-run.")
        ] = 0,
        wait: Annotated[
            bool, typer.Option("--wait", help="Block until the job ends (starts a worker).")
        ] = False,
        as_json: JsonOpt = False,
    ) -> None:
        config = settings.build()
        _launch(kind, config, workspace, retries=retries, wait=wait, as_json=as_json)

    command.__doc__ = (inspect.getdoc(config_cls) or f"Train a {kind} model.").splitlines()[0]
    return config_command(config_cls)(command)


def enqueue_and_report(
    store: Any, kind: str, spec: dict[str, Any], *, as_json: bool, retries: int = 0
) -> int:
    """Queue a job, make sure a local worker will run it, and print its id."""
    from training import jobs
    from training.worker import auto_worker

    job_id = jobs.enqueue(store, kind, spec, max_retries=retries, created_by=_cli_user())
    if store.workspace is not None:
        auto_worker(store.workspace)
    typer.echo(json.dumps({"job_id": job_id, "status": "queued"}) if as_json else job_id)
    return job_id


def _launch(
    kind: str, config: Any, workspace: Path | None, *, retries: int, wait: bool, as_json: bool
) -> None:
    from training import jobs
    from training.worker import ensure_local_worker

    ws = Workspace.resolve(workspace)
    with _store(ws, create=False) as store:
        if config.dataset:
            store.dataset(config.dataset)  # a typo fails now, not in the worker
        if not wait:
            enqueue_and_report(store, kind, config.to_spec(), as_json=as_json, retries=retries)
            return
        job_id = jobs.enqueue(
            store, kind, config.to_spec(), max_retries=retries, created_by=_cli_user()
        )
        ensure_local_worker(ws)
        job = _wait_for(store, job_id)
        report = job_report(store, job_id)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        typer.echo(f"job {job_id} {job.status}" + (f": {job.error}" if job.error else ""))
    if job.status != "succeeded":
        raise typer.Exit(1)


def _wait_for(store: Any, job_id: int, poll_s: float = 1.0) -> Any:
    from training import jobs

    while True:
        job = jobs.get_job(store, job_id)
        if job.finished:
            return job
        time.sleep(poll_s)


def job_report(store: Any, job_id: int) -> dict[str, Any]:
    """A job with its metrics and, for a training job, its run's evaluation."""
    from training import jobs
    from training.runs import run_for_job

    job = jobs.get_job(store, job_id)
    run = run_for_job(store, job_id)
    return job.to_dict() | {
        "metrics": jobs.job_metrics(store, job_id),
        "run_id": run.id if run else None,
        "evaluation": run.evaluation if run else None,
    }


# ---- commands -----------------------------------------------------------------------------


def worker_cmd(
    workspace: WorkspaceOpt = None,
    once: Annotated[
        bool, typer.Option("--once", help="Run one job, then exit once it has ended.")
    ] = False,
    drain: Annotated[
        bool, typer.Option("--drain", help="Run what is queued, then exit once it has ended.")
    ] = False,
    max_jobs: Annotated[
        int | None, typer.Option(min=1, help="Exit once this many jobs have ended.")
    ] = None,
    ray: Annotated[
        str | None, typer.Option("--ray", help="Submit jobs to this Ray cluster (Jobs API URL).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="With --ray: where jobs write artefacts, a folder or an fsspec URL "
            "(default: the workspace's runs/ folder)."
        ),
    ] = None,
    resources: Annotated[
        str | None,
        typer.Option(
            help="With --ray: custom Ray resources per job as JSON, e.g. '{\"gpu_node\": 1}'."
        ),
    ] = None,
    num_gpus: Annotated[
        float | None,
        typer.Option(
            help="With --ray: GPUs per job whose spec names none (per task for "
            "features and sweeps)."
        ),
    ] = None,
    max_concurrent: Annotated[
        int, typer.Option(min=1, help="With --ray: jobs kept on the cluster at once.")
    ] = 4,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the queue.")] = 1.0,
    stale_after: Annotated[
        float, typer.Option(help="Seconds without a heartbeat before a job counts as lost.")
    ] = 60.0,
    idle_exit: Annotated[
        float | None, typer.Option(help="Exit after this many seconds with nothing to do.")
    ] = None,
    pidfile: Annotated[
        bool, typer.Option("--pidfile", help="Register as the workspace's app-started worker.")
    ] = False,
) -> None:
    """Run queued jobs: locally, each in its own process group, or on a Ray cluster."""
    import contextlib
    import signal

    from training.worker import Worker, WorkerConfig
    from training.worker import pidfile as worker_pidfile

    ws = Workspace.resolve(workspace)
    if not ws.exists():
        raise CuratorError(f"no workspace at {ws.root}")
    if once and max_jobs not in (None, 1):
        raise CuratorError("--once is --max-jobs 1; give one of them")
    limit = 1 if once else max_jobs
    config = WorkerConfig(poll_s=poll, stale_after_s=stale_after, drain=drain, max_jobs=limit,
                          idle_exit_s=idle_exit)  # fmt: skip
    if ray:
        from training.ray_worker import RayWorkerConfig, run_ray_worker

        try:
            wanted = json.loads(resources) if resources else {}
        except ValueError as exc:
            raise CuratorError(f"--resources must be JSON, e.g. '{{\"far\": 1}}': {exc}") from exc
        ray_config = RayWorkerConfig(
            poll_s=poll,
            drain=drain,
            max_jobs=limit,
            idle_exit_s=idle_exit,
            stale_after_s=stale_after,
            storage=storage,
            num_gpus=num_gpus,
            max_concurrent=max_concurrent,
            resources={str(k): float(v) for k, v in dict(wanted).items()},
        )
        done = run_ray_worker(ws, ray, ray_config)
        typer.echo(f"worker ran {done} job(s) on {ray}")
        return
    worker = Worker(ws, config)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    with worker_pidfile(ws) if pidfile else contextlib.nullcontext():
        typer.echo(f"worker {worker.name} on {ws.root}", err=True)
        done = worker.run(on_job=lambda job: typer.echo(f"job {job.id} ({job.kind})", err=True))
    typer.echo(f"worker ran {done} job(s)")


@jobs_app.command("list")
def jobs_list(
    workspace: WorkspaceOpt = None,
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only jobs of this kind.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first."""
    from training import jobs

    with _store(workspace, create=False) as store:
        rows = jobs.list_jobs(store, status=status, kind=kind)
    if as_json:
        typer.echo(json.dumps([j.to_dict() for j in rows], indent=2, default=str))
        return
    for j in rows:
        typer.echo(
            f"{j.id}\t{j.kind}\t{j.status}\t{j.progress:.0%}\t{j.created_at}\t{j.message or ''}"
        )


@jobs_app.command("show")
def jobs_show(
    job_id: JobArg,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A job's status, progress, metrics, result or error, and the end of its log."""
    from training import jobs

    with _store(workspace, create=False) as store:
        report = job_report(store, job_id)
        job = jobs.get_job(store, job_id)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    typer.echo(f"job {job.id} ({job.kind}) {job.status} {job.progress:.0%} {job.message or ''}")
    typer.echo(f"attempts {job.attempts} of {job.max_retries + 1}; log {job.log_path}")
    last: dict[str, float] = {}
    for m in report["metrics"]:
        last[m["name"]] = m["value"]
    if last:
        typer.echo("last metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(last.items())))
    if job.error:
        typer.echo(f"error: {job.error}")
    if job.result:
        typer.echo(f"result: {json.dumps(job.result, default=str)}")
    tail = jobs.log_tail(job, 2000)
    if tail:
        typer.echo("--- log tail")
        typer.echo(tail.rstrip())


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobArg, workspace: WorkspaceOpt = None) -> None:
    """Cancel a job: a queued one at once, a running one by stopping its whole process tree."""
    from training import jobs

    with _store(workspace, create=False) as store:
        job = jobs.request_cancel(store, job_id)
    typer.echo(
        f"job {job_id} cancelled"
        if job.status == "cancelled"
        else f"job {job_id}: cancel requested; its worker stops it"
    )


@jobs_app.command("retry")
def jobs_retry(job_id: JobArg, workspace: WorkspaceOpt = None) -> None:
    """Queue a finished job again (resuming from its last checkpoint); prints the new id."""
    from training import jobs

    with _store(workspace, create=False) as store:
        typer.echo(jobs.retry(store, job_id, created_by=_cli_user()))


@runs_app.command("list")
def runs_list(
    workspace: WorkspaceOpt = None,
    kind: Annotated[str | None, typer.Option(help="reward, sft or dpo.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only runs trained on this dataset.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Training runs, newest first, with their evaluations."""
    from training.runs import list_runs

    with _store(workspace, create=False) as store:
        rows = list_runs(store, kind=kind, dataset=dataset)
    if as_json:
        listed = [dataclasses.asdict(r) | {"artifact_is_url": r.artifact_is_url} for r in rows]
        typer.echo(json.dumps(listed, indent=2, default=str))
        return
    for r in rows:
        typer.echo(f"{r.id}\t{r.kind}\t{r.name}\tjob {r.job_id}\t{r.artifact_path or ''}")


@runs_app.command("fetch")
def runs_fetch(
    run_id: Annotated[int, typer.Argument(help="Run id (see `curator runs list`).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Print the local folder of a run's model, downloading it first when the run saved it at a
    storage URL (into the workspace's cache/artifacts, once)."""
    from training.runs import get_run, run_model_dir

    with _store(workspace, create=False) as store:
        typer.echo(run_model_dir(store, get_run(store, run_id)))


def register(cli: typer.Typer) -> None:
    from training.config import TRAINER_KINDS

    for kind in TRAINER_KINDS:
        train_app.command(kind)(_train_command(kind))
    cli.add_typer(train_app, name="train")
    cli.command("worker")(worker_cmd)
    cli.add_typer(jobs_app, name="jobs")
    cli.add_typer(runs_app, name="runs")
