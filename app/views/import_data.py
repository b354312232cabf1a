"""Import: a file (uploaded or already in the workspace) or a hub id into a dataset; and the
datasets already there, renamed or deleted.

An import is all or nothing: when rows are wrong, every problem is listed and the store is left
as it was, unless "skip bad rows" is ticked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from app import state, widgets
from curation import datasets, explore, presets
from curation.errors import CuratorError, ImportFailed
from curation.importer import ImportOptions, import_path
from curation.label_import import LABEL_FIELDS, MATCH_MODES, LabelImportOptions, import_labels
from curation.records import ANNOTATOR_KINDS
from curation.store import Store
from curation.users import User
from curation.value_maps import parse_value_maps

UPLOAD, WORKSPACE_PATH, HUB = "Upload a file", "A file in the workspace", "A Hugging Face hub id"
NEW_PAIRS, LABELS_ONLY = "Data for a dataset", "Labels for pairs already in a dataset"
IF_EXISTS = {
    "new": "Refuse (a new dataset only)",
    "append": "Append the new ids",
    "replace": "Replace its contents",
}
AUTO = "auto-detect"
RESULT_FOR = "import_result_for"  # the file the kept result belongs to
UNMAPPED = "(not mapped)"
UPLOAD_TYPES = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet", "pq", "gz"]
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?")


def save_upload(uploaded) -> Path:
    """Keep an uploaded file under the workspace's imports folder (never beside it)."""
    name = Path(uploaded.name).name
    if name in ("", ".", ".."):
        name = "upload.jsonl"
    target = state.workspace().confine(name, base="imports")
    data = uploaded.getvalue()
    stem, suffix, n = target.name.split(".", 1)[0], "".join(target.suffixes), 1
    while target.exists() and target.read_bytes() != data:
        n += 1
        target = target.with_name(f"{stem}-{n}{suffix}")
    if not target.exists():
        target.write_bytes(data)
    return target


def dataset_name_for(source: str) -> str:
    stem = Path(source.rstrip("/")).name.split(":", 1)[0]
    return stem.split(".", 1)[0] or "imported"


def show_result_for(source: str) -> None:
    """The last result, unless another file has been chosen since (its error is not this one's)."""
    if "import_result" in st.session_state and st.session_state.get(RESULT_FOR) == source:
        show_result(st.session_state["import_result"])


def show_result(result: dict) -> None:
    if result["ok"] and "matched" in result["report"]:
        report = result["report"]
        st.success(
            f"Matched {widgets.plural(report['matched'], 'pair')} of {report['dataset']!r} "
            f"({report['flipped']:,} with A and B swapped, their labels flipped): "
            f"{report['labels_added']:,} labels added, {report['labels_updated']:,} updated."
        )
        if report["unmatched_count"]:
            st.warning(f"Skipped {widgets.plural(report['unmatched_count'], 'row')}.")
            st.dataframe(pd.DataFrame(result["problems"]), hide_index=True)
    elif result["ok"]:
        report = result["report"]
        verb = {"new": "Imported", "append": "Appended", "replace": "Replaced the contents with"}
        st.success(
            f"{verb[report['mode']]} {widgets.plural(report['instances'], 'instance')} and "
            f"{widgets.plural(report['labels'], 'label')} into dataset {report['dataset']!r} "
            f"(preset {report['preset']})."
        )
        notes = []
        if report["empty_responses"]:
            notes.append(
                f"{widgets.plural(report['empty_responses'], 'pair')} with an empty response"
            )
        if report["kept_in_metadata"]:
            notes.append("kept as metadata: " + ", ".join(report["kept_in_metadata"]))
        if report["ignored"]:
            notes.append("ignored columns: " + ", ".join(report["ignored"]))
        for note in notes:
            st.caption(note)
        if report["skipped_count"]:
            st.warning(f"Skipped {widgets.plural(report['skipped_count'], 'bad row')}.")
            st.dataframe(pd.DataFrame(result["problems"]), hide_index=True)
        explore_page = state.page("explore.py")
        if explore_page:
            st.page_link(str(explore_page.path), label="Open it in Explore", icon=explore_page.icon)
    else:
        st.error(result["message"])
        if result["problems"]:
            st.dataframe(pd.DataFrame(result["problems"]), hide_index=True)


def attempt(run, source: str) -> None:
    """Run an import (or a labels import) and keep its result to show on every rerun, for as
    long as the same file is chosen."""
    st.session_state[RESULT_FOR] = source
    try:
        report, skipped = run()
    except ImportFailed as exc:
        if len(exc.problems) == 1 and exc.problems[0].line is None:  # the whole file refused
            st.session_state["import_result"] = {"ok": False, "message": str(exc), "problems": []}
            return
        total = len(exc.problems) + exc.truncated
        more = f" (the first {len(exc.problems)} are listed)" if exc.truncated else ""
        st.session_state["import_result"] = {
            "ok": False,
            "message": f"Import failed, nothing was written: {widgets.plural(total, 'problem')}{more}.",
            "problems": problem_rows(exc.problems),
        }
    except CuratorError as exc:
        st.session_state["import_result"] = {"ok": False, "message": str(exc), "problems": []}
    else:
        state.forget()
        st.session_state["import_result"] = {
            "ok": True,
            "report": report,
            "problems": problem_rows(skipped),
        }


def labels_form(store: Store, source: str, columns: list[str], local: bool) -> None:
    """Attach a file's labels to a preference dataset's pairs (`curator labels import`)."""
    names = [d["name"] for d in store.list_datasets() if d["kind"] == "preference"]
    if not names:
        st.info("No preference dataset yet: import the pairs first.")
        return
    left, middle, right = st.columns(3)
    target = left.selectbox("Dataset", names, key="labels_dataset")
    match = middle.radio(
        "Match rows by",
        MATCH_MODES,
        format_func={"id": "id", "content": "prompt and responses"}.get,
        horizontal=True,
        key="labels_match",
    )
    kind = right.radio("Labelled by", ANNOTATOR_KINDS, horizontal=True, key="labels_kind")
    annotator = left.text_input(
        "Annotator or judge name", key="labels_annotator", help="Default: the annotator column."
    )
    mapping: dict[str, str] = {}
    if columns:
        grid = st.columns(4)
        options = [UNMAPPED, *columns]
        fields = ("id", "prompt", "response_a", "response_b", *LABEL_FIELDS, "confidence")
        for i, name in enumerate(fields):
            choice = grid[i % 4].selectbox(
                name,
                options,
                index=options.index(name) if name in columns else 0,
                key=f"labels_map_{name}",
            )
            if choice not in (UNMAPPED, name):
                mapping[name] = choice
    value_text = st.text_area(
        "Value maps (optional)", key="labels_values", placeholder="label:0=A,1=B,2=tie"
    )
    skip_bad = st.checkbox("Skip rows that match nothing (list them)", key="labels_skip")
    if st.button("Attach labels", type="primary", key="labels_go"):

        def run():
            options = LabelImportOptions(
                dataset=target,
                match=match,
                annotator=annotator.strip() or None,
                kind=kind,
                mapping=mapping,
                values=parse_value_maps(value_text.split()),
                skip_bad=skip_bad,
                format=None if local else "hub",
            )
            report = import_labels(store, source, options)
            return report.to_dict(), report.unmatched

        attempt(run, source)
    show_result_for(source)


def problem_rows(problems) -> list[dict]:
    return [
        {"file": p.file, "line": p.line, "field": p.field or "", "problem": p.message}
        for p in problems
    ]


def rename(store: Store, user: User) -> None:
    ss = st.session_state
    old, new = ss.get("datasets_rename_from"), ss.get("datasets_rename_to", "")
    try:
        report = datasets.rename_dataset(
            store, old, new, user=None if state.is_local_curator(user) else user
        )
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    state.forget()
    ss["datasets_rename_from"], ss["datasets_rename_to"] = report["to"], ""
    state.flash("success", f"Renamed dataset {old!r} to {report['to']!r}.")


def delete(store: Store, user: User) -> None:
    ss = st.session_state
    name = ss.get("datasets_delete_name")
    try:
        report = datasets.delete_dataset(
            store,
            name,
            force=bool(ss.get("datasets_delete_force")),
            user=None if state.is_local_curator(user) else user,
        )
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    state.forget()
    for key in ("datasets_delete_name", "datasets_delete_force", "datasets_delete_confirm"):
        ss.pop(key, None)
    instances = report["rows"].get("instances", 0)
    state.flash("success", f"Deleted dataset {name!r} and its {instances:,} instances.")


def manage_datasets(store: Store, user: User) -> None:
    """Rename a dataset, or delete one once its name is typed to confirm (and, where records
    refer to it, once the curator chose to delete anyway)."""
    names = [d["name"] for d in store.list_datasets()]
    with st.expander("Manage datasets", icon=":material/database:"):
        if not names:
            st.caption("No datasets yet.")
            return
        left, right = st.columns(2)
        left.markdown("**Rename**")
        left.selectbox("Dataset", names, key="datasets_rename_from")
        left.text_input("New name", key="datasets_rename_to")
        left.button("Rename", key="datasets_rename_go", on_click=rename, args=(store, user))
        right.markdown("**Delete**")
        name = right.selectbox("Dataset", names, key="datasets_delete_name")
        refs = state.memo(("dataset_refs", name), lambda: datasets.dataset_references(store, name))
        blocked = False
        if refs:
            right.warning("Referred to by " + ", ".join(r.label for r in refs) + ".")
            if any(r.running for r in refs):
                right.caption("A job is running on it: wait for it or cancel it first.")
                blocked = True
            else:
                blocked = not right.checkbox(
                    "Delete anyway (its sweeps, PPMs and route plans go with it)",
                    key="datasets_delete_force",
                )
        typed = right.text_input(f"Type {name} to confirm", key="datasets_delete_confirm")
        right.button(
            "Delete dataset",
            key="datasets_delete_go",
            disabled=blocked or typed.strip() != name,
            on_click=delete,
            args=(store, user),
        )


user = state.require_page_role(state.CURATOR)
st.title("Import")
store = state.store()
state.show_flash()
manage_datasets(store, user)

kind = st.radio("Source", [UPLOAD, WORKSPACE_PATH, HUB], horizontal=True, key="import_kind")
source: str | None = None
local = True
if kind == UPLOAD:
    uploaded = st.file_uploader("File", type=UPLOAD_TYPES, key="import_upload")
    if uploaded is not None:
        saved = state.memo(("upload", uploaded.file_id), lambda: save_upload(uploaded))
        source = str(saved)
        st.caption(f"Saved as `{saved.relative_to(state.workspace().root)}` in the workspace.")
elif kind == WORKSPACE_PATH:
    typed = st.text_input(
        "Path",
        key="import_path",
        help="Relative paths are looked up in the workspace's imports folder.",
    )
    if typed.strip():
        try:
            source = str(state.workspace().confine(typed.strip(), base="imports"))
        except CuratorError as exc:
            widgets.error(exc)
else:
    local = False
    typed = st.text_input(
        "Hub id", key="import_hub", placeholder="allenai/multipref or org/name:config"
    )
    source = typed.strip() or None
    # `datasets` also loads local files and folders by path: one typed here would get round the
    # workspace confinement of the path box, so only an id that names no local path is taken.
    if source and (not HUB_ID.fullmatch(source) or Path(source.split(":", 1)[0]).exists()):
        st.error(f"{source!r} is not a hub id: use org/name or org/name:config.")
        st.stop()

if not source:
    st.info("Choose what to import.")
    st.stop()

holds = st.radio(
    "The file holds",
    [NEW_PAIRS, LABELS_ONLY],
    horizontal=True,
    key="import_holds",
    help="Labels for pairs already in a dataset (a judge's verdicts, another team's labels) "
    "attach to them, matched by id or by prompt and responses.",
)

columns: list[str] = []
sample: list[dict] = []
if local:
    try:
        stat = Path(source).stat()
        columns, sample = state.memo(
            ("preview", source, stat.st_mtime_ns, stat.st_size),
            lambda: explore.preview_records(source),
        )
    except OSError:
        st.error(f"No file at {source}.")
        st.stop()
    except CuratorError as exc:
        widgets.error(exc)
        st.stop()
    with st.expander(f"First rows ({len(columns)} columns)", expanded=False):
        st.dataframe(pd.DataFrame(sample).astype(str), hide_index=True)

# detect_preset also loads every registered preset, so PRESETS is complete after it.
detected = presets.detect_preset(set(columns)) if columns else None
names = sorted(presets.PRESETS)
left, right = st.columns(2)
preset_choice = left.selectbox(
    "Preset",
    [AUTO, *names],
    key="import_preset",
    help="Auto-detect recognises known schemas from their columns.",
    format_func=lambda n: (
        n if n != AUTO else (f"auto-detect ({detected.name})" if detected else "auto-detect")
    ),
)
dataset = right.text_input(
    "Dataset name", value=dataset_name_for(source), key=f"import_dataset_{source}"
)
if preset_choice != AUTO:
    st.caption(presets.get_preset(preset_choice).description)
elif detected:
    st.caption(f"Looks like **{detected.name}**: {detected.description}")
elif local:
    st.warning("This schema is not one Hybrid Curator knows: map its columns below.")

mapping: dict[str, str] = {}
form_preset = None
if local and columns:
    default_preset = (
        preset_choice if preset_choice != AUTO else (detected.name if detected else "pairwise")
    )
    with st.expander("Map columns", expanded=preset_choice == AUTO and detected is None):
        form_preset = presets.get_preset(
            st.selectbox(
                "Fields of preset",
                names,
                index=names.index(default_preset),
                key="import_map_preset",
            )
        )
        options = [UNMAPPED, *columns]
        grid = st.columns(3)
        for i, field in enumerate(form_preset.fields):
            choice = grid[i % 3].selectbox(
                field,
                options,
                index=options.index(field) if field in columns else 0,
                key=f"import_map_{form_preset.name}_{field}",
            )
            if choice != UNMAPPED and choice != field:
                mapping[field] = choice

if holds == LABELS_ONLY:
    labels_form(store, source, columns, local)
    st.stop()

value_text = st.text_area(
    "Value maps (optional)",
    key="import_values",
    placeholder="label:0=A,1=B,2=tie",
    help="One per line, FIELD:CODE=VALUE,...: what a field's codes mean. A label column of "
    "codes 0..3 only is refused without one, since 0/1/2 can mean A/B/tie.",
)
left, middle, right = st.columns(3)
skip_bad = left.checkbox("Skip bad rows (import the good ones, list the rest)", key="import_skip")
require_nonempty = middle.checkbox("Refuse empty responses", key="import_nonempty")
exists = store.find_dataset(dataset.strip()) if dataset.strip() else None
mode = "new"
if exists:
    mode = right.radio(
        f"Dataset {dataset.strip()!r} exists",
        list(IF_EXISTS),
        format_func=IF_EXISTS.get,
        key="import_mode",
    )
metadata_only = st.multiselect(
    "Columns that look like labels but are only metadata",
    columns,
    key="import_metadata_only",
    help="A column named like labels (label, winner, annotator_1, ...) that the preset does not "
    "read refuses the import, unless it is named here.",
)

if st.button("Import", type="primary", key="import_go"):
    chosen = preset_choice if preset_choice != AUTO else None
    if chosen is None and detected is None and form_preset is not None:
        chosen = form_preset.name
    bar = st.progress(0.0, text="Reading…")

    def progress(rows: int, fraction: float | None) -> None:
        bar.progress(min(1.0, fraction or 0.0), text=f"{rows:,} rows read")

    def run():
        options = ImportOptions(
            dataset=dataset.strip() or None,
            preset=chosen,
            mapping=mapping,
            values=parse_value_maps(value_text.split()),
            skip_bad=skip_bad,
            format=None if local else "hub",
            mode=mode,
            require_nonempty=require_nonempty,
            metadata_only=tuple(metadata_only),
        )
        report = import_path(store, source, options, progress=progress)
        return report.to_dict(), report.skipped

    attempt(run, source)
    bar.empty()

show_result_for(source)
