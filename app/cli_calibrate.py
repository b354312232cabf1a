"""`curator calibrate`: trust-or-escalate thresholds for LM judges (see routing/selective.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store
from app.cli_options import ConfigSettings, config_command
from curation.errors import CuratorError
from routing.selective import SelectiveConfig

if TYPE_CHECKING:
    from routing.selective import Calibration, Cascade


REFERENCE_WORDS = {"human": "the human majority", "gold": "gold labels (gold ties left out)"}


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _judge_name(path: Path) -> str:
    """``gpt-4-turbo.calibration.jsonl`` -> ``gpt-4-turbo``."""
    return path.name.removesuffix(".jsonl").removesuffix(".calibration")


def _describe(stage: Calibration) -> str:
    name = stage.judge or "judge"
    if stage.threshold is None:
        return f"{name}: abstains on all {stage.n} items (no threshold passes the test)"
    guarantee = (
        f"guaranteed agreement {_figure(stage.guaranteed_agreement)} "
        f"with probability {_figure(1 - stage.delta)}"
        if stage.certified
        else "NOT certified (highest threshold kept anyway)"
    )
    return (
        f"{name}: threshold {stage.threshold:.4f}, coverage {_figure(stage.coverage)} "
        f"({stage.n_kept} of {stage.n}), empirical agreement "
        f"{_figure(stage.empirical_agreement)}, {guarantee}"
    )


def _print_cascade(result: Cascade) -> None:
    for stage in result.stages:
        typer.echo("  " + _describe(stage))
    typer.echo(
        f"overall: coverage {_figure(result.coverage)} of {result.n}, empirical agreement "
        f"{_figure(result.empirical_agreement)}, guaranteed agreement "
        f"{_figure(result.guaranteed_agreement)}, {result.n_escalated} escalated to people"
    )
    if result.holds_with_probability is not None:
        typer.echo(
            f"the cascade's guarantee holds with probability {result.holds_with_probability:.3f} "
            f"(union bound over its keeping judges, each tested at delta {result.stage_delta:.4g})"
        )


@config_command(SelectiveConfig)
def calibrate_cmd(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Calibration JSONL files (human preferences + judge probs [pA, pB]), one per "
            "judge, cheapest first; or one dataset name in the workspace (with --judge).",
            show_default=False,
        ),
    ],
    settings: ConfigSettings,
    judge: Annotated[
        list[str] | None,
        typer.Option(
            help="LM judge of the dataset to calibrate; repeat for a cascade, cheapest first "
            "(default: the dataset's only judge)."
        ),
    ] = None,
    keep_top: Annotated[
        bool,
        typer.Option(help="Same as --if-none-pass keep_top (kept for scripts)."),
    ] = False,
    union_bound: Annotated[
        bool,
        typer.Option(
            "--union-bound",
            help="Cascade: test each judge at delta / judges, so the whole cascade holds with "
            "probability 1 - delta (default: the paper's delta per judge).",
        ),
    ] = False,
    escalate_to: Annotated[
        list[str] | None,
        typer.Option(
            "--escalate-to",
            help="Dataset mode: queue the instances no judge keeps for these annotators "
            "(repeat, or separate names by commas), as the Judge page's escalation does.",
        ),
    ] = None,
    overlap: Annotated[
        int, typer.Option(help="Annotators per escalated instance (with --escalate-to).")
    ] = 1,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Calibrate judge confidence thresholds so kept verdicts agree with people at 1 - alpha."""
    from routing.selective import (
        calibrate,
        calibration_items_from_store,
        calibration_reference,
        cascade,
        judges_in,
        load_calibration_jsonl,
    )

    if keep_top:
        settings.values["if_none_pass"] = "keep_top"
    config = settings.build()
    alpha, delta = config.alpha, config.delta
    files = [Path(s) for s in sources]
    annotators = [n.strip() for value in escalate_to or () for n in value.split(",") if n.strip()]
    if escalate_to is not None and not (len(sources) == 1 and not files[0].is_file()):
        raise CuratorError("--escalate-to queues a dataset's instances: name one dataset")
    if escalate_to is not None and not annotators:
        raise CuratorError("--escalate-to needs at least one annotator's name")

    if all(f.is_file() for f in files):
        if judge:
            raise CuratorError("--judge names a judge of a dataset; files are one judge each")
        if config.reference == "gold":
            raise CuratorError("calibration files hold people's preferences: --reference gold "
                               "needs a dataset with gold labels")  # fmt: skip
        judges = [(_judge_name(f), load_calibration_jsonl(f)) for f in files]
        against = "human"
    elif len(sources) == 1:
        with _store(workspace, create=False) as store:
            names = judge or judges_in(store, sources[0])
            if len(names) != 1 and not judge:
                raise CuratorError(
                    f"{sources[0]!r} has judges {', '.join(names) or 'none'}: name one or more "
                    "with --judge"
                )
            against = calibration_reference(store, sources[0], config.reference)
            judges = [
                (n, calibration_items_from_store(store, sources[0], n, reference=against))
                for n in names
            ]
    else:
        missing = next(f for f in files if not f.is_file())
        raise CuratorError(f"{missing} is not a file (several sources must all be files)")

    if len(judges) == 1:
        name, items = judges[0]
        result = calibrate(items, alpha, delta, judge=name, config=config)
        stages, report, text = [result], result.to_dict(), _describe(result)
    else:
        chained = cascade(judges, alpha, delta, config=config, union_bound=union_bound)
        stages, report = chained.stages, chained.to_dict()
        text = f"cascade of {len(judges)} judges (alpha {alpha}, delta {delta})"
    report["reference"] = against
    text = f"calibrated against {REFERENCE_WORDS[against]}\n{text}"
    if annotators:
        report["escalation"] = _escalate(workspace, sources[0], stages, annotators, overlap)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(text)
    if len(judges) > 1:
        _print_cascade(chained)
    if annotators:
        sent = report["escalation"]
        typer.echo(
            f"escalated {sent['instances']:,} instances to {', '.join(annotators)}: "
            f"{sent['created']:,} new assignments, {sent['skipped_existing']:,} already queued"
        )


def _escalate(
    workspace, dataset: str, stages: list[Calibration], annotators: list[str], overlap: int
) -> dict:
    """Queue the instances every judge abstains on at its calibrated threshold (all of them
    where a judge abstains on everything, as its threshold is then None)."""
    from curation.queues import assign_escalations
    from routing.selective import unkept_instance_ids

    with _store(workspace, create=False) as store:
        unkept = unkept_instance_ids(store, dataset, stages)
        return assign_escalations(store, dataset, unkept, annotators, overlap=overlap)


def register(cli: typer.Typer) -> None:
    cli.command("calibrate")(calibrate_cmd)
