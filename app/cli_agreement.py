"""`curator agreement`: inter-annotator and human-vs-LM agreement of a dataset's labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store
from app.cli_options import ConfigSettings, config_command
from curation.agreement import AgreementConfig, AspectAgreement, dataset_agreement, export_report
from curation.errors import CuratorError

BY_CHOICES = ("domain", "annotator", "feature")


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_aspect(result: AspectAgreement, by: str | None) -> None:
    typer.echo(
        f"{result.aspect}: {result.n_items} instances, {result.n_human_labels} human and "
        f"{result.n_lm_labels} LM labels"
    )
    typer.echo(
        f"  people: pairwise agreement {_figure(result.pairwise)} "
        f"({result.n_comparisons} comparisons), Fleiss kappa {_figure(result.fleiss.kappa)} "
        f"({result.fleiss.n_items} instances x {result.fleiss.raters_per_item or 0} raters"
        + (f", {result.fleiss.n_items_left_out} left out" if result.fleiss.n_items_left_out else "")
        + f"), Krippendorff alpha ({result.krippendorff.level}) "
        f"{_figure(result.krippendorff.alpha)}"
    )
    for pair in result.pairs:
        typer.echo(
            f"    {pair.annotator_a} / {pair.annotator_b}: agreement {_figure(pair.agreement)}, "
            f"Cohen kappa {_figure(pair.cohen_kappa)} on {pair.n_items}"
        )
    human_lm = result.human_vs_lm
    for judge in [human_lm.lm_majority, *human_lm.judges]:
        typer.echo(
            f"  {judge.judge} vs human majority: agreement {_figure(judge.agreement)}, "
            f"Cohen kappa {_figure(judge.cohen_kappa)} on {judge.n_items}"
        )
    if human_lm.n_no_human_majority:
        typer.echo(f"  ({human_lm.n_no_human_majority} instances have no human majority)")
    if by == "annotator":
        for row in result.by_annotator:
            typer.echo(
                f"    {row.annotator:<24} {row.n_labels:>7} labels  with people "
                f"{_figure(row.agreement)} ({row.n_comparisons})  with LM "
                f"{_figure(row.agreement_with_lm)} ({row.n_lm})"
            )
    elif by:
        for group in result.by_group.get(by, []):
            typer.echo(
                f"    {group.group:<24} {group.n_items:>7} instances  people "
                f"{_figure(group.pairwise)}  alpha {_figure(group.alpha)}  human vs LM "
                f"{_figure(group.human_lm)} ({group.n_human_lm})"
            )


@config_command(AgreementConfig)
def agreement_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset whose labels are compared.")],
    settings: ConfigSettings,
    workspace: WorkspaceOpt = None,
    by: Annotated[
        str | None,
        typer.Option(
            help="Also show the breakdown by domain, annotator or feature (needs --feature)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the report (.json or .csv).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Agreement between annotators, and between LM judges and the human majority."""
    config = settings.build()
    if by is not None and by not in BY_CHOICES:
        raise CuratorError(f"--by must be one of {', '.join(BY_CHOICES)}, not {by!r}")
    if by == "feature" and not config.feature:
        raise CuratorError("--by feature needs --feature NAME")
    with _store(workspace, create=False) as store:
        report = dataset_agreement(store, dataset, config)
    if out is not None:
        export_report(report, out)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    if not report.aspects:
        typer.echo(f"{dataset!r} has no labels yet")
        return
    ties = ", ties left out)" if config.exclude_ties else ")"
    typer.echo(f"agreement in {dataset!r} ({config.scale} scale{ties}")
    group_key = f"feature:{config.feature}" if by == "feature" else by
    for result in report.aspects:
        _print_aspect(result, group_key)
    if out is not None:
        typer.echo(f"wrote {out}")


def register(cli: typer.Typer) -> None:
    cli.command("agreement")(agreement_cmd)
