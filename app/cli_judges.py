"""`curator judge`: LM labels with a probability for every pair of a dataset (resumable)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store, progress_bar
from curation.workspace import Workspace


def judge_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose pairs to judge.")],
    workspace: WorkspaceOpt = None,
    backend: Annotated[
        str, typer.Option(help="transformers (local), vllm (offline engine) or openai (server).")
    ] = "transformers",
    model: Annotated[
        str | None,
        typer.Option(help="HF id or local folder (default: the embedded SmolLM2-135M-Instruct)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the server's API key.")
    ] = "OPENAI_API_KEY",
    limit: Annotated[int | None, typer.Option(help="Judge at most this many new pairs.")] = None,
    template: Annotated[
        str, typer.Option(help="pairwise, multipref, or a .yaml/.md/.txt template file.")
    ] = "pairwise",
    aspect: Annotated[
        list[str] | None,
        typer.Option(help="Aspect to judge (repeatable; default overall)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Judge name on its labels (default: model-template).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass.")] = 8,
    one_order: Annotated[
        bool, typer.Option("--one-order", help="Skip the swapped A/B order (half the cost).")
    ] = False,
    personas: Annotated[
        int, typer.Option(help="Simulated Annotators: personas averaged per pair (0: off).")
    ] = 0,
    persona_shots: Annotated[
        int, typer.Option(help="Pairs a person labelled, shown to each persona.")
    ] = 3,
    background: Annotated[
        bool, typer.Option("--background", help="Run as a background job; print its id.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Label a dataset's pairs with an LM judge; pairs it already labelled are skipped."""
    from routing.judges import Judge, judge_dataset, open_backend

    ws = Workspace.resolve(workspace).ensure()
    judge = Judge(
        name=name or "",
        backend=backend,
        model=model,
        template=template,
        aspects=tuple(aspect or ("overall",)),
        both_orders=not one_order,
        batch_size=batch_size,
        url=url,
        api_key_env=api_key_env,
        personas=personas,
        persona_shots=persona_shots,
    )
    with _store(ws, create=False) as store:
        store.dataset(dataset)  # fail on an unknown dataset before loading a model
        if background:
            from app.cli_jobs import enqueue_and_report

            spec = judge.config() | {"dataset": dataset, "limit": limit}
            enqueue_and_report(store, "judge", spec, as_json=as_json)
            return
        model_backend = open_backend(judge, ws)
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
