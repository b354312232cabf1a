"""Rendering shared by the pages: the pair view, label tables, instance tables, charts, and the
"Report a flaw" control.

Data text (prompts, responses, reasons) goes through ``st.markdown`` / ``st.dataframe`` only,
never with ``unsafe_allow_html``: Streamlit escapes HTML in markdown, so a response holding
``<script>`` shows as text.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from app import state
from curation import flags
from curation.errors import CuratorError
from curation.flags import FLAG_CATEGORIES
from curation.labels import ASPECTS, SCALE, SCALE_NAMES
from curation.store import Store
from curation.users import User

VERDICTS = {"any": None, "A better": -1, "tie": 0, "B better": 1}
TRI_STATE = {"any": None, "yes": True, "no": False}
AGREEMENT = {"any": None, "agree": True, "disagree": False}
_VERDICT_SHORT = {-1: "A", 0: "tie", 1: "B"}
# Long texts scroll inside a fixed-height box instead of pushing the rest of the page away.
_SCROLL_CHARS = 1200
_SCROLL_LINES = 24
_SCROLL_HEIGHT = 420
_ROLE_AVATARS = {"system": ":material/settings:", "tool": ":material/build:"}


def verdict_name(value: Any) -> str:
    if value is None or pd.isna(value):
        return ""
    return _VERDICT_SHORT.get(int(value), str(value))


def scale_name(value: Any) -> str:
    if value is None or pd.isna(value):
        return ""
    return SCALE_NAMES.get(int(value), str(value))


def error(exc: Exception) -> None:
    """A user-fixable problem, as the message a curator reads (never a traceback)."""
    st.error(str(exc), icon=":material/error:")


# ---- tables ---------------------------------------------------------------------------------


def instances_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One page of ``Store.page_instances`` rows, with verdicts as A / tie / B."""
    frame = pd.DataFrame(
        rows,
        columns=[
            "id",
            "uid",
            "prompt",
            "domain",
            "source",
            "subset",
            "model_a",
            "model_b",
            "n_human",
            "human_verdict",
            "n_lm",
            "lm_verdict",
            "agreement",
        ],
    )
    frame["human_verdict"] = frame["human_verdict"].map(verdict_name)
    frame["lm_verdict"] = frame["lm_verdict"].map(verdict_name)
    frame["agreement"] = frame["agreement"].map(
        lambda v: "" if v is None or pd.isna(v) else ("agree" if v else "disagree")
    )
    return frame


def _reasons_text(reasons: Any) -> str:
    if not reasons:
        return ""
    if isinstance(reasons, dict):
        parts = []
        for key, value in reasons.items():
            shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
            parts.append(f"{key}: {shown}")
        return "; ".join(parts)
    return str(reasons)


def labels_frame(annotations: list[dict[str, Any]]) -> pd.DataFrame:
    """Every label on an instance, one row each, scale values as readable names."""
    records = []
    for ann in annotations:
        record = {"kind": ann["annotator_kind"], "annotator": ann["annotator"]}
        for aspect in ASPECTS:
            record[aspect] = scale_name(ann.get(aspect))
        confidence = ann.get("confidence")
        record["confidence"] = "" if confidence is None else f"{confidence:.2f}"
        record["confidence_level"] = ann.get("confidence_level") or ""
        record["reasons"] = _reasons_text(ann.get("reasons"))
        record["justification"] = ann.get("justification") or ""
        record["model"] = ann.get("model") or ""
        record["origin"] = ann.get("origin") or ""
        records.append(record)
    columns = [
        "kind",
        "annotator",
        *ASPECTS,
        "confidence",
        "confidence_level",
        "reasons",
        "justification",
        "model",
        "origin",
    ]
    return pd.DataFrame(records, columns=columns)


# ---- the pair view --------------------------------------------------------------------------


def text_block(text: str | None, *, key: str) -> None:
    """Markdown text (code blocks render, HTML does not); long texts scroll in a box."""
    if not text:
        st.caption("(empty)")
        return
    long = len(text) > _SCROLL_CHARS or text.count("\n") > _SCROLL_LINES
    box = st.container(height=_SCROLL_HEIGHT if long else "content", border=True, key=key)
    box.markdown(text)


def conversation(instance: dict[str, Any]) -> None:
    """The prompt: the conversation turn by turn when there is one, else the prompt text."""
    messages = instance.get("messages") or [{"role": "user", "content": instance["prompt"]}]
    for turn, message in enumerate(messages):
        role = message.get("role", "user")
        with st.chat_message(role, avatar=_ROLE_AVATARS.get(role)):
            text_block(message.get("content"), key=f"turn_{instance['id']}_{turn}")


def label_summary(annotations: list[dict[str, Any]]) -> None:
    """One line per label: who said what overall (details in the table below it)."""
    for ann in annotations:
        kind = "Human" if ann["annotator_kind"] == "human" else "LM"
        overall = scale_name(ann.get("overall")) or "no overall label"
        st.badge(
            f"{kind} · {ann['annotator']}: {overall}", color="blue" if kind == "Human" else "violet"
        )


def pair_texts(instance: dict[str, Any], *, show_models: bool = True) -> None:
    """The prompt and the two responses side by side, nothing else (what an annotator sees).

    ``show_models=False`` hides which model wrote which response, for blind annotation.
    """
    st.markdown("**Prompt**")
    conversation(instance)

    left, right = st.columns(2)
    for column, side in ((left, "a"), (right, "b")):
        with column:
            st.markdown(f"**Response {side.upper()}**")
            model = instance.get(f"model_{side}")
            if model and show_models:
                st.caption(model)
            text_block(instance.get(f"response_{side}"), key=f"response_{side}_{instance['id']}")


def pair_view(
    instance: dict[str, Any], annotations: list[dict[str, Any]], *, show_gold: bool = False
) -> None:
    """An instance as a curator reads it: prompt, the two responses side by side, every label."""
    meta = [
        f"{name}: {instance[name]}" for name in ("domain", "source", "subset") if instance.get(name)
    ]
    st.caption(f"#{instance['id']} · {instance['uid']} · " + " · ".join(meta))
    pair_texts(instance)

    st.markdown(f"**Labels** ({len(annotations)})")
    if not annotations:
        st.caption("No labels on this pair yet.")
    else:
        label_summary(annotations)
        st.dataframe(labels_frame(annotations), hide_index=True)
    if show_gold:
        gold = instance.get("gold")
        st.info(f"Hidden gold label: {scale_name(gold) if gold is not None else 'none'}")


# ---- reporting a flaw ------------------------------------------------------------------------


def flag_control(store: Store, instance_id: int, user: User, *, key: str) -> None:
    """The "Report a flaw" control: whoever sees an instance can flag it for curators."""
    with st.popover("Report a flaw", icon=":material/flag:"):
        with st.form(f"flag_{key}", clear_on_submit=True, border=False):
            category = st.selectbox("What is wrong", FLAG_CATEGORIES, key=f"flag_{key}_category")
            note = st.text_area(
                "Note for the curator",
                key=f"flag_{key}_note",
                placeholder="Optional: what you saw, and where",
                height=80,
            )
            sent = st.form_submit_button("Send", key=f"flag_{key}_send", icon=":material/send:")
    if sent:
        # The built-in local curator is no account, so its flags carry no user.
        reporter = None if state.is_local_curator(user) else user
        try:
            flags.flag_instance(store, instance_id, reporter, category, note)
        except CuratorError as exc:
            error(exc)
        else:
            st.toast(f"Flagged #{instance_id} as {category}: a curator will review it.")


# ---- charts ---------------------------------------------------------------------------------


def label_distribution_chart(shares: list[dict[str, Any]]) -> None:
    """Share of each scale value per aspect, human next to LM."""
    if not shares:
        st.caption("No labels under this filter.")
        return
    frame = pd.DataFrame(shares)
    fig = px.bar(
        frame,
        x="label",
        y="share",
        color="kind",
        barmode="group",
        facet_col="aspect",
        facet_col_wrap=2,
        category_orders={"label": [SCALE_NAMES[v] for v in SCALE], "aspect": list(ASPECTS)},
        hover_data=["n"],
        labels={"label": "", "share": "share of labels", "kind": "annotator"},
    )
    fig.update_yaxes(tickformat=".0%")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    st.plotly_chart(fig, width="stretch")


def agreement_chart(rows: list[dict[str, Any]]) -> None:
    """Human-vs-LM verdict agreement rate per domain."""
    if not rows:
        st.caption("No instances with both a human and an LM label under this filter.")
        return
    fig = px.bar(
        pd.DataFrame(rows),
        x="domain",
        y="rate",
        hover_data=["n", "agree"],
        labels={"rate": "agreement rate", "domain": ""},
        range_y=[0, 1],
    )
    fig.update_yaxes(tickformat=".0%")
    st.plotly_chart(fig, width="stretch")


def confusion_chart(rows: list[dict[str, Any]]) -> None:
    """Human verdict (rows) against LM verdict (columns)."""
    if not rows:
        st.caption("No instances with both a human and an LM verdict under this filter.")
        return
    order = ["A", "tie", "B"]
    table = (
        pd.DataFrame(rows)
        .pivot_table(index="human", columns="lm", values="n", aggfunc="sum", fill_value=0)
        .reindex(index=order, columns=order, fill_value=0)
    )
    fig = px.imshow(
        table,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "LM verdict", "y": "human verdict", "color": "instances"},
    )
    st.plotly_chart(fig, width="stretch")


def metric_curves(rows: list[dict[str, Any]], *, key: str, series: str | None = None) -> None:
    """Logged training metrics against step: one panel per metric (its own y axis), one line per
    ``series`` value (a run) when the rows carry that column."""
    if not rows:
        st.caption("No metrics logged yet.")
        return
    frame = pd.DataFrame(rows)
    names = list(dict.fromkeys(frame["name"]))
    fig = px.line(
        frame,
        x="step",
        y="value",
        color=series if series and series in frame else None,
        facet_col="name",
        facet_col_wrap=2,
        facet_row_spacing=0.12,
        category_orders={"name": names},
        markers=True,
        labels={"value": "", "step": "step"},
    )
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=280 * ((len(names) + 1) // 2) + 60, margin={"t": 40})
    st.plotly_chart(fig, width="stretch", key=key)


def launch_background(store: Store, kind: str, spec: dict[str, Any], what: str) -> int | None:
    """Queue ``spec`` as a background job of ``kind``, make sure a worker takes it, and say where
    to follow it; the job outlives this page (and a refresh)."""
    from training import jobs
    from training.worker import auto_worker

    user = state.current_user()
    try:
        job_id = jobs.enqueue(store, kind, spec, created_by=user.name if user else None)
        pid = auto_worker(store.workspace) if store.workspace else None
    except CuratorError as exc:
        error(exc)
        return None
    worker = f"worker pid {pid}" if pid else "no worker running: start `curator worker`"
    st.success(f"Queued {what} as job {job_id} ({worker}); follow it on the Jobs page.")
    return job_id
