"""Export: write a dataset out as JSONL, Parquet or a saved Hugging Face dataset, in the workspace."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import state, widgets
from curation.errors import CuratorError
from curation.exporter import FORMATS, KIND_SHAPES, LABEL_SOURCES, export_dataset

SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}
MIME = {"jsonl": "application/jsonl", "parquet": "application/vnd.apache.parquet"}

state.require_page_role(state.CURATOR)
st.title("Export")
store = state.store()
datasets = state.memo("datasets", store.list_datasets)
if not datasets:
    st.info("No datasets to export yet.")
    st.stop()

kinds = {d["name"]: d["kind"] for d in datasets}
name = st.selectbox(
    "Dataset", list(kinds), key="export_dataset", format_func=lambda n: f"{n} ({kinds[n]})"
)
left, middle, right = st.columns(3)
fmt = left.radio(
    "Format",
    FORMATS,
    horizontal=True,
    key="export_format",
    format_func=lambda f: "HF dataset folder" if f == "hf" else f,
)
shape = middle.selectbox(
    "Shape",
    ["auto", *KIND_SHAPES[kinds[name]]],
    key=f"export_shape_{kinds[name]}",
    help="auto: the usual shape for this kind of data (TRL prompt/chosen/rejected for "
    "preferences); native keeps every field and label and re-imports losslessly.",
)
labels = right.selectbox(
    "Preferred side from",
    LABEL_SOURCES,
    key="export_labels",
    help="For pair shapes: human majority, LM majority, hybrid (human where present, else LM), "
    "or the generator's hidden gold label (demo data).",
)
ties_col, flagged_col, review_col = st.columns(3)
keep_ties = ties_col.checkbox("Keep ties (A as chosen, margin 0)", key="export_ties")
leave_out_flagged = flagged_col.checkbox("Leave out flagged instances", key="export_unflagged")
accepted_only = review_col.checkbox(
    "Accepted labels only",
    key="export_accepted_only",
    help="Count only people's labels a reviewer accepted; a rejected label never counts.",
)
out = st.text_input(
    "Output path",
    value=f"{name}{SUFFIXES[fmt]}",
    key=f"export_out_{name}_{fmt}",
    help="Relative paths land in the workspace's exports folder; paths outside it are refused.",
)

if st.button("Export", type="primary", key="export_go"):
    try:
        target = state.workspace().confine(
            out.strip() or f"{name}{SUFFIXES[fmt]}", base="exports", within_base=True
        )
        with st.spinner("Exporting…"):
            report = export_dataset(
                store,
                name,
                fmt,
                target,
                shape=shape,
                labels=labels,
                keep_ties=keep_ties,
                include_flagged=not leave_out_flagged,
                accepted_only=accepted_only,
            )
    except CuratorError as exc:
        st.session_state.pop("export_result", None)
        widgets.error(exc)
    else:
        st.session_state["export_result"] = report.to_dict()

result = st.session_state.get("export_result")
if result:
    path = Path(result["path"])
    st.success(f"Wrote {result['rows']:,} rows ({result['shape']} shape) to `{path}`.")
    if result["skipped"]:
        left_out = ", ".join(f"{n:,} {why}" for why, n in result["skipped"].items())
        st.warning(f"Left out: {left_out}.")
    st.json(result, expanded=False)
    if result["format"] in MIME and path.is_file():
        st.download_button(
            f"Download {path.name}",
            data=path.read_bytes,  # read only when clicked
            file_name=path.name,
            mime="application/gzip" if path.suffix == ".gz" else MIME[result["format"]],
            key="export_download",
            on_click="ignore",
        )
