"""Review (reviewers and curators): people's submitted labels, one at a time; accept, edit or
reject each with a note. Decisions are recorded with who and when (:mod:`curation.review`); a
rejected label leaves agreement, exports, mixtures and routing, and each of those can be asked
to count accepted labels only."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state, widgets
from curation import review
from curation.errors import CuratorError
from curation.labels import ASPECTS, SCALE, SCALE_NAMES
from curation.store import Store
from curation.users import User

STATES = {"unreviewed": "To review", "accepted": "Accepted", "rejected": "Rejected"}
NO_LABEL = "(none)"


def decide(store: Store, user: User, item: review.ReviewItem, action: str) -> None:
    """A button's callback: record the decision, then the next label shows."""
    ss = st.session_state
    note = ss.get(f"review_note_{item.annotation_id}", "")
    actor = None if state.is_local_curator(user) else user
    try:
        if action == "accept":
            review.accept(store, item.annotation_id, actor, note)
        elif action == "reject":
            review.reject(store, item.annotation_id, actor, note)
        else:
            changes = {}
            for aspect in ASPECTS:
                shown = ss.get(f"review_edit_{aspect}_{item.annotation_id}")
                value = None if shown == NO_LABEL else shown
                if value != item.labels[aspect]:
                    changes[aspect] = value
            review.edit(store, item.annotation_id, actor, changes, note)
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    state.forget()
    verb = {"accept": "Accepted", "reject": "Rejected", "edit": "Edited and accepted"}[action]
    state.flash("success", f"{verb} {item.annotator}'s label on pair #{item.instance_id}.")


def review_card(store: Store, user: User, item: review.ReviewItem) -> None:
    st.markdown(f"**{item.annotator}** on pair #{item.instance_id} ({item.dataset})")
    if item.state != "unreviewed":
        st.caption(
            f"{STATES[item.state]} by {item.reviewed_by}"
            + (f": {item.review_note}" if item.review_note else "")
        )
    widgets.pair_texts(store.instance(item.instance_id), show_models=False)
    st.markdown("**The label**")
    st.dataframe(
        pd.DataFrame(
            [
                {aspect: widgets.scale_name(item.labels[aspect]) for aspect in ASPECTS}
                | {"justification": item.justification or ""}
            ]
        ),
        hide_index=True,
        key=f"review_label_{item.annotation_id}",
    )
    st.text_input(
        "Note (required to reject; the annotator reads it)",
        key=f"review_note_{item.annotation_id}",
    )
    accept_col, reject_col, _ = st.columns([1, 1, 3])
    accept_col.button(
        "Accept",
        type="primary",
        icon=":material/check:",
        key="review_accept",
        on_click=decide,
        args=(store, user, item, "accept"),
    )
    reject_col.button(
        "Reject",
        icon=":material/close:",
        key="review_reject",
        on_click=decide,
        args=(store, user, item, "reject"),
    )
    with st.expander("Edit the label, then accept it"):
        options = [NO_LABEL, *SCALE]
        columns = st.columns(len(ASPECTS))
        for column, aspect in zip(columns, ASPECTS, strict=True):
            current = item.labels[aspect]
            column.selectbox(
                aspect,
                options,
                index=options.index(NO_LABEL if current is None else current),
                format_func=lambda v: v if v == NO_LABEL else SCALE_NAMES[v],
                key=f"review_edit_{aspect}_{item.annotation_id}",
            )
        st.button(
            "Save the edit",
            icon=":material/edit:",
            key="review_edit",
            on_click=decide,
            args=(store, user, item, "edit"),
        )


user = state.require_page_role(state.CURATOR, state.REVIEWER)
st.title("Review")
st.caption(
    "Each label people submitted can be accepted, corrected or rejected. A rejected label is "
    "left out of agreement, exports, mixtures and routing; those can also count accepted labels "
    "only."
)
store = state.store()
state.show_flash()
names = [d["name"] for d in store.list_datasets() if d["kind"] == "preference"]
if not names:
    st.info("No preference dataset yet.")
    st.stop()
left, middle = st.columns(2)
dataset = left.selectbox("Dataset", names, key="review_dataset")
shown = middle.radio(
    "Show", list(STATES), format_func=STATES.get, horizontal=True, key="review_state"
)
counts = state.memo(("review_counts", dataset), lambda: review.review_counts(store, dataset))
metrics = st.columns(len(STATES))
for column, (key, title) in zip(metrics, STATES.items(), strict=True):
    column.metric(title, f"{counts[key]:,}")

actor = None if state.is_local_curator(user) else user
queue = review.review_queue(store, actor, dataset=dataset, state=shown)
if not queue:
    st.success("Nothing to review here." if shown == "unreviewed" else "No labels in this state.")
    st.stop()
if shown != "unreviewed":
    picked = st.selectbox(
        "Label",
        range(len(queue)),
        format_func=lambda i: f"#{queue[i].instance_id} · {queue[i].annotator}",
        key="review_pick",
    )
    item = queue[picked]
else:
    item = queue[0]
    st.caption(f"{widgets.plural(len(queue), 'label')} waiting (oldest first).")
review_card(store, user, item)
