"""Agreement: how far annotators agree with each other, and LM judges with the human majority.

Every figure comes from :mod:`curation.agreement`; this page picks the dataset and the level,
and shows the report as tables and charts.
"""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from app import state, widgets
from curation.agreement import (
    ALPHA_LEVELS,
    SCALES,
    AgreementConfig,
    agreement_matrix,
    feature_names,
    labelled_aspects,
    load_labels,
    measure,
)
from curation.errors import CuratorError

SCALE_NAMES = {"verdict": "Verdict (A / tie / B)", "five": "Five-point scale"}
NO_FEATURE = "(none)"


def _figure(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


state.require_page_role(state.CURATOR)
st.title("Agreement")
store = state.store()
datasets = [d for d in state.memo("datasets", store.list_datasets) if d["kind"] == "preference"]
if not datasets:
    st.info("No preference datasets yet: import one, or build the demo workspace.")
    st.stop()

names = [d["name"] for d in datasets]
name = st.selectbox("Dataset", names, key="agreement_dataset")
features = state.memo(("agreement_features", name), lambda: feature_names(store, name))
left, middle, right = st.columns(3)
scale = left.radio(
    "Compare",
    list(SCALES),
    format_func=SCALE_NAMES.get,
    horizontal=True,
    key="agreement_scale",
    help="Verdicts collapse 'clearly' and 'slightly'; the five-point scale keeps them apart.",
)
alpha_level = middle.selectbox("Krippendorff's alpha level", ALPHA_LEVELS, key="agreement_alpha")
feature = right.selectbox("Break down by feature", [NO_FEATURE, *features], key="agreement_feature")
ties_col, review_col = st.columns(2)
exclude_ties = ties_col.checkbox(
    "Leave out comparisons in which a side says tie", key="agreement_exclude_ties"
)
accepted_only = review_col.checkbox(
    "Accepted labels only",
    key="agreement_accepted_only",
    help="Count only people's labels a reviewer accepted; rejected labels never count.",
)
feature = None if feature == NO_FEATURE else feature

try:
    labels = state.memo(
        ("agreement_labels", name, feature, accepted_only),
        lambda: load_labels(store, name, feature=feature, accepted_only=accepted_only),
    )
except CuratorError as exc:
    widgets.error(exc)
    st.stop()
aspects = labelled_aspects(labels)
if not aspects:
    st.info(f"{name} has no labels yet.")
    st.stop()
aspect = st.selectbox("Aspect", aspects, key=f"agreement_aspect_{name}")
config = AgreementConfig(
    scale=scale,
    alpha_level=alpha_level,
    exclude_ties=exclude_ties,
    feature=feature,
    accepted_only=accepted_only,
)
report = state.memo(("agreement", name, config), lambda: measure(labels, config, dataset=name))
result = report.aspect(aspect)

columns = st.columns(4)
columns[0].metric(
    "Pairwise agreement",
    _figure(result.pairwise),
    help="Share of annotator "
    f"pairs on the same instance who agree ({result.n_comparisons:,} comparisons).",
)
columns[1].metric(
    "Fleiss' kappa",
    _figure(result.fleiss.kappa),
    help=f"On the {result.fleiss.n_items:,} instances with {result.fleiss.raters_per_item or 0} "
    f"raters; {result.fleiss.n_items_left_out:,} with another rater count left out.",
)
columns[2].metric(
    f"Krippendorff's alpha ({alpha_level})",
    _figure(result.krippendorff.alpha),
    help=f"Over the {result.krippendorff.n_items:,} instances with two or more labels.",
)
lm = result.human_vs_lm.lm_majority
columns[3].metric(
    "LM vs human majority",
    _figure(lm.agreement),
    help=f"LM majority verdict against human majority on {lm.n_items:,} instances.",
)

st.subheader("Annotator pairs")
matrix = state.memo(
    ("agreement_matrix", name, feature, aspect, scale, exclude_ties, accepted_only),
    lambda: agreement_matrix(labels, aspect, scale=scale, exclude_ties=exclude_ties),
)
if len(matrix) > 1:
    fig = px.imshow(
        matrix,
        text_auto=".2f" if len(matrix) <= 15 else False,
        zmin=0,
        zmax=1,
        color_continuous_scale="Blues",
        labels={"color": "agreement"},
    )
    st.plotly_chart(fig, width="stretch", key="agreement_heatmap")
st.dataframe(result.pairs_frame(), hide_index=True, key="agreement_pairs")

st.subheader("Annotators")
st.dataframe(result.annotators_frame(), hide_index=True, key="agreement_annotators")

st.subheader("LM judges vs the human majority")
judges = [result.human_vs_lm.lm_majority, *result.human_vs_lm.judges]
st.dataframe([vars(j) for j in judges if j.n_items], hide_index=True, key="agreement_judges")
groups = [f"feature:{feature}"] if feature else []
for by in ["domain", *groups]:
    frame = result.human_lm_frame(by)
    st.markdown(f"**By {by.removeprefix('feature:')}**")
    if frame.empty:
        st.caption("No instances with both a human majority and an LM label.")
        continue
    fig = px.bar(
        frame,
        x="group",
        y="agreement",
        color="judge",
        barmode="group",
        hover_data=["n_items"],
        range_y=[0, 1],
        labels={"group": "", "agreement": "agreement with human majority"},
    )
    fig.update_yaxes(tickformat=".0%")
    st.plotly_chart(fig, width="stretch", key=f"agreement_bars_{by}")
    st.dataframe(result.groups_frame(by), hide_index=True, key=f"agreement_groups_{by}")

left, right = st.columns(2)
stem = f"{name}-agreement-{scale}"
left.download_button(
    "Download JSON",
    data=report.to_json(),
    file_name=f"{stem}.json",
    mime="application/json",
    key="agreement_json",
    on_click="ignore",
)
right.download_button(
    "Download CSV",
    data=report.to_csv(),
    file_name=f"{stem}.csv",
    mime="text/csv",
    key="agreement_csv",
    on_click="ignore",
)
