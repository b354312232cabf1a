"""`curator judge`: LM labels with a probability for every pair of a dataset (resumable)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli import JsonOpt, NumGpusOpt, WorkspaceOpt, _store, gpu_spec, progress_bar
from app.cli_options import ConfigSettings, config_command
from curation.workspace import Workspace
from routing.judges import Judge, judge_dataset, open_backend


@config_command(Judge)
def judge_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose pairs to judge.")],
    settings: ConfigSettings,
    workspace: WorkspaceOpt = None,
    limit: Annotated[int | None, typer.Option(help="Judge at most this many new pairs.")] = None,
    background: Annotated[
        bool, typer.Option("--background", help="Run as a background job; print its id.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            help="How a transformers judge runs its model: auto (vLLM's offline engine where a "
            "CUDA GPU and vLLM are present, as on a cluster's GPU node; else transformers), "
            "transformers, or vllm."
        ),
    ] = "auto",
    num_gpus: NumGpusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Label a dataset's pairs with an LM judge; pairs it already labelled are skipped."""
    ws = Workspace.resolve(workspace).ensure()
    judge = settings.build()
    with _store(ws, create=False) as store:
        store.dataset(dataset)  # fail on an unknown dataset before loading a model
        if background:
            from app.cli_jobs import enqueue_and_report

            spec = judge.config() | {"dataset": dataset, "limit": limit, "engine": engine}
            spec |= gpu_spec(num_gpus)
            enqueue_and_report(store, "judge", spec, as_json=as_json)
            return
        model_backend = open_backend(judge, ws, engine=engine)
        with progress_bar(judge.name, "pair", quiet=as_json) as progress:
            result = judge_dataset(
                store, dataset, judge, model_backend, limit=limit, progress=progress
            )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    rate = f" ({result['judgments_per_s']} pairs/s)" if result["judgments_per_s"] else ""
    typer.echo(
        f"{result['judge']} on {dataset}: judged {result['judged']}{rate}, "
        f"skipped {result['skipped_done']} already judged"
        + (
            f", {result['skipped_incomplete']} without two responses"
            if result["skipped_incomplete"]
            else ""
        )
        + (f", {result['unparsed']} with no readable answer" if result["unparsed"] else "")
    )
    if result["methods"].get("parsed"):
        typer.echo(f"  {result['methods']['parsed']} labels from parsed answers (no probability)")


def register(cli: typer.Typer) -> None:
    cli.command("judge")(judge_cmd)
