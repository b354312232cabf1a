"""`curator mix build|list|show|diff|export`, `curator decontam`, `curator coverage`: mixtures,
eval overlap and coverage maps from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli import JsonOpt, WorkspaceOpt, _store
from app.cli_options import ConfigSettings, config_command
from curation.coverage import CoverageConfig
from curation.decontam import DecontamConfig
from curation.workspace import Workspace

mix_app = typer.Typer(
    help="Build, list, compare and export versioned SFT, safety and preference mixtures.",
    no_args_is_help=True,
    add_completion=False,
)
RefArg = Annotated[str, typer.Argument(help="Mixture: NAME (latest version) or NAME@VERSION.")]


def _echo_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@mix_app.command("build")
def build_cmd(
    spec: Annotated[Path, typer.Argument(help="Mixture spec (.yaml, .yml or .json).")],
    workspace: WorkspaceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute the manifest; write nothing.")
    ] = False,
    new_version: Annotated[
        bool,
        typer.Option("--new-version", help="Store a new version even if nothing changed."),
    ] = False,
    background: Annotated[
        bool, typer.Option("--background", help="Build as a background job; print its id.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a spec into a new mixture version and print its manifest (with the content hash)."""
    from curation.mixtures import load_spec
    from training.mix_job import build_mixture

    parsed = load_spec(spec)
    with _store(workspace, create=False) as store:
        if background:
            from app.cli_jobs import enqueue_and_report

            enqueue_and_report(store, "mix", {"spec": parsed.to_dict()}, as_json=as_json)
            return
        result = build_mixture(store, parsed, dry_run=dry_run, new_version=new_version)
    manifest = result.manifest
    if as_json:
        _echo_json(manifest)
        return
    what = "would build" if dry_run else ("unchanged:" if result.reused else "built")
    typer.echo(
        f"{what} {result.ref if not dry_run else parsed.name}: {manifest['rows']:,} "
        f"{parsed.kind} rows, {manifest['content_hash']}"
    )
    for stage in manifest["stages"]:
        typer.echo(f"  stage {stage['name']} (rows {stage['start']}-{stage['end']})")
        for src in stage["sources"]:
            amount = f"count {src['count']}" if "count" in src else f"fraction {src['fraction']}"
            typer.echo(
                f"    {src['source']:<36} {amount:<16} {src['drawn']:>8,} drawn "
                f"({src['after_cleaning']:,} left of {src['instances']:,} after cleaning)"
            )
        if stage.get("safety"):
            safety = stage["safety"]
            for t, info in safety["types"].items():
                name = f"{safety['source']}/{t}"
                typer.echo(
                    f"    {name:<36} {'ratio ' + str(info['ratio']):<16} {info['drawn']:>8,} drawn"
                )
        dedup, decontam = stage["dedup"], stage["decontamination"]
        if dedup.get("enabled"):
            typer.echo(f"    dedup: dropped {dedup['dropped']:,} of {dedup['rows']:,} rows")
        if decontam.get("enabled"):
            flagged = ", ".join(decontam["flagged_sources"]) or "none"
            typer.echo(
                f"    decontamination: {decontam['matched_rows']:,} rows overlap an eval set; "
                f"flagged sources: {flagged}"
            )
    if not dry_run:
        typer.echo(f"  folder: {result.mixture['path']}")


@mix_app.command("list")
def list_cmd(
    name: Annotated[str | None, typer.Argument(help="Only this mixture's versions.")] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List mixture versions, newest first."""
    from curation.mixtures import list_mixtures

    with _store(workspace, create=False) as store:
        rows = list_mixtures(store, name)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['ref']:<32} {r['kind']:<10} {r['rows'] or 0:>9,} rows  {r['content_hash'][:23]}  "
            f"{r['created_at']}"
        )


@mix_app.command("show")
def show_cmd(ref: RefArg, workspace: WorkspaceOpt = None) -> None:
    """Print a version's manifest (JSON)."""
    from curation.mixtures import resolve_mixture

    with _store(workspace, create=False) as store:
        mixture = resolve_mixture(store, ref)
    _echo_json(mixture["manifest"])


@mix_app.command("diff")
def diff_cmd(
    a: RefArg,
    b: RefArg,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare two versions: spec changes, rows per source, rows only in one of them."""
    from curation.mixtures import diff_mixtures

    with _store(workspace, create=False) as store:
        diff = diff_mixtures(store, a, b)
    if as_json:
        _echo_json(diff)
        return
    rows = diff["rows"]
    same = "same content" if diff["same_content"] else "different content"
    typer.echo(
        f"{diff['a']} -> {diff['b']}: {same}; {rows['a']:,} -> {rows['b']:,} rows, "
        f"{rows['shared']:,} shared, {rows['only_a']:,} only in {diff['a']}, "
        f"{rows['only_b']:,} only in {diff['b']}"
    )
    for change in diff["spec_changes"]:
        typer.echo(f"  spec {change['field']}: {change['a']!r} -> {change['b']!r}")
    for c in diff["composition"]:
        if c["change"]:
            typer.echo(f"  {c['stage']}/{c['source']}: {c['a']:,} -> {c['b']:,} ({c['change']:+,})")


@mix_app.command("export")
def export_cmd(
    ref: RefArg,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file (jsonl/parquet) or folder (hf).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, parquet or hf.")] = "jsonl",
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a version as JSONL, Parquet or a saved Hugging Face dataset."""
    from curation.mixtures import export_mixture

    with _store(workspace, create=False) as store:
        report = export_mixture(store, ref, fmt, out)
    if as_json:
        _echo_json(report)
    else:
        typer.echo(f"wrote {report['rows']:,} rows of {report['mixture']} to {report['path']}")


@config_command(DecontamConfig, exclude=("action",))
def decontam_cmd(
    names: Annotated[
        list[str],
        typer.Argument(
            help="The dataset (or file) whose prompts to check; eval sets listed after "
            "--against's first one land here too, so `--against A B C` names three.",
            metavar="DATASET",
        ),
    ],
    settings: ConfigSettings,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            help="Eval set: a workspace dataset or a file (JSONL, CSV/TSV, JSON, Parquet; "
            ".gz too). Several: `--against A B`, `--against A --against B` or `--against A,B`.",
        ),
    ] = None,
    workspace: WorkspaceOpt = None,
    field: Annotated[
        str | None, typer.Option(help="Prompt field of eval files (default: detected).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a dataset's prompts against eval sets with the Tulu 3 8-gram rule."""
    from curation.decontam import decontaminate, load_prompt_set
    from curation.errors import CuratorError

    dataset, extra = names[0], names[1:]
    targets = _split([*(against or []), *extra])
    if not targets:
        raise CuratorError("name the eval sets to check against: --against EVAL...")
    config = settings.build(action="report")  # this command reports; a mixture's spec acts
    ws = Workspace.resolve(workspace)
    with _store(ws, create=False) as store:
        texts, sources = _training_prompts(store, dataset, field)
        evals = [load_prompt_set(store, ref, field=field) for ref in targets]
    report = decontaminate(texts, sources, evals, config)
    if as_json:
        _echo_json(report.to_dict(limit=None))
        return
    typer.echo(
        f"{dataset}: {len(texts):,} prompts against {len(evals)} eval set(s) in "
        f"{report.seconds:.2f} s; {len(report.matched_rows()):,} prompts overlap"
    )
    for name, info in report.eval_sets.items():
        hits = [item for item in report.sources if item.eval_set == name and item.overlapping]
        typer.echo(f"  {name} ({info['instances']:,} prompts): " + ("" if hits else "no overlap"))
        for item in hits:
            mark = "FLAGGED" if item.flagged else "under the flagging share"
            typer.echo(
                f"    {item.source:<28} overlaps {item.overlapping:,} ({item.fraction:.2%}) "
                f"through {item.rows:,} rows: {mark}"
            )


def _split(values: list[str]) -> list[str]:
    """``--against a --against b`` and ``--against a,b`` both name two eval sets."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _training_prompts(store, dataset: str, field: str | None) -> tuple[list[str], list[str]]:
    """A dataset's user turns, each with its instance's source (or the dataset name)."""
    from curation.decontam import load_prompt_set, user_text

    if store.find_dataset(dataset) is None:
        prompts = load_prompt_set(store, dataset, field=field)
        return prompts.texts, [prompts.name] * len(prompts)
    texts, sources = [], []
    for _, inst in store.iter_instances(dataset):
        texts.append(user_text(inst.prompt, inst.messages))
        sources.append(inst.source or dataset)
    return texts, sources


@config_command(CoverageConfig)
def coverage_cmd(
    datasets: Annotated[
        list[str], typer.Argument(help="Datasets (or files) whose prompts to map.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    settings: ConfigSettings,
    workspace: WorkspaceOpt = None,
    group_by: Annotated[
        str, typer.Option(help="dataset, or split datasets by their source or subset column.")
    ] = "dataset",
    color: Annotated[str, typer.Option(help="Colour points by source or cluster.")] = "source",
    naming: Annotated[
        str, typer.Option(help="Cluster names: terms (c-TF-IDF), tags (embedding tagger), lm-tags.")
    ] = "terms",
    field: Annotated[
        str | None, typer.Option(help="Prompt field of files (default: detected).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed prompts (MiniLM), map them to 2-D (UMAP), cluster (k-means, k by silhouette) and
    write an HTML map with each source's share of each cluster."""
    from curation.coverage import coverage_map, coverage_prompts, name_by_tags, write_html
    from curation.errors import CuratorError

    if naming not in ("terms", "tags", "lm-tags"):
        raise CuratorError(f"naming must be terms, tags or lm-tags, not {naming!r}")
    config = settings.build()
    ws = Workspace.resolve(workspace)
    if ws.exists():
        with _store(ws, create=False) as store:
            sets = coverage_prompts(store, datasets, group_by=group_by, field=field)
    else:  # files only: no workspace needed, nothing cached
        sets = coverage_prompts(None, datasets, group_by=group_by, field=field)
    cmap = coverage_map(sets, config, workspace=ws if ws.exists() else None)
    if naming != "terms":
        from curation.embeddings import Encoder
        from routing.features import FeatureConfig
        from routing.taggers import make_tagger

        encoder = Encoder()
        tagger = make_tagger(
            FeatureConfig(tagger="lm" if naming == "lm-tags" else "embedding"),
            encoder=encoder,
            workspace=ws,
        )
        name_by_tags(cmap, tagger)
    path = write_html(cmap, out, color=color)
    if as_json:
        _echo_json({"out": str(path), **cmap.to_dict()})
        return
    typer.echo(
        f"wrote {path}: {len(cmap.points):,} prompts, k = {cmap.k} "
        f"(silhouette {cmap.silhouette:.3f})"
    )
    shares = cmap.cluster_shares()
    for c, name in cmap.names.items():
        parts = ", ".join(f"{src} {v:.0%}" for src, v in shares.loc[c].items() if v > 0)
        typer.echo(f"  cluster {c} [{name}]: {parts}")


def register(cli: typer.Typer) -> None:
    cli.add_typer(mix_app, name="mix")
    cli.command("decontam")(decontam_cmd)
    cli.command("coverage")(coverage_cmd)
