"""Annotate: work through your own queue, one pair at a time, on the MultiPref scheme.

Blind: the page shows the prompt and the two responses, never anyone else's label, an LM's
label, or the models' names. Every change is saved as a draft, the justification while it is
typed, so a reload loses nothing; the time from an item appearing to its submission is kept
with the label. Every choice has keys (see ``KEYS_LEGEND``). Per run the page reads the
progress, the queue entry and the instance, plus the person's own label when an item first
appears; the list of their items is read only while "My items" is open, so nothing else grows
with the queue. What skip, back and a jump do to an item's status is defined in
:mod:`curation.queues`.
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
CONFIDENCE_HELP = "High: you checked what you needed to. Low: the pair needs knowledge you lack."
CONFIDENCE_TITLES = {"low": "Low", "medium": "Medium", "high": "High"}
# A letter picks what the digit keys set (overall until another letter is pressed), then 1-5
# pick "A clearly" ... "B clearly" left to right (1-3: low ... high for confidence). C would be
# the obvious letter for confidence, but Streamlit keeps C (and R) for itself.
ASPECT_KEYS = {"o": "overall", "h": "helpful", "j": "harmless", "t": "truthful", "l": "confidence"}
ROW_VALUES: dict[str, tuple] = {aspect: SCALE for aspect in ASPECTS} | {
    "confidence": CONFIDENCE_LEVELS
}
SUBMIT_SHORTCUT, SKIP_SHORTCUT, BACK_SHORTCUT = "Ctrl+Enter", "S", "B"
KEYS_LEGEND = (
    "Keys: **O** overall · **H** helpfulness · **J** harmlessness · **T** truthfulness, then "
    "**1**–**5** (A clearly … B clearly) · **L** confidence, then **1**–**3** (low … high) · "
    "**Ctrl+Enter** submit · **S** skip · **B** back. Letters and digits do nothing while you "
    "type in a text box."
)
# A pause in typing this long saves the justification as a draft, cursor still in the box.
DRAFT_PAUSE_MS = 600

CURRENT = "annotate_item"  # the instance on screen
LOADED = "annotate_loaded"  # the instance whose saved label the form was filled from
SHOWN_AT = "annotate_shown_at"  # clock reading when it appeared, less the time spent on it before
MOVED = "annotate_moved"  # counts moves to another item, so the page scrolls up after each
ITEMS_OPEN = "annotate_items"  # the "My items" expander's state
ITEMS_STATUS = "annotate_items_status"
ITEMS_PICK = "annotate_items_pick"

# The page's keys, the scroll to the top after a move, and the justification's draft while it
# is typed, run in the browser: Streamlit has no API for any of them. Digits click the button
# of the aspect picked last (the choice stays in the browser, so "H 2" typed fast never races a
# rerun); a pause in typing commits the text box the way leaving it does, so its on_change
# saves the draft, without moving the cursor.
_PAGE_JS = """
export default function (component) {
  const { data, parentElement } = component;
  const page = (window.__curatorAnnotate ||= { instance: null, active: "overall", moved: null });
  if (page.instance !== data.instance) {
    page.instance = data.instance;
    page.active = "overall";
  }
  const now = parentElement.querySelector("[data-keys-now]");
  const show = () => { if (now) now.textContent = data.titles[page.active]; };
  show();
  if (data.moved !== page.moved) {
    page.moved = data.moved;
    if (data.moved) {
      for (const box of [document.querySelector('[data-testid="stMain"]'),
                         document.querySelector('[data-testid="stAppViewContainer"]'),
                         document.scrollingElement]) {
        if (box) box.scrollTop = 0;
      }
    }
  }
  const typing = (el) => !!el && (el.isContentEditable ||
    ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const onKey = (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (typing(event.composedPath()[0] || event.target)) return;
    const key = (event.key || "").toLowerCase();
    if (key in data.letters) {
      page.active = data.letters[key];
      show();
      event.preventDefault();
      return;
    }
    const n = Number(key);
    if (!Number.isInteger(n) || n < 1 || n > data.sizes[page.active]) return;
    const button = document.querySelector(`.st-key-annotate_${page.active}_${n} button`);
    if (button) {
      event.preventDefault();
      button.click();
    }
  };
  let timer = null;
  const commit = (box) => {
    if (box.isConnected && document.activeElement === box) {
      box.dispatchEvent(new FocusEvent("focusout", { bubbles: true }));
    }
  };
  const onInput = (event) => {
    const box = event.target;
    if (!box || box.tagName !== "TEXTAREA" || !box.closest(data.draft_box)) return;
    clearTimeout(timer);
    timer = setTimeout(() => commit(box), data.draft_pause_ms);
  };
  if (page.off) page.off();
  document.addEventListener("keydown", onKey);
  document.addEventListener("input", onInput, true);
  page.off = () => {
    clearTimeout(timer);
    document.removeEventListener("keydown", onKey);
    document.removeEventListener("input", onInput, true);
  };
  return page.off;
}
"""
_PAGE_HTML = '<span class="keys">Digits set: <span class="now" data-keys-now>Overall</span></span>'
_PAGE_CSS = """
.keys { font-size: 0.875rem; color: var(--st-text-color); opacity: 0.7; }
.now { font-weight: 600; }
"""
page_script = st.components.v2.component(
    "curator.annotate_page", html=_PAGE_HTML, css=_PAGE_CSS, js=_PAGE_JS
)


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


def scroll_up() -> None:
    """Have the next run scroll the page to the top, where the message and the prompt are: a
    mouse click on Submit leaves the page scrolled down to it."""
    st.session_state[MOVED] = st.session_state.get(MOVED, 0) + 1


def go_to(item: queues.QueueItem | None) -> None:
    """Show this item next, scrolled to the top."""
    st.session_state[CURRENT] = item.instance_id if item else None
    scroll_up()


# ---- actions (widget callbacks: they run before the page, so it renders the outcome) -----------


def save_draft(store: Store, user: User, instance_id: int) -> None:
    try:
        queues.save_draft(store, user, instance_id, form_label(user, instance_id))
    except CuratorError as exc:
        state.flash("error", str(exc))


def choose(store: Store, user: User, instance_id: int, aspect: str, value: object) -> None:
    """Pick a value for an aspect (or confidence); picking the chosen value again clears it,
    except for overall, which a label needs."""
    key = field(aspect, instance_id)
    chosen = st.session_state.get(key)
    st.session_state[key] = None if chosen == value and aspect != "overall" else value
    save_draft(store, user, instance_id)


def submit(store: Store, user: User, instance_id: int) -> None:
    label = form_label(user, instance_id)
    if label.overall is None:
        state.flash("warning", "Choose an overall preference first (keys 1–5, or O then 1–5).")
        scroll_up()
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
        skipped = queues.skip(store, user, instance_id)
    except CuratorError as exc:
        state.flash("error", str(exc))
        return
    following = skipped.following
    if following is not None and following.instance_id == instance_id:
        state.flash(
            "info", "Nothing else is waiting: this item stays on screen until you label it."
        )
    elif skipped.put_aside:
        state.flash("info", f"Skipped #{instance_id}: it comes back when nothing else is pending.")
    elif skipped.status == "done":
        state.flash(
            "info",
            f"Moved on from #{instance_id}: it stays done with the label you submitted "
            "(changes since then are kept only when you submit).",
        )
    else:
        state.flash(
            "info", f"Moved on: #{instance_id} stays skipped until nothing else is pending."
        )
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


def jump(store: Store, user: User) -> None:
    """Open the item picked in "My items" (its status does not change)."""
    picked = st.session_state.get(ITEMS_PICK)
    st.session_state[ITEMS_PICK] = None
    if picked is not None:
        go_to(queues.queue_item(store, user, picked))


# ---- the page ----------------------------------------------------------------------------------


def guidelines_panel(user: User) -> None:
    text, edited = guidelines.read_guidelines(state.workspace())
    with st.expander("Guidelines", icon=":material/menu_book:"):
        if user.is_curator:
            where = "this workspace's edited copy" if edited else "the shipped text"
            st.caption(f"Showing {where}; curators edit it on the Team page.")
        st.markdown(text)


def my_items(store: Store, user: User, current: int) -> None:
    """The person's items by status, to open any of them (read only while the list is open)."""
    with st.expander("My items", icon=":material/list:", key=ITEMS_OPEN, on_change="rerun") as box:
        if not box.open:
            return
        counts = queues.status_counts(store, user)
        status = st.segmented_control(
            "Status",
            queues.QUEUE_STATUSES,
            default="pending",
            format_func=lambda s: f"{s} ({counts[s]:,})",
            key=ITEMS_STATUS,
            label_visibility="collapsed",
        )
        items = queues.items_by_status(store, user, status or "pending")
        prompts = {item.instance_id: prompt for item, prompt in items}
        st.selectbox(
            "Open an item",
            list(prompts),
            index=None,
            format_func=lambda i: (
                f"#{i}"
                + (" (on screen)" if i == current else "")
                + f" · {' '.join(prompts[i].split())}"
            ),
            placeholder=f"Pick one of your {status or 'pending'} items to open it",
            key=ITEMS_PICK,
            on_change=jump,
            args=(store, user),
        )


def choice_row(store: Store, user: User, instance_id: int, aspect: str) -> None:
    """One aspect's (or confidence's) choice as a row of buttons: the digit keys click them."""
    chosen = st.session_state.get(field(aspect, instance_id))
    letter = next(k for k, a in ASPECT_KEYS.items() if a == aspect).upper()
    if aspect == "confidence":
        title, question = "Confidence", CONFIDENCE_HELP
    else:
        title, question = ASPECT_TITLES[aspect], ASPECT_QUESTIONS[aspect]
    st.markdown(f"**{title}** :gray-badge[{letter}] · {question}")
    values = ROW_VALUES[aspect]
    for n, (column, value) in enumerate(zip(st.columns(len(values)), values, strict=True), 1):
        column.button(
            CONFIDENCE_TITLES[value] if aspect == "confidence" else CHOICES[value],
            key=f"annotate_{aspect}_{n}",
            type="primary" if chosen == value else "secondary",
            width="stretch",
            on_click=choose,
            args=(store, user, instance_id, aspect, value),
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
    for aspect in ASPECTS:
        # The scale over the reasons, full width: beside them, "B clearly" and the last reasons
        # were cut off on a 1280 px screen.
        choice_row(store, user, instance_id, aspect)
        reasons_pills(store, user, instance_id, aspect)
    choice_row(store, user, instance_id, "confidence")
    st.text_area(
        "Justification",
        key=field("justification", instance_id),
        placeholder="A sentence or two naming the decisive difference.",
        height=90,
        on_change=save_draft,
        args=(store, user, instance_id),
    )


def action_row(store: Store, user: User, instance_id: int, status: str) -> None:
    done = status == "done"
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
            "Next" if done else "Skip",
            key="annotate_skip",
            icon=":material/arrow_forward:" if done else ":material/skip_next:",
            help=(
                "Go to the next item to label; this one stays done with its submitted label."
                if done
                else "Put this item aside: it comes back when nothing else is pending."
            ),
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

current = st.session_state.get(CURRENT)
item = queues.queue_item(store, user, current) if current is not None else None
if item is None:
    item = queues.next_item(store, user)
    if item is None:
        state.show_flash()
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

left, right = st.columns(2)
with left:
    my_items(store, user, instance_id)
with right:
    guidelines_panel(user)
# The outcome of the last action sits right above the prompt, where a move scrolls to.
state.show_flash()
status = {
    "done": "You labelled this one already: change what you like and submit again.",
    "skipped": "You skipped this one earlier.",
}.get(item.status, "")
with st.container(horizontal=True, vertical_alignment="center", gap="small"):
    st.caption(f"Pair #{instance_id}" + (f" · {status}" if status else ""), width="content")
    page_script(
        data={
            "instance": instance_id,
            "moved": st.session_state.get(MOVED, 0),
            "letters": ASPECT_KEYS,
            "sizes": {aspect: len(values) for aspect, values in ROW_VALUES.items()},
            "titles": {**ASPECT_TITLES, "confidence": "Confidence"},
            "draft_box": f".st-key-{field('justification', instance_id)}",
            "draft_pause_ms": DRAFT_PAUSE_MS,
        },
        key="annotate_page_script",
        width="content",
    )
st.caption(KEYS_LEGEND)
widgets.pair_texts(store.instance(instance_id), show_models=False)
st.divider()
label_form(store, user, instance_id)
action_row(store, user, instance_id, item.status)
