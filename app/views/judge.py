"""Judges: how far to trust an LM judge, and sending what it cannot be trusted on to people.

Calibration is :mod:`routing.selective` (trust or escalate); assignment is
:mod:`curation.queues`. This page picks the judge, alpha and delta, and shows the result.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import state, widgets
from curation.agreement import judge_accuracy, load_labels
from curation.errors import CuratorError
from curation.pairs import REFERENCES
from curation.queues import assign_escalations
from curation.users import list_users
from routing.judges import BACKENDS, Judge, judge_dataset, open_backend, shipped_templates
from routing.selective import (
    SelectiveConfig,
    calibrate,
    calibration_items_from_store,
    calibration_reference,
    coverage_curve,
    escalated_instance_ids,
    judges_in,
)

_SELECT_NEXT = "judges_select_next"  # a judge just run, to show once its labels are read

state.require_page_role(state.CURATOR)
st.title("Judges")
st.caption(
    "Trust or escalate: a judge's confidence threshold is calibrated on labelled items, "
    "so that with probability at least 1 - delta it agrees with people (or with gold labels, "
    "where the dataset has them) on at least 1 - alpha of the items it keeps. What it does not "
    "keep goes to annotators."
)
store = state.store()
state.show_flash()
datasets = [
    d["name"] for d in state.memo("datasets", store.list_datasets) if d["kind"] == "preference"
]
if not datasets:
    st.info("No preference datasets yet: import one, or build the demo workspace.")
    st.stop()

dataset = st.selectbox("Dataset", datasets, key="judges_dataset")


def _run_judge_form() -> None:
    """Label pairs with a judge, here and now (resumable: done pairs are skipped)."""
    help_of = {name: f.metadata.get("help") for name, f in Judge.__dataclass_fields__.items()}
    with st.form("run_judge"):
        c1, c2, c3 = st.columns(3)
        backend = c1.selectbox("Backend", BACKENDS, help=help_of["backend"])
        model = c2.text_input("Model", help=help_of["model"], placeholder="embedded SmolLM2")
        template = c3.selectbox("Template", shipped_templates(), help=help_of["template"])
        c4, c5, c6 = st.columns(3)
        url = c4.text_input("Server URL (openai backend)", help=help_of["url"])
        limit = c5.number_input("Pairs to judge", 1, 100_000, 20)
        name = c6.text_input("Label name", help=help_of["name"])
        c7, c8, c9 = st.columns(3)
        personas = c7.number_input("Personas", 0, 16, 0, help=help_of["personas"])
        shots = c8.number_input("Shots per persona", 1, 16, 3, help=help_of["persona_shots"])
        background = c9.checkbox(
            "In the background", key="run_judge_background",
            help="Run as a job: it goes on after you leave this page.",
        )  # fmt: skip
        if not st.form_submit_button("Run judge", key="run_judge_submit"):
            return
    try:
        model = model.strip() or None
        if model and backend != "openai":  # a served model's name is no path on this machine
            model = store.workspace.confine_source(model)
        judge = Judge(
            name=name.strip(),
            backend=backend,
            model=model,
            template=template,
            url=url.strip() or None,
            personas=int(personas),
            persona_shots=int(shots),
        )
        if background:
            spec = judge.config() | {"dataset": dataset, "limit": int(limit)}
            if widgets.launch_background(store, "judge", spec, f"judge {judge.name}"):
                st.session_state[_SELECT_NEXT] = judge.name  # once its labels arrive
            return
        bar = st.progress(0.0, text="loading the model")
        backend_obj = open_backend(judge, store.workspace)
        counts = judge_dataset(
            store,
            dataset,
            judge,
            backend_obj,
            limit=int(limit),
            progress=lambda done, total: bar.progress(
                done / max(total, 1), text=f"{done} of {total} pairs"
            ),
        )
    except CuratorError as exc:
        st.error(str(exc))
    else:
        state.forget()
        st.session_state[_SELECT_NEXT] = judge.name  # shown below once the page reruns
        state.flash(
            "success",
            f"{judge.name}: judged {counts['judged']} pairs, {counts['skipped_done']} were done",
        )
        st.rerun()


def abstain_reason(result, alpha: float, items) -> str:
    """Why no threshold was certified, in words a curator can act on."""
    n = len(items)
    if n < SelectiveConfig().min_kept:
        return (
            f"No threshold passes the test: only {n} calibration items, and a threshold is "
            f"tested only when it keeps at least {SelectiveConfig().min_kept}. Label more pairs "
            "or run the judge on more of them."
        )
    agree = sum(item.agrees for item in items) / n
    return (
        f"No threshold passes the test: even this judge's most confident verdicts disagree with "
        f"the reference more than alpha {alpha:.2f} allows at this delta (it agrees on "
        f"{agree:.1%} of all {n} items). Raise alpha, or use a stronger judge; everything goes "
        "to people meanwhile."
    )


with st.expander("Run a judge on this dataset"):
    st.caption(
        "Runs in this session, or as a background job. The embedded SmolLM2 is a "
        "code-path default, not a good judge: plug in a real model or server for real labels."
    )
    _run_judge_form()

judges = state.memo(("judges_in", dataset), lambda: judges_in(store, dataset))
if not judges:
    st.info(f"No LM labels in {dataset!r} yet: run a judge on it first.")
    st.stop()
if st.session_state.get(_SELECT_NEXT) in judges:  # the judge just run is the one shown
    st.session_state["judges_judge"] = st.session_state.pop(_SELECT_NEXT)
judge = st.selectbox("Judge", judges, key="judges_judge")

defaults = SelectiveConfig()
fields = SelectiveConfig.__dataclass_fields__
a, d, r = st.columns(3)
alpha = a.number_input(
    "alpha",
    0.01,
    0.5,
    defaults.alpha,
    0.01,
    key="judges_alpha",
    help=fields["alpha"].metadata["help"],
)
delta = d.number_input(
    "delta",
    0.01,
    0.5,
    defaults.delta,
    0.01,
    key="judges_delta",
    help=fields["delta"].metadata["help"],
)
reference = r.selectbox(
    "Calibrate against",
    REFERENCES,
    key="judges_reference",
    help=fields["reference"].metadata["help"],
)

try:
    against = calibration_reference(store, dataset, reference)
    items = state.memo(
        ("calibration_items", dataset, judge, against),
        lambda: calibration_items_from_store(store, dataset, judge, reference=against),
    )
except CuratorError as exc:
    st.error(str(exc))
    st.stop()
result = calibrate(items, alpha, delta, judge=judge)

cols = st.columns(4)
cols[0].metric("Threshold", "abstains" if result.threshold is None else f"{result.threshold:.3f}")
cols[1].metric("Coverage", f"{result.coverage:.1%}", help="share of calibration items it keeps")
cols[2].metric(
    "Agreement on kept",
    "–" if result.empirical_agreement is None else f"{result.empirical_agreement:.3f}",
)
cols[3].metric(
    "Guaranteed",
    "–" if result.guaranteed_agreement is None else f"≥ {result.guaranteed_agreement:.3f}",
    help=f"holds with probability ≥ {1 - delta:.3f}",
)
if result.threshold is None:
    st.warning(abstain_reason(result, alpha, items), icon=":material/block:")
st.caption(
    f"{result.n} calibration items, against "
    + (
        "gold labels (instances with a gold side and this judge's label; gold ties left out)."
        if against == "gold"
        else "the human majority (instances with both a human majority and this judge)."
    )
)

curve = coverage_curve(items)
if not curve.empty:
    fig = go.Figure(
        go.Scatter(
            x=curve["coverage"],
            y=curve["agreement"],
            mode="lines",
            name="kept items",
            customdata=curve[["threshold", "n_kept"]],
            hovertemplate="threshold %{customdata[0]:.4f}<br>kept %{customdata[1]}"
            "<br>coverage %{x:.1%}<br>agreement %{y:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=1 - alpha, line_dash="dash", annotation_text="target 1 - alpha")
    if result.threshold is not None:
        fig.add_vline(x=result.coverage, line_dash="dot", annotation_text="calibrated")
    fig.update_layout(
        xaxis_title="coverage (share kept)",
        yaxis_title=f"agreement with {'gold' if against == 'gold' else 'people'} on kept items",
        height=380,
        margin={"t": 30},
    )
    st.plotly_chart(fig, width="stretch")

st.subheader("Agreement with people by domain")
accuracy = judge_accuracy(state.memo(("labels", dataset), lambda: load_labels(store, dataset)))
accuracy = accuracy[accuracy["judge"] == judge]
if accuracy.empty:
    st.caption("No instance has both a human majority and this judge's label.")
else:
    st.caption(
        "Over the pairs this judge labelled that also have a human majority (compared), "
        "of the domain's pairs with a human majority."
    )
    shown = accuracy.assign(
        compared=accuracy["n_labels"], agreement=accuracy["agreement"].round(3)
    ).rename(columns={"n_items": "with a human majority"})
    st.dataframe(
        shown[["domain", "compared", "with a human majority", "agreement"]],
        hide_index=True,
        width="stretch",
    )

st.subheader("Escalate to annotators")
escalated = escalated_instance_ids(store, dataset, judge, result.threshold)
st.write(
    f"{len(escalated):,} instances of {dataset!r} fall below the threshold (or have no label)."
)
people = [u.name for u in list_users(store)]
if not people:
    st.info("Add annotators on the Team page to send them these items.")
else:
    with st.form("escalate"):
        chosen = st.multiselect("Annotators", people, key="escalate_annotators")
        overlap = st.number_input("Annotators per item", 1, max(1, len(people)), 1)
        sure = st.checkbox(
            f"Yes, queue all {len(escalated):,} escalated items", key="escalate_confirm"
        )
        if st.form_submit_button(
            "Send escalated items", disabled=not escalated, key="escalate_submit"
        ):
            if not sure:
                st.warning(
                    f"Tick the box to queue {len(escalated):,} items: that is every item "
                    "the judge may not keep."
                )
                st.stop()
            try:
                counts = assign_escalations(store, dataset, escalated, chosen, overlap=int(overlap))
            except CuratorError as exc:
                st.error(str(exc))
            else:
                st.success(
                    f"queued {counts['created']:,} assignments over {counts['instances']:,} "
                    f"instances ({counts['skipped_existing']:,} were already queued)"
                )
