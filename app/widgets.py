"""Rendering shared by the pages: the pair view, label tables, instance tables, charts, and the
"Report a flaw" control.

Data text (prompts, responses, reasons) goes through ``st.markdown`` / ``st.dataframe`` only,
never with ``unsafe_allow_html``: Streamlit escapes HTML in markdown, so a response holding
``<script>`` shows as text.
"""

from __future__ import annotations

import re
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
_WORD = re.compile(r"\w+")
_CODE = re.compile(r"(```.*?```|`[^`\n]*`)", re.DOTALL)
_ROLE_AVATARS = {"system": ":material/settings:", "tool": ":material/build:"}


def plural(n: int, noun: str) -> str:
    """``1 label``, ``2 labels``, ``1,200 labels``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


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


# What a curator reads first (the verdicts and whether people and the judge agree), then where a
# pair comes from; columns that are empty on every row of the page are left out.
_INSTANCE_COLUMNS = ("id", "prompt", "human_verdict", "lm_verdict", "agreement", "domain",
                     "n_human", "n_lm", "source", "subset", "uid", "model_a", "model_b")  # fmt: skip
_ALWAYS_SHOWN = {"id", "prompt", "human_verdict", "lm_verdict", "agreement", "n_human", "n_lm"}


def instances_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One page of ``Store.page_instances`` rows, with verdicts as A / tie / B."""
    frame = pd.DataFrame(rows, columns=list(_INSTANCE_COLUMNS))
    frame["human_verdict"] = frame["human_verdict"].map(verdict_name)
    frame["lm_verdict"] = frame["lm_verdict"].map(verdict_name)
    frame["agreement"] = frame["agreement"].map(
        lambda v: "" if v is None or pd.isna(v) else ("agree" if v else "disagree")
    )
    empty = [
        c
        for c in frame.columns
        if c not in _ALWAYS_SHOWN and frame[c].map(lambda v: v is None or v == "").all()
    ]
    return frame.drop(columns=empty)


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _reasons_text(reasons: Any) -> str:
    """Reasons as a line of text: a person's picked reasons, or a judge's probabilities per
    presentation order, never a raw dict."""
    if not reasons:
        return ""
    if not isinstance(reasons, dict):
        return str(reasons)
    if "orders" in reasons:  # an LM judge's own record of how it decided
        orders = [
            f"P(A) {_number(o.get('p_answer_a'))} {'swapped' if o.get('swapped') else 'as shown'}"
            for o in reasons["orders"]
            if isinstance(o, dict)
        ]
        method = f" ({reasons['method']})" if reasons.get("method") else ""
        return "; ".join(orders) + method
    parts = []
    for key, value in reasons.items():
        if isinstance(value, list):
            shown = ", ".join(_number(v) for v in value)
        elif isinstance(value, dict):
            shown = ", ".join(
                f"{k} {_number(v)}" for k, v in value.items() if not isinstance(v, dict | list)
            )
        else:
            shown = _number(value)
        parts.append(f"{key}: {shown}")
    return "; ".join(parts)


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


def search_terms(query: str) -> list[str]:
    """The words of a search, as the full-text index matches them (letters and digits)."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(query or "")))


def highlighted(text: str, terms: list[str]) -> str:
    """Markdown with each whole-word hit of ``terms`` marked (Streamlit's background directive).

    Code (fenced blocks and inline spans) is left as written, since a directive there would show
    as text; a hit is only ever letters and digits, so the mark cannot open any other markup.
    """
    if not terms or not text:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)
    parts = _CODE.split(text)
    return "".join(
        part if i % 2 else pattern.sub(r":orange-background[\1]", part)
        for i, part in enumerate(parts)
    )


def text_block(text: str | None, *, key: str, terms: list[str] | None = None) -> None:
    """Markdown text (code blocks render, HTML does not); long texts scroll in a box; search
    hits (``terms``) are marked."""
    if not text or not text.strip():
        st.caption("(empty)")
        return
    long = len(text) > _SCROLL_CHARS or text.count("\n") > _SCROLL_LINES
    box = st.container(height=_SCROLL_HEIGHT if long else "content", border=True, key=key)
    box.markdown(highlighted(text, terms or []))


def conversation(instance: dict[str, Any], *, terms: list[str] | None = None) -> None:
    """The prompt: the conversation turn by turn when there is one, else the prompt text."""
    messages = instance.get("messages") or [{"role": "user", "content": instance["prompt"]}]
    for turn, message in enumerate(messages):
        role = message.get("role", "user")
        with st.chat_message(role, avatar=_ROLE_AVATARS.get(role)):
            text_block(message.get("content"), key=f"turn_{instance['id']}_{turn}", terms=terms)


def label_summary(annotations: list[dict[str, Any]]) -> None:
    """One line per label: who said what overall (details in the table below it)."""
    for ann in annotations:
        kind = "Human" if ann["annotator_kind"] == "human" else "LM"
        overall = scale_name(ann.get("overall")) or "no overall label"
        st.badge(
            f"{kind} · {ann['annotator']}: {overall}", color="blue" if kind == "Human" else "violet"
        )


def pair_texts(
    instance: dict[str, Any], *, show_models: bool = True, terms: list[str] | None = None
) -> None:
    """The prompt and the two responses side by side, nothing else (what an annotator sees).

    ``show_models=False`` hides which model wrote which response, for blind annotation;
    ``terms`` are search words to mark.
    """
    st.markdown("**Prompt**")
    conversation(instance, terms=terms)

    left, right = st.columns(2)
    for column, side in ((left, "a"), (right, "b")):
        with column:
            st.markdown(f"**Response {side.upper()}**")
            model = instance.get(f"model_{side}")
            if model and show_models:
                st.caption(model)
            text_block(
                instance.get(f"response_{side}"),
                key=f"response_{side}_{instance['id']}",
                terms=terms,
            )


def pair_view(
    instance: dict[str, Any],
    annotations: list[dict[str, Any]],
    *,
    show_gold: bool = False,
    search: str = "",
) -> None:
    """An instance as a curator reads it: prompt, the two responses side by side, every label;
    the words of ``search`` marked where they occur."""
    meta = [
        f"{name}: {instance[name]}" for name in ("domain", "source", "subset") if instance.get(name)
    ]
    st.caption(f"#{instance['id']} · {instance['uid']} · " + " · ".join(meta))
    pair_texts(instance, terms=search_terms(search))

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
            category = st.selectbox(
                "What is wrong",
                FLAG_CATEGORIES,
                index=None,
                placeholder="Choose what is wrong",
                key=f"flag_{key}_category",
            )
            note = st.text_area(
                "Note for the curator",
                key=f"flag_{key}_note",
                placeholder="Optional: what you saw, and where",
                height=80,
            )
            sent = st.form_submit_button("Send", key=f"flag_{key}_send", icon=":material/send:")
    if sent and category is None:
        st.warning("Choose what is wrong before sending the report.")
    elif sent:
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
    frame = pd.DataFrame(rows)
    # Each bar carries its rate and count as text, so a 0% bar (every pair a disagreement,
    # as under the "disagree" filter) reads as 0%, not as a blank chart.
    frame["text"] = [f"{r:.0%} of {n:,}" for r, n in zip(frame["rate"], frame["n"], strict=True)]
    fig = px.bar(
        frame,
        x="domain",
        y="rate",
        text="text",
        hover_data=["n", "agree"],
        labels={"rate": "agreement rate", "domain": ""},
        range_y=[0, 1.08],
    )
    fig.update_traces(textposition="outside", cliponaxis=False)
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


# Facet panels are sized in pixels: plotly's facet spacing is a fraction of the plot's height, so
# a fixed fraction grows with the rows (8 rows at 0.12 left 40 px panels between 250 px gaps).
_PANEL_PX = 220
_PANEL_GAP_PX = 70  # the x ticks of one panel and the title of the next
_CURVES_MARGIN = {"t": 40, "b": 40}


def metric_curves(
    rows: list[dict[str, Any]], *, key: str, series: str | None = None, pick_key: str | None = None
) -> None:
    """Logged training metrics against step: one panel per metric (its own y axis), one line per
    ``series`` value (a run) when the rows carry that column. The curves shown are picked in a
    multiselect (``pick_key``; the loss and eval ones at first); a metric logged at one step only
    (``train_runtime``, ``total_flos``: a summary) is listed in a table of final values."""
    if not rows:
        st.caption("No metrics logged yet.")
        return
    frame = pd.DataFrame(rows)
    series = series if series and series in frame else None
    curves, summaries = split_summaries(frame, series)
    if curves:
        shown = st.multiselect(
            "Curves", curves, default=headline_curves(curves), key=pick_key or f"{key}_shown"
        )
        if shown:
            fig = curves_figure(frame[frame["name"].isin(shown)], shown, series)
            st.plotly_chart(fig, width="stretch", key=key)
        else:
            st.caption("Pick the curves to show.")
    if summaries:
        st.markdown("**Final values** (logged once)")
        st.dataframe(
            summary_frame(frame[frame["name"].isin(summaries)], summaries, series),
            hide_index=True,
            key=f"{key}_summaries",
        )


def split_summaries(frame: pd.DataFrame, series: str | None = None) -> tuple[list[str], list[str]]:
    """The metric names in ``frame`` as (curves, summaries): a summary is logged at one step only
    (by every ``series`` value), so it has a final value and no curve."""
    steps = frame.groupby([series, "name"] if series else ["name"], sort=False)["step"].nunique()
    most = steps.groupby(level="name", sort=False).max()
    names = list(dict.fromkeys(frame["name"]))
    return [n for n in names if most[n] > 1], [n for n in names if most[n] <= 1]


def headline_curves(names: list[str]) -> list[str]:
    """The curves shown at first: losses and eval scores, not throughput or timing."""
    picked = [
        n
        for n in names
        if "loss" in n or (n.startswith("eval_") and not n.endswith(("_runtime", "_per_second")))
    ]
    return picked or names[:2]


def curves_figure(frame: pd.DataFrame, names: list[str], series: str | None = None):
    """Facet panels of ``_PANEL_PX`` each, two a row, ``_PANEL_GAP_PX`` apart whatever the
    number of rows."""
    panel_rows = (len(names) + 1) // 2
    plot_px = panel_rows * _PANEL_PX + (panel_rows - 1) * _PANEL_GAP_PX
    fig = px.line(
        frame,
        x="step",
        y="value",
        color=series,
        facet_col="name",
        facet_col_wrap=2,
        facet_row_spacing=_PANEL_GAP_PX / plot_px,
        facet_col_spacing=0.08,  # room for the right panel's own y ticks
        category_orders={"name": names},
        markers=True,
        labels={"value": "", "step": "step"},
    )
    fig.update_yaxes(matches=None, showticklabels=True)
    fig.update_xaxes(showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(
        height=plot_px + _CURVES_MARGIN["t"] + _CURVES_MARGIN["b"], margin=_CURVES_MARGIN
    )
    return fig


def summary_frame(frame: pd.DataFrame, names: list[str], series: str | None = None) -> pd.DataFrame:
    """Each summary metric's last value, as text (one column per ``series`` value)."""
    last = frame.drop_duplicates([series, "name"] if series else ["name"], keep="last")
    if series is None:
        table = last.set_index("name").loc[names]
        return pd.DataFrame(
            {
                "metric": names,
                "value": [number_text(v) for v in table["value"]],
                "step": table["step"].tolist(),
            }
        )
    runs = list(dict.fromkeys(frame[series]))
    values = last.pivot(index="name", columns=series, values="value").reindex(names)
    return pd.DataFrame(
        {"metric": names} | {run: [number_text(v) for v in values[run]] for run in runs}
    )


def number_text(value: Any) -> str:
    """A number as a table shows it for reading: 4 significant digits, blank when missing."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


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
