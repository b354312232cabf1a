"""Home: what the workspace holds, and what to do next."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from app.guidance import next_steps

user = state.require_page_role(state.CURATOR)
st.title("Hybrid Curator")
st.caption("Curate preference, SFT and safety data with humans and LM judges side by side.")

store = state.store()
stats = state.memo("stats", store.stats)
datasets = state.memo("datasets", store.list_datasets)

cols = st.columns(4)
cols[0].metric("Datasets", stats["datasets"])
cols[1].metric("Instances", f"{stats['instances']:,}")
cols[2].metric("Human labels", f"{stats['annotations']['human']:,}")
cols[3].metric("LM labels", f"{stats['annotations']['lm']:,}")
st.caption(f"Workspace `{stats['workspace']}` · store schema version {stats['schema_version']}")

st.subheader("Datasets")
if datasets:
    frame = pd.DataFrame(datasets)[
        ["name", "kind", "instances", "human_labels", "lm_labels", "source", "created_at"]
    ]
    st.dataframe(frame, hide_index=True)
else:
    st.info(
        "This workspace is empty. Import a file on the Import page, or build the demo "
        "workspace from a terminal with `curator demo`."
    )

st.subheader("What to do next")
allowed = {spec.script: spec for spec in state.pages_for(user)}
for step in state.memo("next_steps", lambda: next_steps(store)):
    spec = allowed.get(step.script)
    if spec is not None:
        st.page_link(str(spec.path), label=spec.title, icon=spec.icon)
        st.caption(step.reason)

with st.expander("Every page"):
    for spec in allowed.values():
        if spec.script != "home.py":
            st.page_link(str(spec.path), label=f"{spec.title}: {spec.summary}", icon=spec.icon)
