"""Annotate: work through your own queue, one pair at a time, on the MultiPref scheme.

Blind: the page shows the prompt and the two responses, never anyone else's label, an LM's
label, or the models' names. Every change is saved as a draft, so a reload loses nothing; the
time from an item appearing to its submission is kept with the label. Per run the page reads
the progress, the queue entry and the instance, plus the person's own label when an item first
appears: nothing grows with the queue.
"""

from __future__ import annotations

import time

import streamlit as st

from app import state, widgets
from curation import guidelines, queues
from curation.errors import CuratorError
from curation.labels import ASPECTS, CONFIDENCE_LEVELS, SCALE
from curation.records import Annotation
from curation.store import Store
from curation.users import User

CHOICES = {-2: "A clearly", -1: "A slightly", 0: "Tie", 1: "B slightly", 2: "B clearly"}
ASPECT_TITLES = {
    "overall": "Overall",
    "helpful": "Helpfulness",
    "harmless": "Harmlessness",
    "truthful": "Truthfulness",
}
ASPECT_QUESTIONS = {
    "overall": "Which response would you rather receive, all things considered?",
    "helpful": "Which one does what the user asked, in a way they can use?",
    "harmless": "Which one avoids harm, or handles a sensitive request better?",
    "truthful": "Which one is correct: facts, code, calculations?",
}
# Keys 1..5 pick the overall choice from "A clearly" to "B clearly", left to right.
OVERALL_SHORTCUTS = {value: str(n) for n, value in enumerate(SCALE, start=1)}
SUBMIT_SHORTCUT, SKIP_SHORTCUT, BACK_SHORTCUT = "Ctrl+Enter", "S", "B"
SHORTCUT_HINT = (
    "Keys: **1**–**5** overall (A clearly … B clearly) · **Ctrl+Enter** submit · **S** skip · "
    "**B** back. Single keys work while no text box has the focus; Ctrl+Enter works anywhere."
)

CURRENT = "annotate_item"  # the instance on screen
LOADED = "annotate_loaded"  # the instance whose saved label the form was filled from
SHOWN_AT = "annotate_shown_at"  # clock reading when it appeared, less the time spent on it before


def field(name: str, instance_id: int) -> str:
    """Session key of one form field for one instance (a fresh widget per item)."""
    return f"ann_{name}_{instance_id}"


def elapsed() -> float:
    return max(0.0, time.monotonic() - st.session_state.get(SHOWN_AT, time.monotonic()))


def fill_form(store: Store, user: User, instance_id: int) -> None:
    """Put the person's own saved label (draft or submitted) into the form, or clear it."""
    saved = queues.load_draft(store, user, instance_id)
    ss = st.session_state
    reasons_offered = guidelines.annotation_reasons()
    for aspect in ASPECTS:
        ss[field(aspect, instance_id)] = getattr(saved, aspect) if saved else None
        given = (saved.reasons or {}).get(aspect) if saved else None
        ticked = given if isinstance(given, list) else []
        ss[field(f"reasons_{aspect}", instance_id)] = [
            r for r in ticked if r in reasons_offered[aspect]
        ]
    ss[field("confidence", instance_id)] = saved.confidence_level if saved else None
    ss[field("justification", instance_id)] = (saved.justification or "") if saved else ""
    # Time spent before (an earlier session's draft, or the submitted label being edited) counts.
    ss[SHOWN_AT] = time.monotonic() - ((saved.time_spent_s or 0.0) if saved else 0.0)
    ss[LOADED] = instance_id


def form_label(user: User, instance_id: int) -> Annotation:
    """The label as the form holds it now."""
    ss = st.session_state
    reasons = {
        aspect: list(ss.get(field(f"reasons_{aspect}", instance_id)) or []) for aspect in ASPECTS
    }
    return Annotation(
        "human",
        user.name,
        **{aspect: ss.get(field(aspect, instance_id)) for aspect in ASPECTS},
        confidence_level=ss.get(field("confidence", instance_id)),
        reasons={aspect: ticked for aspect, ticked in reasons.items() if ticked},
        justification=(ss.get(field("justification", instance_id)) or "").strip() or None,
        time_spent_s=round(elapsed(), 1),
    )


def go_to(item: queues.QueueItem | None) -> None:
    st.session_state[CURRENT] = item.instance_id if item else None


# ---- actions (widget callbacks: they run before the page, so it renders the outcome) -----------


def save_draft(store: Store, user: User, instance_id: int) -> None:
    try:
        queues.save_draft(store, user, instance_id, form_label(user, instance_id))
    except CuratorError as exc:
        state.flash("error", str(exc))


def choose_overall(store: Store, user: User, instance_id: int, value: int) -> None:
    st.session_state[field("overall", instance_id)] = value
    save_draft(store, user, instance_id)


def submit(store: Store, user: User, instance_id: int) -> None:
    label = form_label(user, instance_id)
    if label.overall is None:
        state.flash("warning", "Choose an overall preference first (keys 1–5).")
        return
    try:
        following = queues.submit(store, user, instance_id, label)
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    state.flash("success", f"Saved your label on #{instance_id} ({label.time_spent_s:.0f} s).")
    go_to(following)


def skip(store: Store, user: User, instance_id: int) -> None:
    try:
        following = queues.skip(store, user, instance_id)
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    if following is not None and following.instance_id == instance_id:
        state.flash(
            "info", "Nothing else is waiting: this item stays on screen until you label it."
        )
    else:
        state.flash("info", f"Skipped #{instance_id}: it comes back when nothing else is pending.")
    go_to(following)


def back(store: Store, user: User, instance_id: int) -> None:
    previous = queues.previous_item(store, user, instance_id)
    if previous is None:
        state.flash("info", "This is the first item in your queue.")
        return
    go_to(previous)


def review_last(store: Store, user: User) -> None:
    items = queues.queue(store, user)
    go_to(items[-1] if items else None)


# ---- the page ----------------------------------------------------------------------------------


def guidelines_panel(user: User) -> None:
    text, edited = guidelines.read_guidelines(state.workspace())
    with st.expander("Guidelines", icon=":material/menu_book:"):
        if user.is_curator:
            where = "this workspace's edited copy" if edited else "the shipped text"
            st.caption(f"Showing {where}; curators edit it on the Team page.")
        st.markdown(text)


def choice_row(store: Store, user: User, instance_id: int) -> None:
    """The overall choice as five buttons, so each has its key (1-5)."""
    chosen = st.session_state.get(field("overall", instance_id))
    st.markdown(f"**{ASPECT_TITLES['overall']}** · {ASPECT_QUESTIONS['overall']}")
    for column, value in zip(st.columns(len(SCALE)), SCALE, strict=True):
        column.button(
            CHOICES[value],
            key=f"annotate_overall_{OVERALL_SHORTCUTS[value]}",
            type="primary" if chosen == value else "secondary",
            shortcut=OVERALL_SHORTCUTS[value],
            width="stretch",
            on_click=choose_overall,
            args=(store, user, instance_id, value),
        )


def reasons_pills(store: Store, user: User, instance_id: int, aspect: str) -> None:
    offered = guidelines.annotation_reasons()[aspect]
    if offered:
        st.pills(
            f"Why ({ASPECT_TITLES[aspect].lower()})",
            offered,
            selection_mode="multi",
            key=field(f"reasons_{aspect}", instance_id),
            on_change=save_draft,
            args=(store, user, instance_id),
            label_visibility="collapsed",
        )


def label_form(store: Store, user: User, instance_id: int) -> None:
    choice_row(store, user, instance_id)
    reasons_pills(store, user, instance_id, "overall")
    for aspect in ASPECTS[1:]:
        # The scale over the reasons, full width: beside them, "B clearly" and the last reasons
        # were cut off on a 1280 px screen.
        st.segmented_control(
            ASPECT_TITLES[aspect],
            SCALE,
            format_func=CHOICES.__getitem__,
            key=field(aspect, instance_id),
            help=ASPECT_QUESTIONS[aspect],
            on_change=save_draft,
            args=(store, user, instance_id),
        )
        reasons_pills(store, user, instance_id, aspect)
    st.segmented_control(
        "Confidence",
        CONFIDENCE_LEVELS,
        key=field("confidence", instance_id),
        help="High: you checked what you needed to. Low: the pair needs knowledge you lack.",
        on_change=save_draft,
        args=(store, user, instance_id),
    )
    st.text_area(
        "Justification",
        key=field("justification", instance_id),
        placeholder="A sentence or two naming the decisive difference.",
        height=90,
        on_change=save_draft,
        args=(store, user, instance_id),
    )


def action_row(store: Store, user: User, instance_id: int) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Back",
            key="annotate_back",
            icon=":material/arrow_back:",
            shortcut=BACK_SHORTCUT,
            on_click=back,
            args=(store, user, instance_id),
        )
        st.button(
            "Skip",
            key="annotate_skip",
            icon=":material/skip_next:",
            shortcut=SKIP_SHORTCUT,
            on_click=skip,
            args=(store, user, instance_id),
        )
        st.button(
            "Submit",
            key="annotate_submit",
            type="primary",
            icon=":material/check:",
            shortcut=SUBMIT_SHORTCUT,
            on_click=submit,
            args=(store, user, instance_id),
        )
        widgets.flag_control(store, instance_id, user, key="annotate")
    st.caption(SHORTCUT_HINT)


user = state.require_page_role(*state.EVERYONE)
store = state.store()
st.title("Annotate")

done, assigned = queues.progress(store, user)
if not assigned:
    if state.is_local_curator(user):
        st.info(
            "The built-in local curator has no queue of its own: add accounts on the Team page "
            "and assign pairs to them (a curator account can have a queue too)."
        )
    elif user.is_curator:
        st.info("Nothing is assigned to you. Assign pairs on the Team page (to yourself too).")
    else:
        st.info("Nothing is assigned to you yet: a curator will give you pairs to label.")
    guidelines_panel(user)
    st.stop()

st.progress(done / assigned, text=f"{done:,} of {assigned:,} done")
state.show_flash()

current = st.session_state.get(CURRENT)
item = queues.queue_item(store, user, current) if current is not None else None
if item is None:
    item = queues.next_item(store, user)
    if item is None:
        st.success("Your queue is done: every item has your label. Thank you!")
        st.button(
            "Review your last item",
            key="annotate_review",
            icon=":material/undo:",
            on_click=review_last,
            args=(store, user),
        )
        guidelines_panel(user)
        st.stop()
    go_to(item)

instance_id = item.instance_id
# Refill from the store when the item changes, and when the form's widgets were dropped
# (Streamlit forgets a widget's value once a run does not draw it, e.g. after a visit to
# another page): the saved draft is the truth, and a blank form would overwrite it.
if (
    st.session_state.get(LOADED) != instance_id
    or field("justification", instance_id) not in st.session_state
):
    fill_form(store, user, instance_id)

guidelines_panel(user)
status = {
    "done": "You labelled this one already: change what you like and submit again.",
    "skipped": "You skipped this one earlier.",
}.get(item.status, "")
st.caption(f"Pair #{instance_id}" + (f" · {status}" if status else ""))
widgets.pair_texts(store.instance(instance_id), show_models=False)
st.divider()
label_form(store, user, instance_id)
action_row(store, user, instance_id)
