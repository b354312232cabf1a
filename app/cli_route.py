"""`curator features`, `curator sweep`, `curator route`: the routing pipeline from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli import JsonOpt, NumGpusOpt, WorkspaceOpt, _fail, _store, gpu_spec, progress_bar
from app.cli_options import ConfigSettings, config_command
from curation.workspace import Workspace
from routing.features import FeatureConfig, compute_features
from routing.router import RouteConfig, default_method, route, save_plan
from routing.sweeps import SweepConfig, run_sweep, sweep_info

BackgroundOpt = Annotated[
    bool, typer.Option("--background", help="Run as a background job; print its id.")
]


@config_command(FeatureConfig)
def features_cmd(
    dataset: Annotated[str, typer.Argument(help="Preference dataset whose pairs to describe.")],
    settings: ConfigSettings,
    workspace: WorkspaceOpt = None,
    background: BackgroundOpt = False,
    num_gpus: NumGpusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute and store the routing features (lexical measures in thirds, prompt tags, the
    judge's own signals, the pair's domain)."""
    config = settings.build()
    ws = Workspace.resolve(workspace)
    with _store(ws, create=False) as store:
        store.dataset(dataset)
        if background:
            from app.cli_jobs import enqueue_and_report
            from training.routing_jobs import features_spec

            spec = features_spec(dataset, config) | gpu_spec(num_gpus)
            enqueue_and_report(store, "features", spec, as_json=as_json)
            return
        with progress_bar("features", "pair", quiet=as_json) as update:
            summary = compute_features(
                store,
                dataset,
                config,
                progress=lambda stage, done, total: update(done, total, stage),
            )
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    typer.echo(
        f"{dataset}: {summary.instances} pairs, {len(summary.counts)} binary features "
        f"({len(summary.measures)} measures in thirds, tags: {', '.join(summary.tags) or 'none'})"
    )
    for name, tag in summary.tag_report().items():
        line = f"  {name}: {tag['unknown_share']:.0%} unknown"
        if not tag["used_by_predictor"]:
            line += f"; left out of the routing predictor: {tag['reason']}"
        typer.echo(line)


@config_command(SweepConfig, computed=("target",))
def sweep_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset labelled by both humans and an LM.")],
    settings: ConfigSettings,
    eval_set: Annotated[
        str | None,
        typer.Option("--eval", help="RewardBench-format eval dataset (implies --target eval)."),
    ] = None,
    workspace: WorkspaceOpt = None,
    kind: Annotated[
        str | None,
        typer.Option(
            help="Predictor fitted after the sweep: linear, quadratic or lightgbm "
            "(default: the one that routed best on held-out real data, linear)."
        ),
    ] = None,  # fmt: skip
    add_to: Annotated[int | None, typer.Option(help="Add the runs to this existing sweep.")] = None,
    reward_steps: Annotated[
        int, typer.Option(help="reward_model: optimiser steps per run (-1: one epoch).")
    ] = -1,
    background: BackgroundOpt = False,
    num_gpus: NumGpusOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train reward probes on sampled human/LM splits, score them, fit the performance predictor.
    The target is eval where --eval names an eval set, else crossfit."""
    from routing.ppm import DEFAULT_KIND, PPMConfig, train_ppm

    kind = kind or DEFAULT_KIND
    config = settings.build(target="eval" if eval_set else "crossfit")
    if config.target == "eval" and eval_set is None and add_to is None:
        raise _fail("name the eval set: --eval EVALSET (a RewardBench-format dataset)")
    if config.scorer != "probe" and not background:
        raise _fail("a reward_model sweep trains a model per run: run it with --background")
    with _store(workspace, create=False) as store:
        if background:
            from app.cli_jobs import enqueue_and_report
            from training.routing_jobs import sweep_spec

            if add_to is not None:
                raise _fail("--add-to runs in the foreground only")
            reward = {"max_steps": reward_steps} if reward_steps > 0 else {}
            spec = sweep_spec(dataset, eval_set, config, ppm_kind=kind, reward=reward)
            enqueue_and_report(store, "sweep", spec | gpu_spec(num_gpus), as_json=as_json)
            return
        with progress_bar("sweep", "run", quiet=as_json) as progress:
            sweep_id = run_sweep(store, dataset, eval_set, config, sweep_id=add_to,
                                 progress=progress)  # fmt: skip
        predictor = train_ppm(store, sweep_id, PPMConfig(kind=kind))
        info = sweep_info(store, sweep_id)
    cv = predictor.metrics["cv"]
    result = {
        "sweep_id": sweep_id,
        "runs": info["runs"],
        "target": info["config"].get("target"),
        "ppm_id": predictor.id,
        "kind": predictor.kind,
        "cv": cv,
        "baselines": predictor.metrics["baselines"],
        "top_features": dict(list(predictor.metrics["importances"].items())[:10]),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    scored_on = info["eval_dataset"] or "its own pairs, cross-fitted"
    typer.echo(
        f"sweep {sweep_id}: {info['runs']} runs on {info['dataset']} scored on {scored_on}; "
        f"predictor {predictor.id} ({predictor.kind}): CV R^2 {cv['r2']:.3f}, Spearman "
        f"{cv['spearman']:.3f}; with the budget's share removed: partial R^2 "
        f"{cv.get('partial_r2', float('nan')):.3f}, Spearman within budget "
        f"{cv.get('spearman_within_budget', float('nan')):.3f}"
    )
    for name, metrics in predictor.metrics["baselines"].items():
        typer.echo(
            f"  {name:<10} R^2 {metrics['r2']:7.3f}  Spearman {metrics['spearman']:6.3f}  "
            f"partial R^2 {metrics.get('partial_r2', float('nan')):7.3f}"
        )
    typer.echo("Prove it before you trust it: `curator route " + dataset + " --evaluate`.")


@config_command(RouteConfig, computed=("method",))
def route_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset to route (its features must exist).")],
    settings: ConfigSettings,
    workspace: WorkspaceOpt = None,
    ppm: Annotated[
        int | None, typer.Option(help="Predictor id (default: the newest for the dataset).")
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Prove the routing: reward models on routed, random, all-human, all-LM, oracle "
            "and confidence splits, paired over seeds, on rows no sweep run was scored on.",
        ),
    ] = False,
    eval_set: Annotated[
        str | None, typer.Option("--eval", help="Eval set for --evaluate (default: the sweep's).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="--evaluate: paired seeds.")] = 10,
    folds: Annotated[
        int | None, typer.Option(help="--evaluate: crossfit folds (default: the sweep's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Choose the instances that go to humans and store the plan (or, with --evaluate, prove it).
    The method is topk for a linear predictor, simulated for the others, unless --method says."""
    from curation.errors import CuratorError
    from routing.evaluation import EvaluateConfig, prove_predictor, routing_table
    from routing.ppm import load_ppm

    with _store(workspace, create=False) as store:
        store.dataset(dataset)
        if ppm is None:
            try:
                predictor = load_ppm(store, dataset=dataset)
            except CuratorError:
                predictor = load_ppm(store)
        else:
            predictor = load_ppm(store, ppm)
        route_config = settings.build(method=default_method(predictor.kind))
        method = route_config.method
        if evaluate:
            config = EvaluateConfig(seeds=seeds, route=route_config)
            with progress_bar("evaluate", "model", quiet=as_json) as progress:
                proof = prove_predictor(store, dataset, predictor, config, eval_set=eval_set,
                                        folds=folds, progress=progress)  # fmt: skip
            if as_json:
                keys = (
                    "method", "budget", "mean", "std", "seeds", "delta_vs_random", "delta_se",
                    "delta_vs_all_lm", "delta_vs_all_lm_se", "delta_vs_all_human",
                    "delta_vs_all_human_se", "best_baseline", "delta_vs_best",
                    "delta_vs_best_se", "delta", "se", "verdict", "significant",
                )  # fmt: skip
                rows = [{k: r[k] for k in keys if k in r} for r in proof.rows]
                typer.echo(json.dumps(rows, indent=2))
                return
            typer.echo(
                f"{dataset}: reward probes scored on {proof.scored_on}; router {method} with "
                f"predictor {predictor.id} ({predictor.kind}); {seeds} paired seeds"
            )
            typer.echo(routing_table(proof.rows))
            if not proof.confidence_router:
                typer.echo("(no confidence router: the LM labels carry no confidence or order)")
            if not proof.headroom["significant"]:
                typer.echo("Routing is not shown to help on this data: see the verdict above.")
            return
        plan = route(store, dataset, route_config, predictor=predictor)
        save_plan(store, plan)
    summary = plan.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(
        f"route plan {plan.id}: {summary['human']} of {len(plan.instance_ids)} instances to humans "
        f"({method}), predicted score {plan.predicted_score:.4f}; queue them with "
        f"`curator assign {dataset} --plan {plan.id} --to NAME`"
    )


def register(cli: typer.Typer) -> None:
    cli.command("features")(features_cmd)
    cli.command("sweep")(sweep_cmd)
    cli.command("route")(route_cmd)
