"""The `curator` command line: the same functions the app calls, for scripts and checks.

Errors a user can cause print as one clear message (no traceback) and exit non-zero.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from curation.errors import CuratorError, ImportFailed
from curation.workspace import ENV_VAR, Workspace

cli = typer.Typer(
    name="curator",
    help="Hybrid Curator: inspect, annotate, judge, route and mix LLM post-training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        help=f"Workspace folder (default: ${ENV_VAR} or ./workspace).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
NumGpusOpt = Annotated[
    float | None,
    typer.Option(
        "--num-gpus",
        min=0,
        help="With --background, for a Ray worker: GPUs to reserve (per shard for features, per "
        "run for a reward-model sweep; default: the worker's --num-gpus).",
    ),
]


def gpu_spec(num_gpus: float | None) -> dict[str, float]:
    """A background job's spec entry for ``--num-gpus`` (none when not given)."""
    return {} if num_gpus is None else {"num_gpus": float(num_gpus)}


ValuesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--values",
        help="FIELD:CODE=VALUE,...: what a field's codes mean, e.g. label:0=A,1=B,2=tie (repeatable).",
    ),
]

APP_SCRIPT = Path(__file__).resolve().parent / "Home.py"


def _store(workspace: Path | Workspace | None, *, create: bool = True):
    from curation.store import Store

    ws = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
    return Store.open(ws, create=create)


@contextlib.contextmanager
def progress_bar(desc: str, unit: str, *, quiet: bool) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr fed ``(done, total[, stage])``; silent for --json output and when
    stderr is not a terminal (a log file gets the result, not hundreds of redraws)."""
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=quiet or not sys.stderr.isatty())

    def update(done: int, total: int, stage: str | None = None) -> None:
        if stage:
            bar.set_description(stage)
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        yield update
    finally:
        bar.close()


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@cli.command("stats")
def stats_cmd(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Count datasets, instances and labels in a workspace."""
    with _store(workspace, create=False) as store:
        stats = store.stats()
        datasets = store.list_datasets()
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    typer.echo(f"workspace {stats['workspace']} (schema v{stats['schema_version']})")
    typer.echo(
        f"{stats['datasets']} datasets, {stats['instances']} instances, "
        f"{stats['annotations']['human']} human and {stats['annotations']['lm']} LM labels"
    )
    for d in datasets:
        typer.echo(
            f"  {d['name']:<28} {d['kind']:<10} {d['instances']:>8} instances "
            f"{d['human_labels']:>7} human {d['lm_labels']:>7} LM"
        )


datasets_app = typer.Typer(
    help="List the datasets of a workspace (no subcommand), or rename or delete one.",
    invoke_without_command=True,
    add_completion=False,
)
cli.add_typer(datasets_app, name="datasets")


@datasets_app.callback()
def datasets_cmd(
    ctx: typer.Context, workspace: WorkspaceOpt = None, as_json: JsonOpt = False
) -> None:
    """List the datasets of a workspace (no subcommand), or rename or delete one."""
    if ctx.invoked_subcommand is not None:
        # `curator datasets -w WS delete NAME` works as `curator datasets delete NAME -w WS`
        ctx.obj = {"workspace": workspace, "json": as_json}
        return
    with _store(workspace, create=False) as store:
        rows = store.list_datasets()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for d in rows:
        typer.echo(f"{d['name']}\t{d['kind']}\t{d['instances']}")


def _group_option(ctx: typer.Context, key: str, value: Any) -> Any:
    return value or (ctx.obj or {}).get(key)


@datasets_app.command("rename")
def datasets_rename(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The dataset's name now.")],
    new: Annotated[str, typer.Argument(help="Its new name (not one in use).")],
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Rename a dataset; jobs, runs and PPMs that name it are updated to the new name."""
    from curation.datasets import rename_dataset

    with _store(_group_option(ctx, "workspace", workspace), create=False) as store:
        report = rename_dataset(store, old, new)
    if _group_option(ctx, "json", as_json):
        typer.echo(json.dumps(report, indent=2))
        return
    updated = ", ".join(f"{n} {what}" for what, n in report["updated"].items())
    typer.echo(
        f"renamed dataset {old!r} to {report['to']!r}"
        + (f" (updated {updated})" if updated else "")
    )


@datasets_app.command("delete")
def datasets_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset to delete.")],
    workspace: WorkspaceOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Delete even while jobs, sweeps, PPMs, route plans, mixtures or runs refer to "
            "it (its sweeps, PPMs and route plans go with it; never while a job runs on it)."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a dataset with its instances, labels, queues, flags and features, all at once."""
    from curation.datasets import dataset_references, delete_dataset

    with _store(_group_option(ctx, "workspace", workspace), create=False) as store:
        refs = dataset_references(store, name)
        if not yes and (force or not refs):  # a refusal needs no confirmation
            size = next(d["instances"] for d in store.list_datasets() if d["name"] == name)
            also = f", and {len(refs)} records that refer to it" if refs else ""
            typer.confirm(
                f"Delete dataset {name!r}, its {size} instances and their labels{also}?",
                abort=True,
                err=True,
            )
        report = delete_dataset(store, name, force=force)
    if _group_option(ctx, "json", as_json):
        typer.echo(json.dumps(report, indent=2))
        return
    rows = ", ".join(f"{n} {table}" for table, n in report["rows"].items())
    typer.echo(f"deleted dataset {name!r}" + (f": {rows}" if rows else ""))


@cli.command("presets")
def presets_cmd(as_json: JsonOpt = False) -> None:
    """List the import presets (known schemas) and the fields each maps."""
    from curation.presets import PRESETS

    rows = [
        {
            "name": p.name,
            "kind": p.kind,
            "signature": list(p.signature),
            "description": p.description,
        }
        for p in sorted(PRESETS.values(), key=lambda p: p.name)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(f"{r['name']:<18} {r['kind']:<10} {r['description']}")


@cli.command("import")
def import_cmd(
    path: Annotated[
        str, typer.Argument(help="File, saved HF dataset folder, or hub id (org/name[:config]).")
    ],
    workspace: WorkspaceOpt = None,
    preset: Annotated[
        str | None,
        typer.Option(help="Schema preset (see `curator presets`); detected when omitted."),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset to import into (default: the file's name).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="FIELD=COLUMN: read a preset field from another column (repeatable)."
        ),
    ] = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Import the good rows and report the bad ones.")
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, json, csv, parquet, hf or hub.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of an HF dataset.")] = None,
    values: ValuesOpt = None,
    append: Annotated[
        bool, typer.Option("--append", help="Add the file's new ids to an existing dataset.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Swap an existing dataset's contents for the file's."),
    ] = False,
    require_nonempty: Annotated[
        bool,
        typer.Option("--require-nonempty", help="Refuse rows whose response is empty."),
    ] = False,
    metadata_only: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata-only",
            help="COLUMN that looks like labels but is only metadata: keep it as such (repeatable).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a file into a dataset: all or nothing, unless --skip-bad."""
    from tqdm import tqdm

    from curation.importer import ImportOptions, import_path
    from curation.preset_fields import parse_mapping
    from curation.value_maps import parse_value_maps

    if append and replace:
        raise _fail("--append and --replace exclude each other", code=2)
    options = ImportOptions(
        dataset=dataset,
        preset=preset,
        mapping=parse_mapping(map_ or []),
        values=parse_value_maps(values or []),
        skip_bad=skip_bad,
        format=fmt,
        split=split,
        mode="append" if append else "replace" if replace else "new",
        require_nonempty=require_nonempty,
        metadata_only=tuple(metadata_only or ()),
    )
    bar = tqdm(total=100, unit="%", desc="import", disable=as_json or not sys.stderr.isatty())

    def progress(rows: int, fraction: float | None) -> None:
        bar.set_postfix(rows=rows)
        if fraction is not None:
            bar.update(round(fraction * 100) - bar.n)

    with _store(workspace) as store:
        try:
            report = import_path(store, path, options, progress=progress)
        finally:
            bar.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    verb = {"new": "imported", "append": "appended", "replace": "replaced with"}[report.mode]
    typer.echo(
        f"{verb} {report.instances} instances and {report.annotations} labels into "
        f"{report.dataset!r} (preset {report.preset})"
    )
    if report.replaced:
        typer.echo(f"removed the {report.replaced} instances it held before")
    if report.empty_responses:
        typer.echo(f"{report.empty_responses} pairs have an empty response (kept)")
    if report.kept_in_metadata:
        typer.echo(f"kept as metadata: {', '.join(report.kept_in_metadata)}")
    if report.ignored:
        typer.echo(f"ignored columns: {', '.join(report.ignored)}")
    if report.skipped_count:
        typer.echo(f"skipped {report.skipped_count} bad rows:")
        for problem in report.skipped:
            typer.echo(f"  {problem}")
        if report.skipped_count > len(report.skipped):
            typer.echo(f"  ... and {report.skipped_count - len(report.skipped)} more")


labels_app = typer.Typer(help="Attach labels to pairs already in a dataset.", no_args_is_help=True)
cli.add_typer(labels_app, name="labels")


@labels_app.command("import")
def labels_import_cmd(
    path: Annotated[str, typer.Argument(help="File, saved HF dataset folder, or hub id.")],
    dataset: Annotated[str, typer.Option(help="Dataset whose pairs the labels are for.")],
    workspace: WorkspaceOpt = None,
    match: Annotated[
        str, typer.Option(help="id: by the row's id; content: by prompt and responses.")
    ] = "id",
    annotator: Annotated[
        str | None,
        typer.Option(help="Who labelled every row (default: the annotator column)."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="human or lm (default: the annotator_kind column, or human).")
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="FIELD=COLUMN: read a field from another column (repeatable)."),
    ] = None,
    values: ValuesOpt = None,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Attach the good rows and report the others.")
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl, json, csv, parquet, hf or hub.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Attach a file's labels (a judge's verdicts, another team's) to a dataset's pairs."""
    from curation.label_import import LabelImportOptions, import_labels
    from curation.preset_fields import parse_mapping
    from curation.value_maps import parse_value_maps

    options = LabelImportOptions(
        dataset=dataset,
        match=match,
        annotator=annotator,
        kind=kind,
        mapping=parse_mapping(map_ or []),
        values=parse_value_maps(values or []),
        skip_bad=skip_bad,
        format=fmt,
    )
    with _store(workspace, create=False) as store:
        report = import_labels(store, path, options)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(
        f"matched {report.matched} pairs of {report.dataset!r} ({report.flipped} with A and B "
        f"swapped, flipped): {report.labels_added} labels added, {report.labels_updated} updated"
    )
    if report.unmatched_count:
        typer.echo(f"skipped {report.unmatched_count} rows:")
        for problem in report.unmatched:
            typer.echo(f"  {problem}")


@cli.command("export")
def export_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset to export.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file (jsonl/parquet) or folder (hf).")
    ],
    workspace: WorkspaceOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, parquet or hf.")] = "jsonl",
    shape: Annotated[
        str,
        typer.Option(help="auto, native, preference, sft, safety or eval (auto: by dataset kind)."),
    ] = "auto",
    labels: Annotated[
        str, typer.Option(help="Preference labels from: hybrid, human, lm or gold.")
    ] = "hybrid",
    keep_ties: Annotated[bool, typer.Option(help="Keep tied pairs in preference exports.")] = False,
    accepted_only: Annotated[
        bool,
        typer.Option(
            "--accepted-only",
            help="Count only people's labels a reviewer accepted (rejected ones never count).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a dataset in TRL-ready shapes (or the lossless native form)."""
    from curation.exporter import export_dataset

    with _store(workspace, create=False) as store:
        report = export_dataset(
            store,
            dataset,
            fmt,
            out,
            shape=shape,
            labels=labels,
            keep_ties=keep_ties,
            accepted_only=accepted_only,
        )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        typer.echo(f"wrote {report.rows} rows ({report.shape}) to {report.path}")


@cli.command("push")
def push_cmd(
    dataset: Annotated[str, typer.Argument(help="Dataset to push.")],
    repo: Annotated[str, typer.Option(help="Hub repository id, e.g. my-org/my-prefs.")],
    workspace: WorkspaceOpt = None,
    shape: Annotated[str, typer.Option(help="As for export.")] = "auto",
    labels: Annotated[str, typer.Option(help="As for export.")] = "hybrid",
    public: Annotated[bool, typer.Option(help="Create a public repository.")] = False,
    token_env: Annotated[
        str, typer.Option(help="Environment variable holding the hub token.")
    ] = "HF_TOKEN",
) -> None:
    """Push a dataset to the Hugging Face Hub (the token is read from the environment, never stored)."""
    from curation.exporter import push_to_hub

    token = os.environ.get(token_env, "")
    with _store(workspace, create=False) as store:
        url = push_to_hub(
            store, dataset, repo, token=token, shape=shape, labels=labels, private=not public
        )
    typer.echo(f"pushed {dataset} to {url}")


@cli.command("demo")
def demo_cmd(
    workspace: WorkspaceOpt = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the generator (same seed, same workspace).")
    ] = 0,
    pairs: Annotated[int, typer.Option(help="Number of preference pairs.")] = 2400,
    no_ui: Annotated[bool, typer.Option("--no-ui", help="Only build the workspace.")] = False,
    force: Annotated[bool, typer.Option(help="Rebuild even if the demo datasets exist.")] = False,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
    host: Annotated[str, typer.Option(help="Address the app listens on.")] = "127.0.0.1",
) -> None:
    """Build the simulated demo workspace (deterministic from --seed) and open the app on it."""
    from curation.demo import DEMO_DATASETS, build_demo

    ws = Workspace.resolve(workspace)
    with _store(ws) as store:
        present = [d for d in DEMO_DATASETS if store.find_dataset(d)]
        if present and not force:
            typer.echo(f"demo workspace already built at {ws.root} ({', '.join(present)})")
        else:
            if present:
                for name in present:
                    store.delete_dataset(name)
            summary = build_demo(store, seed=seed, n_pairs=pairs)
            typer.echo(f"built the demo workspace at {ws.root}: {json.dumps(summary)}")
    if not no_ui:
        _run_ui(ws, port=port, host=host)


@cli.command("ui")
def ui_cmd(
    workspace: WorkspaceOpt = None,
    port: Annotated[int, typer.Option(help="Port of the app.")] = 8501,
    host: Annotated[str, typer.Option(help="Address the app listens on.")] = "127.0.0.1",
) -> None:
    """Start the Streamlit app on a workspace."""
    ws = Workspace.resolve(workspace)
    _store(ws).close()  # create and migrate before the app's first page load
    _run_ui(ws, port=port, host=host)


def _run_ui(ws: Workspace, *, port: int, host: str) -> None:
    """Replace this process with the Streamlit server (so Ctrl-C and signals reach it)."""
    env = dict(os.environ, **{ENV_VAR: str(ws.root)})
    args = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    typer.echo(f"Hybrid Curator on http://{host}:{port} (workspace {ws.root})")
    sys.stdout.flush()
    os.execve(sys.executable, args, env)


# Command groups that live in their own modules (one per capability); each exposes
# ``register(cli)``. Listed here so `curator --help` shows every command in one place.
COMMAND_MODULES = (
    "app.cli_team",
    "app.cli_agreement",
    "app.cli_judges",
    "app.cli_calibrate",
    "app.cli_route",
    "app.cli_jobs",
    "app.cli_mix",
)


def _register_command_modules() -> None:
    import importlib

    if __name__ == "__main__":
        # `python -m app.cli` runs this file as __main__, while the command modules import
        # `app.cli`: hand over to that module rather than build a second, half-registered CLI.
        from app.cli import main as canonical_main

        canonical_main()
        raise SystemExit(0)

    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(cli)


_register_command_modules()


def main() -> None:
    """Entry point of the `curator` script: user errors become one line and exit status 1 or 2.

    Typer's standalone mode handles usage errors and --help; what it lets through are our own
    errors (shown without a traceback) and bugs (shown with one).
    """
    try:
        cli()
    except ImportFailed as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None
    except CuratorError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
