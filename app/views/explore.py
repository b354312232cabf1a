"""Explore: filter and search a dataset page by page, read a pair with all its labels, see charts.

Only one page of rows is ever read; counts and facet menus are memoised per store change. Search
is by words (the full-text index) or by meaning (the prompts' sentence vectors, shared with
routing's features), and "More like this" lists the pairs whose prompts are nearest a pair's.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app import state, widgets
from curation import bulk, explore, flags, queues, saved_views, users
from curation.embeddings import Encoder, EncoderConfig
from curation.errors import CuratorError
from curation.store import InstanceFilter
from routing.semantic_search import PromptIndex

PAGE_SIZES = (25, 50, 100, 200)
# Charts aggregate every label under the filter; above this many instances they wait for a click.
CHARTS_ON_BY_DEFAULT_UP_TO = 20_000
BULK_ACTIONS = {
    "assign": "Assign to annotators' queues",
    "flag": "Flag for review",
    "exclude": "Exclude from exports and mixtures",
}
BULK_CONFIRM_ABOVE = 200  # a bulk action over more rows than this asks "all N of them?"
LIKE_KEY = "explore_like"  # (dataset, instance id) of a "More like this"

user = state.require_page_role(state.CURATOR)
st.title("Explore")
store = state.store()
state.show_flash()
datasets = state.memo("datasets", store.list_datasets)
if not datasets:
    st.info("No datasets yet: import one first.")
    importer = state.page("import_data.py")
    if importer:
        st.page_link(str(importer.path), label="Import data", icon=importer.icon)
    st.stop()


@st.cache_resource(show_spinner="Loading the sentence encoder…")
def _encoder() -> Encoder:
    return Encoder(EncoderConfig())


def prompt_index(dataset: str) -> PromptIndex:
    """The dataset's prompt vectors: from the cache features filled, else encoded once now."""

    def build() -> PromptIndex:
        bar = st.progress(0.0, text="Encoding the prompts once (cached for next time)…")

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Encoded {done:,} of {total:,} prompts")

        index = PromptIndex.build(store, dataset, encoder=_encoder(), progress=progress)
        bar.empty()
        return index

    return state.memo(("prompt_index", dataset), build)


def similar_hits(dataset: str, query: str, by_meaning: bool) -> dict[int, float] | None:
    """{instance id: similarity} of a search by meaning or a "More like this", best first;
    None when neither is asked for (the word search and filters then apply as usual)."""
    like = st.session_state.get(LIKE_KEY)
    if like and like[0] == dataset:
        cleared = st.button(f"Back from pairs like #{like[1]}", icon=":material/close:")
        if not cleared:
            st.caption(f"The pairs whose prompts are nearest to #{like[1]}'s, nearest first.")
            return dict(prompt_index(dataset).more_like(like[1]))
        st.session_state.pop(LIKE_KEY)
    if by_meaning and query.strip():
        return dict(prompt_index(dataset).search(query.strip()))
    return None


def bulk_actions(
    store, user, dataset: str, selected: list[int], flt: InstanceFilter, total: int
) -> None:
    """Assign, flag or exclude the selected rows, or every row under the filters, at once."""
    with st.expander(f"Bulk actions ({len(selected)} selected)", icon=":material/checklist:"):
        scopes = {
            "selected": f"The {len(selected)} selected rows",
            "all": f"All {total:,} rows under the filters",
        }
        scope = st.radio(
            "Act on",
            list(scopes),
            format_func=scopes.get,
            horizontal=True,
            key="explore_bulk_scope",
        )
        count = len(selected) if scope == "selected" else total
        action = st.selectbox(
            "Action", list(BULK_ACTIONS), format_func=BULK_ACTIONS.get, key="explore_bulk_action"
        )
        people: list[str] = []
        overlap = 1
        if action == "assign":
            annotators = [u.name for u in users.list_users(store)]
            people = st.multiselect("Annotators", annotators, key="explore_bulk_people")
            overlap = st.number_input(
                "Annotators per pair", 1, max(1, len(people)), 1, key="explore_bulk_overlap"
            )
        elif action == "flag":
            category = st.selectbox(
                "What is wrong",
                flags.FLAG_CATEGORIES,
                index=None,
                placeholder="Choose what is wrong",
                key="explore_bulk_category",
            )
        note = st.text_input("Reason" if action == "exclude" else "Note", key="explore_bulk_note")
        sure = count <= BULK_CONFIRM_ABOVE or st.checkbox(
            f"Yes, all {count:,} of them", key="explore_bulk_sure"
        )
        if not st.button("Apply", key="explore_bulk_go", disabled=count == 0 or not sure):
            return
        ids = selected if scope == "selected" else store.matching_ids(flt)
        actor = None if state.is_local_curator(user) else user
        try:
            if action == "assign":
                report = queues.assign(
                    store, dataset, people, overlap=int(overlap), instance_ids=ids
                )
                message = f"Assigned {widgets.plural(report['created'], 'item')} to {', '.join(people)} ({report['skipped_existing']:,} were already theirs)."
            elif action == "flag":
                if category is None:
                    raise CuratorError("choose what is wrong")
                flagged = bulk.flag_many(store, ids, actor, category, note)
                message = f"Flagged {widgets.plural(flagged, 'instance')} as {category}."
            else:
                excluded = bulk.exclude_many(store, ids, actor, note)
                message = (
                    f"Excluded {widgets.plural(excluded, 'instance')} from exports and mixtures."
                )
        except CuratorError as exc:
            widgets.error(exc)
            return
        state.forget()
        state.flash("success", message)
        st.rerun()


def apply_view(views: dict, dataset: dict, facets: dict) -> None:
    """Set the filter widgets to a saved view's filter (a callback: it runs before the widgets
    are drawn, so their values can still be set)."""
    ss = st.session_state
    view = views.get(ss.get("explore_view"))
    if view is None:
        return
    flt = view.filter(dataset["name"])
    for column, values in (
        ("domain", flt.domains),
        ("source", flt.sources),
        ("subset", flt.subsets),
    ):
        if facets.get(column):
            ss[f"explore_{column}_{dataset['id']}"] = [v for v in values if v in facets[column]]
    named = lambda table, value: next(k for k, v in table.items() if v == value)  # noqa: E731
    ss["explore_hv"] = named(widgets.VERDICTS, flt.human_verdict)
    ss["explore_lv"] = named(widgets.VERDICTS, flt.lm_verdict)
    ss["explore_agree"] = named(widgets.AGREEMENT, flt.agreement)
    ss["explore_hh"] = named(widgets.TRI_STATE, flt.has_human)
    ss["explore_hl"] = named(widgets.TRI_STATE, flt.has_lm)
    ss["explore_empty"] = named(widgets.TRI_STATE, flt.empty_response)
    ss["explore_search"] = flt.search
    ss["explore_by_meaning"] = False
    ss.pop(LIKE_KEY, None)


def save_view_form(store, user, flt: InstanceFilter) -> None:
    """Name the filters in use, for the team to apply again (or type after `--where`)."""
    with st.popover("Save this view", icon=":material/bookmark_add:"):
        view_name = st.text_input("Name", key="explore_view_name")
        for_all = st.checkbox("For every dataset", key="explore_view_any")
        if st.button("Save", key="explore_view_save"):
            scoped = replace(flt, dataset=None if for_all else flt.dataset, ids=None)
            actor = None if state.is_local_curator(user) else user
            try:
                saved = saved_views.save_view(store, view_name, scoped, user=actor)
            except CuratorError as exc:
                widgets.error(exc)
                return
            state.flash("success", f"Saved the view {saved.name!r}: {saved.query or 'no filter'}.")
            st.rerun()


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
    views = {v.name: v for v in saved_views.list_views(store, name)}
    if views:
        st.selectbox(
            "Saved view",
            list(views),
            index=None,
            placeholder="Apply a saved view",
            key="explore_view",
            on_change=apply_view,
            args=(views, dataset, facets),
        )
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

search_col, meaning_col = st.columns([4, 1], vertical_alignment="bottom")
by_meaning = meaning_col.toggle(
    "By meaning",
    key="explore_by_meaning",
    help="Find prompts that mean what you type, in other words too (sentence embeddings).",
)
search = search_col.text_input(
    "Search prompts" if by_meaning else "Search prompts and responses",
    key="explore_search",
    placeholder="what the prompt is about" if by_meaning else "words that must all appear",
)
hits = similar_hits(name, search, by_meaning)
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
    search="" if hits is not None else search.strip(),
    ids=None if hits is None else list(hits),
)
filter_key = repr(flt)
with st.sidebar:
    save_view_form(store, user, flt)

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

if hits is None:
    rows = store.page_instances(flt, limit=page_size, offset=(page - 1) * page_size)
else:  # a search by meaning: its hits under the filters, most similar first
    rows = store.page_instances(flt, limit=len(hits) or 1)
    rows.sort(key=lambda r: -hits[r["id"]])
    rows = rows[(page - 1) * page_size : page * page_size]
if not rows:
    st.info("Nothing matches these filters.")
    st.stop()

frame = widgets.instances_frame(rows)
if hits is not None:
    frame.insert(1, "similarity", [round(hits[r["id"]], 3) for r in rows])
table = st.dataframe(
    frame,
    hide_index=True,
    key="explore_table",
    on_select="rerun",
    selection_mode="multi-row",
    column_config={"prompt": st.column_config.TextColumn(width="large")},
)
selected = [i for i in table.selection.rows if i < len(rows)]
position = selected[-1] if selected else 0  # the pair shown: the row picked last
instance_id = rows[position]["id"]
bulk_actions(store, user, name, [rows[i]["id"] for i in selected], flt, total)

pair_tab, charts_tab = st.tabs(["Pair", "Charts"])
with pair_tab:
    instance = store.instance(instance_id)
    show_gold = False
    if instance.get("gold") is not None:
        show_gold = st.checkbox("Show hidden gold label (demo data)", key="explore_gold")
    widgets.pair_view(
        instance, store.annotations_for(instance_id), show_gold=show_gold, search=flt.search
    )
    left, right = st.columns(2)
    with left:
        widgets.flag_control(store, instance_id, user, key="explore")
    if right.button("More like this", icon=":material/join:", key="explore_more_like"):
        st.session_state[LIKE_KEY] = (name, instance_id)
        st.rerun()

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
