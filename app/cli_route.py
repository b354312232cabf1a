"""`curator features`, `curator sweep`, `curator route`: the routing pipeline from the command line."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _fail, _store, progress_bar
from curation.workspace import Workspace


def features_cmd(
    dataset: Annotated[str, typer.Argument(help="Preference dataset whose pairs to describe.")],
    workspace: WorkspaceOpt = None,
    tagger: Annotated[
        str, typer.Option(help="embedding (fast, default), lm (a judge model answers), none.")
    ] = "embedding",
    encoder: Annotated[
        str | None, typer.Option(help="Sentence encoder (default: the embedded MiniLM).")
    ] = None,
    tagger_backend: Annotated[
        str, typer.Option(help="LM tagger: transformers, vllm or openai.")
    ] = "transformers",
    tagger_model: Annotated[
        str | None, typer.Option(help="LM tagger model (default: the embedded SmolLM2).")
    ] = None,
    tagger_url: Annotated[str | None, typer.Option(help="LM tagger server (openai).")] = None,
    max_length: Annotated[int, typer.Option(help="Tokens kept per text.")] = 256,
    device: Annotated[str, typer.Option(help="Where the encoder runs: cpu, cuda or auto.")] = "cpu",
    batch_size: Annotated[
        int, typer.Option(help="Texts per encoder forward pass (raise it on a GPU, e.g. 256).")
    ] = 16,
    as_json: JsonOpt = False,
) -> None:
    """Compute and store the routing features (lexical measures in thirds, prompt tags)."""
    from routing.embeddings import EncoderConfig
    from routing.features import FeatureConfig, compute_features

    config = FeatureConfig(
        encoder=EncoderConfig(
            encoder=encoder, max_length=max_length, batch_size=batch_size, device=device
        ),
        tagger=tagger,
        tagger_backend=tagger_backend,
        tagger_model=tagger_model,
        tagger_url=tagger_url,
    )
    ws = Workspace.resolve(workspace)
    with _store(ws, create=False) as store:
        store.dataset(dataset)
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


def sweep_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset labelled by both humans and an LM.")],
    eval_set: Annotated[
        str | None, typer.Option("--eval", help="RewardBench-format eval dataset.")
    ] = None,
    runs: Annotated[int, typer.Option(help="Reward models to train.")] = 200,
    workspace: WorkspaceOpt = None,
    sampler: Annotated[str, typer.Option(help="grouped, uniform or mixed.")] = "mixed",
    seed: Annotated[int, typer.Option(help="Seed of the split draws.")] = 0,
    judge: Annotated[
        str | None, typer.Option(help="LM judge whose labels to use (default: the most used).")
    ] = None,
    slight: Annotated[
        str, typer.Option(help="collapse ('A slightly' counts as A) or drop.")
    ] = "collapse",
    kind: Annotated[
        str, typer.Option(help="Predictor fitted after the sweep: lightgbm, linear, quadratic.")
    ] = "lightgbm",
    add_to: Annotated[int | None, typer.Option(help="Add the runs to this existing sweep.")] = None,
    scorer: Annotated[
        str,
        typer.Option(
            help="probe (fast, default) or reward_model (a full reward model a run; "
            "needs --background)."
        ),
    ] = "probe",
    reward_steps: Annotated[
        int, typer.Option(help="reward_model: optimiser steps per run (-1: one epoch).")
    ] = -1,
    background: Annotated[
        bool, typer.Option("--background", help="Run as a background job; print its id.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train reward probes on sampled human/LM splits, score them, fit the performance predictor."""
    from routing.ppm import PPMConfig, train_ppm
    from routing.splits import LabelConfig
    from routing.sweeps import SweepConfig, run_sweep, sweep_info

    if eval_set is None and add_to is None:
        raise _fail("name the eval set: --eval EVALSET (a RewardBench-format dataset)")
    config = SweepConfig(
        runs=runs,
        sampler=sampler,
        seed=seed,
        scorer=scorer,
        labels=LabelConfig(slight=slight, judge=judge),
    ).validate()
    if scorer != "probe" and not background:
        raise _fail("a reward_model sweep trains a model per run: run it with --background")
    with _store(workspace, create=False) as store:
        if background:
            from app.cli_jobs import enqueue_and_report
            from training.routing_jobs import sweep_spec

            if add_to is not None:
                raise _fail("--add-to runs in the foreground only")
            reward = {"max_steps": reward_steps} if reward_steps > 0 else {}
            spec = sweep_spec(dataset, eval_set or "", config, ppm_kind=kind, reward=reward)
            enqueue_and_report(store, "sweep", spec, as_json=as_json)
            return
        with progress_bar("sweep", "run", quiet=as_json) as progress:
            sweep_id = run_sweep(
                store, dataset, eval_set or "", config, sweep_id=add_to, progress=progress
            )
        predictor = train_ppm(store, sweep_id, PPMConfig(kind=kind))
        info = sweep_info(store, sweep_id)
    cv = predictor.metrics["cv"]
    result = {
        "sweep_id": sweep_id,
        "runs": info["runs"],
        "ppm_id": predictor.id,
        "kind": predictor.kind,
        "cv": cv,
        "baselines": predictor.metrics["baselines"],
        "top_features": dict(list(predictor.metrics["importances"].items())[:10]),
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(
        f"sweep {sweep_id}: {info['runs']} runs on {info['dataset']} scored on "
        f"{info['eval_dataset']}; predictor {predictor.id} ({predictor.kind}): "
        f"CV R^2 {cv['r2']:.3f}, Spearman {cv['spearman']:.3f}"
    )
    for name, metrics in predictor.metrics["baselines"].items():
        typer.echo(f"  {name:<10} R^2 {metrics['r2']:7.3f}  Spearman {metrics['spearman']:6.3f}")


def route_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset to route (its features must exist).")],
    budget: Annotated[
        float, typer.Option(help="Human share (0-1) or a number of instances.")
    ] = 0.25,
    method: Annotated[str, typer.Option(help="topk, simulated or greedy.")] = "topk",
    workspace: WorkspaceOpt = None,
    ppm: Annotated[
        int | None, typer.Option(help="Predictor id (default: the newest for the dataset).")
    ] = None,
    candidates: Annotated[int, typer.Option(help="simulated: candidate splits.")] = 1000,
    seed: Annotated[int, typer.Option(help="Tie-breaking and candidate draws.")] = 0,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Train reward models on routed, random, all-human and all-LM splits and compare.",
        ),
    ] = False,
    eval_set: Annotated[
        str | None, typer.Option("--eval", help="Eval set for --evaluate (default: the sweep's).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="--evaluate: seeds per method and budget.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Choose the instances that go to humans and store the plan (or, with --evaluate, prove it)."""
    from curation.errors import CuratorError
    from routing.evaluation import EvaluateConfig, evaluate_routing, routing_table
    from routing.ppm import load_ppm
    from routing.router import RouteConfig, route, save_plan
    from routing.sweeps import SweepConfig, SweepData

    route_config = RouteConfig(method=method, budget=budget, candidates=candidates, seed=seed)
    with _store(workspace, create=False) as store:
        store.dataset(dataset)
        if ppm is None:
            try:
                predictor = load_ppm(store, dataset=dataset)
            except CuratorError:
                predictor = load_ppm(store)
        else:
            predictor = load_ppm(store, ppm)
        if evaluate:
            eval_name = eval_set or predictor.provenance.get("eval_dataset")
            if not eval_name:
                raise _fail("name the eval set with --eval")
            # the same labels the predictor's sweep trained on
            stored = SweepConfig.from_dict(predictor.provenance.get("sweep_config") or {})
            data = SweepData.load(store, dataset, eval_name, labels=stored.labels)
            config = EvaluateConfig(seeds=seeds, route=route_config)
            with progress_bar("evaluate", "model", quiet=as_json) as progress:
                rows = evaluate_routing(data, predictor, config, progress=progress)
            if as_json:
                typer.echo(json.dumps([{k: r[k] for k in ("method", "budget", "mean", "std",
                                                          "seeds")} for r in rows], indent=2))  # fmt: skip
            else:
                typer.echo(
                    f"{dataset}: reward probes scored on {eval_name} (RewardBench overall), "
                    f"router {method} with predictor {predictor.id}"
                )
                typer.echo(routing_table(rows))
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
