"""Import: a file (uploaded or already in the workspace) or a hub id into a dataset.

An import is all or nothing: when rows are wrong, every problem is listed and the store is left
as it was, unless "skip bad rows" is ticked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import streamlit as st

from app import state, widgets
from curation import explore, presets
from curation.errors import CuratorError, ImportFailed
from curation.importer import ImportOptions, import_path

UPLOAD, WORKSPACE_PATH, HUB = "Upload a file", "A file in the workspace", "A Hugging Face hub id"
AUTO = "auto-detect"
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


def show_result(result: dict) -> None:
    if result["ok"]:
        report = result["report"]
        st.success(
            f"Imported {report['instances']:,} instances and {report['annotations']:,} labels "
            f"into dataset {report['dataset']!r} (preset {report['preset']})."
        )
        if report["skipped"]:
            st.warning(f"Skipped {report['skipped']:,} bad rows.")
            st.dataframe(pd.DataFrame(result["problems"]), hide_index=True)
        st.json(report, expanded=False)
    else:
        st.error(result["message"])
        if result["problems"]:
            st.dataframe(pd.DataFrame(result["problems"]), hide_index=True)


def problem_rows(problems) -> list[dict]:
    return [
        {"file": p.file, "line": p.line, "field": p.field or "", "problem": p.message}
        for p in problems
    ]


state.require_page_role(state.CURATOR)
st.title("Import")
store = state.store()

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

skip_bad = st.checkbox("Skip bad rows (import the good ones, list the rest)", key="import_skip")

if st.button("Import", type="primary", key="import_go"):
    chosen = preset_choice if preset_choice != AUTO else None
    if chosen is None and detected is None and form_preset is not None:
        chosen = form_preset.name
    options = ImportOptions(
        dataset=dataset.strip() or None,
        preset=chosen,
        mapping=mapping,
        skip_bad=skip_bad,
        format=None if local else "hub",
    )
    bar = st.progress(0.0, text="Reading…")

    def progress(rows: int, fraction: float | None) -> None:
        bar.progress(min(1.0, fraction or 0.0), text=f"{rows:,} rows read")

    try:
        report = import_path(store, source, options, progress=progress)
    except ImportFailed as exc:
        total = len(exc.problems) + exc.truncated
        more = f" (the first {len(exc.problems)} are listed)" if exc.truncated else ""
        st.session_state["import_result"] = {
            "ok": False,
            "message": f"Import failed, nothing was written: {total:,} problems{more}.",
            "problems": problem_rows(exc.problems),
        }
    except CuratorError as exc:
        st.session_state["import_result"] = {"ok": False, "message": str(exc), "problems": []}
    else:
        state.forget()
        st.session_state["import_result"] = {
            "ok": True,
            "report": report.to_dict(),
            "problems": problem_rows(report.skipped),
        }
    bar.empty()

if "import_result" in st.session_state:
    show_result(st.session_state["import_result"])
