"""Explore: filter and search a dataset page by page, read a pair with all its labels, see charts.

Only one page of rows is ever read; counts and facet menus are memoised per store change.
"""

from __future__ import annotations

import streamlit as st

from app import state, widgets
from curation import explore
from curation.errors import CuratorError
from curation.store import InstanceFilter

PAGE_SIZES = (25, 50, 100, 200)
# Charts aggregate every label under the filter; above this many instances they wait for a click.
CHARTS_ON_BY_DEFAULT_UP_TO = 20_000

user = state.require_page_role(state.CURATOR)
st.title("Explore")
store = state.store()
datasets = state.memo("datasets", store.list_datasets)
if not datasets:
    st.info("No datasets yet: import one first.")
    importer = state.page("import_data.py")
    if importer:
        st.page_link(str(importer.path), label="Import data", icon=importer.icon)
    st.stop()

by_name = {d["name"]: d for d in datasets}
with st.sidebar:
    name = st.selectbox(
        "Dataset",
        list(by_name),
        key="explore_dataset",
        format_func=lambda n: f"{n} ({by_name[n]['kind']}, {by_name[n]['instances']:,})",
    )
    dataset = by_name[name]
    facets = state.memo(("facets", name), lambda: explore.facet_values(store, name))
    picked = {}
    for column in explore.FACETS:
        if facets[column]:
            picked[column] = st.multiselect(
                column.capitalize(), facets[column], key=f"explore_{column}_{dataset['id']}"
            )
    human_verdict = st.selectbox("Human verdict", list(widgets.VERDICTS), key="explore_hv")
    lm_verdict = st.selectbox("LM verdict", list(widgets.VERDICTS), key="explore_lv")
    agreement = st.radio(
        "Human vs LM", list(widgets.AGREEMENT), horizontal=True, key="explore_agree"
    )
    has_human = st.radio(
        "Has human labels", list(widgets.TRI_STATE), horizontal=True, key="explore_hh"
    )
    has_lm = st.radio("Has LM labels", list(widgets.TRI_STATE), horizontal=True, key="explore_hl")
    empty_response = st.radio(
        "Empty response",
        list(widgets.TRI_STATE),
        horizontal=True,
        key="explore_empty",
        help="Pairs where a response is empty or only whitespace (imported as data).",
    )

search = st.text_input(
    "Search prompts and responses", key="explore_search", placeholder="words that must all appear"
)
flt = InstanceFilter(
    dataset=name,
    domains=picked.get("domain", []),
    sources=picked.get("source", []),
    subsets=picked.get("subset", []),
    human_verdict=widgets.VERDICTS[human_verdict],
    lm_verdict=widgets.VERDICTS[lm_verdict],
    agreement=widgets.AGREEMENT[agreement],
    has_human=widgets.TRI_STATE[has_human],
    has_lm=widgets.TRI_STATE[has_lm],
    empty_response=widgets.TRI_STATE[empty_response],
    search=search.strip(),
)
filter_key = repr(flt)

try:
    total = state.memo(("count", filter_key), lambda: store.count_instances(flt))
except CuratorError as exc:
    widgets.error(exc)
    st.stop()

size_col, page_col, count_col = st.columns([1, 1, 2], vertical_alignment="bottom")
page_size = size_col.selectbox("Rows per page", PAGE_SIZES, index=1, key="explore_page_size")
pages = max(1, -(-total // page_size))
# A new filter starts at page 1; a page number past the end is pulled back in range.
if st.session_state.get("explore_last_filter") != filter_key:
    st.session_state["explore_last_filter"] = filter_key
    st.session_state["explore_page"] = 1
if st.session_state.get("explore_page", 1) > pages:
    st.session_state["explore_page"] = pages
page = page_col.number_input("Page", min_value=1, max_value=pages, step=1, key="explore_page")
# A row picked on another page or under another filter means nothing here.
if st.session_state.get("explore_last_view") != (filter_key, page, page_size):
    st.session_state["explore_last_view"] = (filter_key, page, page_size)
    st.session_state.pop("explore_table", None)
count_col.markdown(f"**{total:,}** of {dataset['instances']:,} instances · page {page} of {pages}")

rows = store.page_instances(flt, limit=page_size, offset=(page - 1) * page_size)
if not rows:
    st.info("Nothing matches these filters.")
    st.stop()

table = st.dataframe(
    widgets.instances_frame(rows),
    hide_index=True,
    key="explore_table",
    on_select="rerun",
    selection_mode="single-row-required",
    column_config={"prompt": st.column_config.TextColumn(width="large")},
)
selected = table.selection.rows
position = selected[0] if selected and selected[0] < len(rows) else 0
instance_id = rows[position]["id"]

pair_tab, charts_tab = st.tabs(["Pair", "Charts"])
with pair_tab:
    instance = store.instance(instance_id)
    show_gold = False
    if instance.get("gold") is not None:
        show_gold = st.checkbox("Show hidden gold label (demo data)", key="explore_gold")
    widgets.pair_view(instance, store.annotations_for(instance_id), show_gold=show_gold)
    widgets.flag_control(store, instance_id, user, key="explore")

with charts_tab:
    if st.toggle(
        "Compute charts for this filter",
        value=total <= CHARTS_ON_BY_DEFAULT_UP_TO,
        key="explore_charts",
    ):
        st.subheader("Label distribution, human vs LM")
        counts = state.memo(("labels", filter_key), lambda: store.label_counts(flt))
        widgets.label_distribution_chart(explore.label_shares(counts))
        left, right = st.columns(2)
        with left:
            st.subheader("Agreement by domain")
            widgets.agreement_chart(
                state.memo(("agree", filter_key), lambda: explore.agreement_by_domain(store, flt))
            )
        with right:
            st.subheader("Verdicts, human vs LM")
            widgets.confusion_chart(
                state.memo(("confusion", filter_key), lambda: explore.verdict_confusion(store, flt))
            )
