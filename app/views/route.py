"""Route: which instances go to people and which to the LM, under a budget.

The pipeline is :mod:`routing`: features (:mod:`routing.features`), a sweep of reward models on
sampled human/LM splits (:mod:`routing.sweeps`), the performance predictor fitted on it
(:mod:`routing.ppm`) and the router (:mod:`routing.router`); queueing a plan's human items is
:mod:`curation.queues`. This page calls them, one call per action, and shows what they return.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import state, widgets
from curation.errors import CuratorError
from curation.queues import assign_plan
from curation.store import InstanceFilter
from curation.users import list_users
from routing.evaluation import PAIRED, EvaluateConfig, Proof, prove_predictor
from routing.features import FeatureConfig, FeatureMatrix, compute_features
from routing.ppm import (
    DEFAULT_KIND,
    PPM_KINDS,
    PerformancePredictor,
    PPMConfig,
    load_ppm,
    train_ppm,
)
from routing.router import (
    METHODS,
    RouteConfig,
    RoutePlan,
    default_method,
    human_share_by_feature,
    list_plans,
    predicted_curve,
    route,
    save_plan,
)
from routing.sweeps import (
    SCORERS,
    TARGETS,
    SweepConfig,
    list_sweeps,
    run_sweep,
    sweep_blocker,
)
from routing.taggers import tag_status
from training.routing_jobs import features_spec, sweep_spec

CURVE_BUDGETS = [k / 10 for k in range(11)]
TOP_FEATURES = 20
_PPM_KEY = "route_ppm_id"  # (dataset, id) of the predictor this session fitted last
_PLAN_KEY = "route_plan_id"  # the plan this session saved last
# Features end to end on 2 CPU cores (README's benchmarks: 2,000 demo pairs at 18 pairs/s, and
# 100,000 at 17.5): the page's estimate, and above a few minutes the background by default.
FEATURE_PAIRS_PER_S = 17.5
FOREGROUND_MINUTES = 2
_CURVE_KEY = "route_curve"  # {(ppm id, dataset, features digest): predicted_curve(...)}
_PROOF_KEY = "route_proof"  # {(ppm id, dataset, seeds): prove_predictor(...)}


def main() -> None:
    state.require_page_role(state.CURATOR)
    st.title("Route")
    st.caption(
        "Which instances are worth a person's label? A sweep trains reward models on sampled "
        "human/LM splits and scores each (cross-fitted on the dataset's own pairs, or on an eval "
        "set) on pairs that the proof never uses; a performance predictor learns the score from "
        "which features the human-labelled instances have; the router spends the budget where "
        "the predictor expects people to help most. The proof then trains on the routed split "
        "and compares it with random, all-human, all-LM and an oracle over paired seeds, with "
        "paired standard errors."
    )
    state.show_flash()
    store = state.store()
    datasets = state.memo("datasets", store.list_datasets)
    prefs = [d["name"] for d in datasets if d["kind"] == "preference"]
    evals = [d["name"] for d in datasets if d["kind"] == "eval"]
    if not prefs:
        st.info("No preference datasets yet: import one, or build the demo workspace.")
        st.stop()
    left, right = st.columns(2)
    dataset = left.selectbox("Dataset", prefs, key="route_dataset")
    eval_set = right.selectbox(
        "Eval set",
        evals,
        key="route_eval",
        help="A RewardBench-format dataset a sweep scored on an eval set is scored on.",
    )

    features = _features_section(store, dataset)
    _sweep_section(store, dataset, eval_set, features)
    predictor = _predictor_section(store, dataset)
    if predictor is None or features is None:
        st.stop()
    _proof_section(store, dataset, predictor)
    plan = _budget_section(store, dataset, predictor, features)
    if plan is None:
        st.stop()
    _features_to_humans_section(features, plan)
    _plan_section(store, dataset, plan)


# ---- 1. features ------------------------------------------------------------------------------


def _load_features(store, dataset: str) -> FeatureMatrix | None:
    try:
        return FeatureMatrix.load(store, dataset)
    except CuratorError:
        return None


def _features_section(store, dataset: str) -> FeatureMatrix | None:
    st.subheader("Features")
    features = state.memo(("route_features", dataset), lambda: _load_features(store, dataset))
    if features is None:
        st.info(f"{dataset!r} has no features yet: compute them first.")
    else:
        st.write(
            f"{len(features.names)} binary features over {len(features.instance_ids):,} pairs "
            "(lexical measures in thirds, prompt tags)."
        )
        with st.expander("Instances per feature"):
            st.dataframe(
                pd.DataFrame({"feature": features.names, "instances": features.counts()}),
                hide_index=True,
                key="route_feature_counts",
            )
        tagged = {name.partition("=")[0] for name in features.names}
        for status in tag_status().values():
            if status.dimension in tagged and not status.used_by_predictor:
                st.caption(
                    f"{status.dimension} is left out of the routing predictor: {status.reason}"
                )
        st.caption("A tag the tagger was not sure of is `unknown`; the predictor ignores those.")
    help_of = {
        name: f.metadata.get("help") for name, f in FeatureConfig.__dataclass_fields__.items()
    }
    n_pairs = store.count_instances(InstanceFilter(dataset=dataset))
    minutes = n_pairs / FEATURE_PAIRS_PER_S / 60
    with st.form("route_features_form"):
        left, right = st.columns(2)
        tagger = left.selectbox(
            "Prompt tagger", ("embedding", "none", "lm"), help=help_of["tagger"], key="route_tagger"
        )
        background = right.checkbox(
            "In the background",
            value=minutes > FOREGROUND_MINUTES,
            key="route_features_background",
            help="Run as a job: it goes on after you leave this page.",
        )
        st.caption(
            f"{n_pairs:,} pairs: about {max(1, round(minutes))} min on 2 CPU cores "
            f"({FEATURE_PAIRS_PER_S} pairs/s measured, embedding tagger; the LM tagger is slower)."
        )
        label = "Recompute features" if features is not None else "Compute features"
        if not st.form_submit_button(label, key="route_compute_features"):
            return features
    if background:
        config = FeatureConfig(tagger=tagger)
        widgets.launch_background(store, "features", features_spec(dataset, config), "features")
        return features
    bar = st.progress(0.0, text="loading the encoder")
    try:
        summary = compute_features(
            store,
            dataset,
            # small chunks only so that the bar moves; the measures are the same
            FeatureConfig(tagger=tagger, chunk_pairs=32),
            progress=lambda stage, done, total: bar.progress(
                done / max(total, 1), text=f"{stage}: {done} of {total}"
            ),
        )
    except CuratorError as exc:
        st.error(str(exc))
        return features
    state.forget()
    state.flash(
        "success",
        f"{dataset}: {len(summary.counts)} binary features over {summary.instances:,} pairs",
    )
    st.rerun()


# ---- 2. sweeps and predictors -----------------------------------------------------------------


def _sweep_section(store, dataset: str, eval_set: str | None, features) -> None:
    st.subheader("Sweep")
    st.caption(
        "Each run trains a reward model on one split (human labels on the sampled instances, the "
        "LM judge's on the rest) and scores it: cross-fitted on the dataset's own pairs, or on the "
        "eval set. Runs are stored as they finish."
    )
    if eval_set is None:
        st.info(
            "No eval set in this workspace: sweeps are scored on the dataset's own pairs "
            "(crossfit). To score on an eval set, import a RewardBench-format dataset (kind eval)."
        )
    fields = SweepConfig.__dataclass_fields__
    blocker = state.memo(("route_sweep_blocker", dataset), lambda: sweep_blocker(store, dataset))
    with st.form("route_sweep_form"):
        c1, c2, c3, c4 = st.columns(4)
        runs = c1.number_input(
            "Runs", 5, 10_000, 60, help=fields["runs"].metadata["help"], key="route_runs"
        )
        sampler = c2.selectbox(
            "Sampler",
            ("grouped", "uniform", "mixed"),
            help=fields["sampler"].metadata["help"],
            key="route_sampler",
        )
        seed = c3.number_input(
            "Seed", 0, 2**31 - 1, 0, help=fields["seed"].metadata["help"], key="route_seed"
        )
        kind = c4.selectbox(
            "Predictor",
            PPM_KINDS,
            index=PPM_KINDS.index(DEFAULT_KIND),
            help="Fitted on the runs when they are done.",
            key="route_kind",
        )
        c5, c6, c7 = st.columns(3)
        scorer = c5.selectbox(
            "Scorer", SCORERS, help=fields["scorer"].metadata["help"], key="route_scorer"
        )
        target = c6.selectbox(
            "Scored on", TARGETS, help=fields["target"].metadata["help"], key="route_target"
        )
        background = c7.checkbox(
            "In the background", key="route_sweep_background",
            help="Run as a job: it goes on after you leave this page.",
        )  # fmt: skip
        # a widget's value inside a form is only known on submit: "eval" without an eval set is
        # refused below rather than by disabling the button
        submitted = st.form_submit_button(
            "Run sweep", disabled=blocker is not None, key="route_run_sweep"
        )
    if blocker is not None:
        st.warning(f"A sweep cannot run yet: {blocker}.", icon=":material/block:")
    scored_on = eval_set if target == "eval" else None  # crossfit reads no eval set
    if submitted and target == "eval" and eval_set is None:
        st.error(
            "A sweep scored on an eval set needs one: import a RewardBench-format dataset "
            "(kind eval), or score on crossfit."
        )
    elif submitted and scorer != "probe" and not background:
        st.error("A reward_model sweep trains a model per run: tick 'In the background'.")
    elif submitted and background:
        config = SweepConfig(
            runs=int(runs), sampler=sampler, seed=int(seed), scorer=scorer, target=target
        )
        try:
            spec = sweep_spec(dataset, scored_on, config, ppm_kind=kind)
        except CuratorError as exc:
            st.error(str(exc))
        else:
            widgets.launch_background(store, "sweep", spec, f"a {int(runs)}-run sweep")
    elif submitted:
        bar = st.progress(0.0, text="encoding the pairs")
        try:
            sweep_id = run_sweep(
                store,
                dataset,
                scored_on,
                SweepConfig(runs=int(runs), sampler=sampler, seed=int(seed), target=target),
                progress=lambda done, total: bar.progress(
                    done / max(total, 1), text=f"{done} of {total} runs"
                ),
            )
            bar.progress(1.0, text="fitting the performance predictor")
            predictor = train_ppm(store, sweep_id, PPMConfig(kind=kind))
        except CuratorError as exc:
            st.error(str(exc))
        else:
            _fitted(dataset, predictor, f"sweep {sweep_id}: {int(runs)} runs")

    sweeps = state.memo(("route_sweeps", dataset), lambda: list_sweeps(store, dataset))
    if not sweeps:
        st.caption(f"No sweeps on {dataset!r} yet.")
        return
    st.dataframe(pd.DataFrame(sweeps), hide_index=True, key="route_sweeps_table")
    with st.form("route_fit_form"):
        c1, c2 = st.columns(2)
        sweep_id = c1.selectbox("Sweep", [s["id"] for s in sweeps], key="route_fit_sweep")
        kind = c2.selectbox("Predictor kind", PPM_KINDS, key="route_fit_kind")
        if not st.form_submit_button("Fit predictor", key="route_fit_submit"):
            return
    try:
        predictor = train_ppm(store, int(sweep_id), PPMConfig(kind=kind))
    except CuratorError as exc:
        st.error(str(exc))
    else:
        _fitted(dataset, predictor, f"sweep {sweep_id}")


def _fitted(dataset: str, predictor: PerformancePredictor, what: str) -> None:
    st.session_state[_PPM_KEY] = (dataset, predictor.id)
    cv = predictor.metrics["cv"]
    state.forget()
    state.flash(
        "success",
        f"{what}; predictor {predictor.id} ({predictor.kind}): CV R² {cv['r2']:.3f}, "
        f"Spearman {cv['spearman']:.3f}",
    )
    st.rerun()


def _predictor(store, dataset: str) -> PerformancePredictor:
    """The predictor this session fitted last on ``dataset``, else the newest one stored."""
    chosen = st.session_state.get(_PPM_KEY)
    if chosen and chosen[0] == dataset:
        return state.memo(("route_ppm", chosen[1]), lambda: load_ppm(store, chosen[1]))
    return state.memo(("route_ppm_newest", dataset), lambda: load_ppm(store, dataset=dataset))


def _predictor_section(store, dataset: str) -> PerformancePredictor | None:
    st.subheader("Predictor fit")
    try:
        predictor = _predictor(store, dataset)
    except CuratorError:
        st.info(f"No performance predictor for {dataset!r} yet: run a sweep first.")
        return None
    source = predictor.provenance
    if SweepConfig.from_dict(source.get("sweep_config") or {}).target == "eval":
        scored_on = f"the eval set {source.get('eval_dataset')!r}"
    else:
        scored_on = "cross-fitted agreement on the dataset's own pairs"
    st.caption(
        f"Predictor {predictor.id} ({predictor.kind}) fitted on sweep {source.get('sweep_id')}: "
        f"{source.get('runs')} runs scored on {scored_on}. Cross-validated: "
        "each run's score is predicted by a model that did not see that run."
    )
    cv = predictor.metrics.get("cv", {})
    cols = st.columns(4)
    cols[0].metric("CV R²", f"{cv.get('r2', float('nan')):.3f}")
    cols[1].metric("CV Spearman", f"{cv.get('spearman', float('nan')):.3f}")
    cols[2].metric("CV RMSE", f"{cv.get('rmse', float('nan')):.4f}")
    cols[3].metric("Sweep runs", f"{cv.get('runs', source.get('runs', 0))}")

    baselines = predictor.metrics.get("baselines")
    if baselines:
        frame = pd.DataFrame(
            [{"kind": kind, **{k: m.get(k) for k in ("r2", "spearman", "rmse")}}
             for kind, m in baselines.items()]
        )  # fmt: skip
        st.dataframe(frame, hide_index=True, key="route_baselines")

    curve_col, importance_col = st.columns(2)
    learning = predictor.metrics.get("learning_curve") or []
    with curve_col:
        if learning:
            frame = pd.DataFrame(learning)
            fig = go.Figure()
            for metric, name in (("r2", "R²"), ("spearman", "Spearman")):
                fig.add_trace(go.Scatter(x=frame["runs"], y=frame[metric], mode="lines+markers",
                                         name=name))  # fmt: skip
            fig.update_layout(
                title="Learning curve",
                xaxis_title="sweep runs used",
                yaxis_title="cross-validated fit",
                height=340,
                margin={"t": 40},
            )
            st.plotly_chart(fig, width="stretch", key="route_learning_curve")
        else:
            st.caption("Too few runs for a learning curve.")
    importances = predictor.metrics.get("importances") or {}
    with importance_col:
        top = sorted(importances.items(), key=lambda kv: -kv[1])[:15]
        if top:
            fig = go.Figure(go.Bar(x=[v for _, v in top], y=[n for n, _ in top], orientation="h"))
            fig.update_layout(
                title="Feature importance",
                xaxis_title="share of the fit",
                yaxis={"autorange": "reversed"},
                height=340,
                margin={"t": 40},
            )
            st.plotly_chart(fig, width="stretch", key="route_importances")
    return predictor


# ---- 3. proof ---------------------------------------------------------------------------------


def _proof_section(store, dataset: str, predictor: PerformancePredictor) -> None:
    st.subheader("Proof")
    st.caption(
        "Does routing beat a random split of the same size? Under each paired seed every method "
        "trains reward probes on the same pairs and is scored on the same proof pairs, which no "
        "sweep run was scored on, so each method's difference from random is measured per seed."
    )
    with st.form("route_proof_form"):
        seeds = st.number_input(
            "Paired seeds", 2, 1_000, 10,
            help=EvaluateConfig.__dataclass_fields__["seeds"].metadata["help"],
            key="route_proof_seeds",
        )  # fmt: skip
        submitted = st.form_submit_button("Prove routing", key="route_proof_run")
    key = (predictor.id, dataset, int(seeds))
    cache = st.session_state.setdefault(_PROOF_KEY, {})
    if submitted:
        bar = st.progress(0.0, text="training reward probes on each method's split")
        config = EvaluateConfig(
            seeds=int(seeds), route=RouteConfig(method=default_method(predictor.kind))
        )
        try:
            proof = prove_predictor(
                store,
                dataset,
                predictor,
                config,
                progress=lambda done, total: bar.progress(
                    done / max(total, 1), text=f"{done} of {total} reward probes"
                ),
            )
        except CuratorError as exc:
            st.error(str(exc))
            return
        finally:
            bar.empty()
        cache.clear()
        cache[key] = proof
    if key in cache:
        _show_proof(cache[key])


def _show_proof(proof: Proof) -> None:
    headroom = proof.headroom
    if headroom["significant"]:
        st.success(headroom["verdict"])
    else:
        st.warning(headroom["verdict"])
        st.caption(
            "Without headroom, a plan's predicted score and gain (below) are not to be trusted on "
            "this data."
        )
    st.caption(f"Scored on {proof.scored_on}. Error bars: ±2 paired standard errors.")
    rows = [r for r in proof.rows if r["method"] != "headroom"]
    fig = go.Figure()
    for method in PAIRED:
        mine = [r for r in rows if r["method"] == method and "delta_vs_random" in r]
        if not mine:
            continue
        fig.add_trace(
            go.Scatter(
                x=[r["budget"] for r in mine],
                y=[r["delta_vs_random"] for r in mine],
                error_y={"type": "data", "array": [2 * r["delta_se"] for r in mine]},
                mode="lines+markers",
                name=method,
                line={"dash": "dash"} if method == "oracle" else None,
            )
        )
    fig.add_hline(y=0, line_dash="dash", line_color="gray", annotation_text="random")
    fig.update_layout(
        title="Score gained over a random split of the same size (paired)",
        xaxis_title="human share of the pairs",
        xaxis_tickformat=".0%",
        yaxis_title="score minus random's score",
        height=380,
        margin={"t": 40},
    )
    st.plotly_chart(fig, width="stretch", key="route_proof_chart")
    table = pd.DataFrame(
        [
            {
                "method": r["method"],
                "budget": r["budget"],
                "mean": r["mean"],
                "std": r["std"],
                "seeds": r["seeds"],
                "delta vs random": r.get("delta_vs_random"),
                "SE": r.get("delta_se"),
            }
            for r in rows
        ]
    )
    st.dataframe(table, hide_index=True, key="route_proof_table")


# ---- 4. budget --------------------------------------------------------------------------------


def _curve(predictor: PerformancePredictor, dataset: str, features: FeatureMatrix) -> list[dict]:
    """The predicted curve, kept per predictor and feature set for the session (a slider move
    only routes again at the new budget)."""
    digest = hashlib.sha1(features.matrix.tobytes(), usedforsecurity=False).hexdigest()
    key = (predictor.id, dataset, digest)
    cache = st.session_state.setdefault(_CURVE_KEY, {})
    if key not in cache:
        cache.clear()
        cache[key] = predicted_curve(predictor, features, CURVE_BUDGETS)
    return cache[key]


def _budget_section(
    store, dataset: str, predictor: PerformancePredictor, features: FeatureMatrix
) -> RoutePlan | None:
    st.subheader("Budget")
    c1, c2 = st.columns([3, 1])
    percent = c1.slider("Human budget (% of pairs)", 0, 100, 25, key="route_budget")
    method = c2.selectbox(
        "Method", METHODS, key="route_method",
        help=RouteConfig.__dataclass_fields__["method"].metadata["help"],
    )  # fmt: skip
    budget = percent / 100
    try:
        curve = _curve(predictor, dataset, features)
        plan = state.memo(
            ("route_plan", predictor.id, dataset, method, percent),
            lambda: route(
                store,
                dataset,
                RouteConfig(method=method, budget=budget),
                predictor=predictor,
                features=features,
            ),
        )
    except CuratorError as exc:
        st.error(str(exc))
        return None

    cols = st.columns(3)
    cols[0].metric("To people", f"{int(plan.human.sum()):,}", help=f"budget: {plan.budget:,}")
    cols[1].metric("To the LM", f"{int((~plan.human).sum()):,}")
    cols[2].metric("Predicted score", f"{plan.predicted_score:.4f}")
    if plan.human.sum() < plan.budget:
        st.caption(
            f"{method} spends {int(plan.human.sum())} of {plan.budget}: the predictor expects "
            "no gain from more human labels."
        )

    frame = pd.DataFrame(curve)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=frame["budget"], y=frame["routed"], mode="lines+markers",
                             name="routed (top-k)"))  # fmt: skip
    fig.add_trace(go.Scatter(x=frame["budget"], y=frame["random"], mode="lines+markers",
                             name="random split", line={"dash": "dash"}))  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=[budget],
            y=[plan.predicted_score],
            mode="markers",
            marker={"size": 14, "symbol": "star"},
            name=f"this plan ({method})",
        )
    )
    fig.add_vline(x=budget, line_dash="dot")
    fig.update_layout(
        xaxis_title="human share of the pairs",
        xaxis_tickformat=".0%",
        yaxis_title="predicted eval score",
        height=380,
        margin={"t": 30},
    )
    st.plotly_chart(fig, width="stretch", key="route_curve_chart")
    return plan


# ---- 5. which features earned human labels ----------------------------------------------------


def _features_to_humans_section(features: FeatureMatrix, plan: RoutePlan) -> None:
    st.subheader("Which features earned human labels")
    shares = human_share_by_feature(features, plan)
    overall = float(plan.human.mean()) if len(plan.human) else 0.0
    st.caption(
        f"Of the pairs having each feature, the share this plan sends to people (overall "
        f"{overall:.0%}); the {TOP_FEATURES} highest."
    )
    top = shares.head(TOP_FEATURES)
    fig = go.Figure(
        go.Bar(
            x=top["share"],
            y=top["feature"],
            orientation="h",
            customdata=top[["human", "instances"]],
            hovertemplate="%{y}<br>%{customdata[0]} of %{customdata[1]} to people<extra></extra>",
        )
    )
    fig.add_vline(x=overall, line_dash="dash", annotation_text="overall")
    fig.update_layout(
        xaxis_title="share of its pairs sent to people",
        xaxis_tickformat=".0%",
        yaxis={"autorange": "reversed"},
        height=max(300, 22 * len(top) + 80),
        margin={"t": 30},
    )
    st.plotly_chart(fig, width="stretch", key="route_feature_shares")
    with st.expander("Every feature"):
        st.dataframe(shares, hide_index=True, key="route_feature_shares_table")


# ---- 6. saving and sending --------------------------------------------------------------------


def _plan_section(store, dataset: str, plan: RoutePlan) -> None:
    st.subheader("Plan")
    if st.button("Create plan", key="route_create_plan", type="primary"):
        try:
            plan_id = save_plan(store, plan)
        except CuratorError as exc:
            st.error(str(exc))
        else:
            st.session_state[_PLAN_KEY] = plan_id
            state.forget()
            state.flash(
                "success",
                f"Saved route plan {plan_id}: {int(plan.human.sum()):,} pairs to people, "
                f"{int((~plan.human).sum()):,} to the LM.",
            )
            st.rerun()

    plans = state.memo(("route_plans", dataset), lambda: list_plans(store, dataset))
    if not plans:
        st.caption(f"No route plans for {dataset!r} yet.")
        return
    st.dataframe(pd.DataFrame(plans), hide_index=True, key="route_plans_table")
    people = [u.name for u in list_users(store)]
    if not people:
        st.info("Add annotators on the Team page to send them a plan's items.")
        return
    ids = [p["id"] for p in plans]
    last = st.session_state.get(_PLAN_KEY)
    with st.form("route_send_form"):
        c1, c2, c3 = st.columns([1, 3, 1])
        plan_id = c1.selectbox(
            "Plan", ids, index=ids.index(last) if last in ids else 0, key="route_send_plan"
        )
        chosen = c2.multiselect("Annotators", people, key="route_annotators")
        overlap = c3.number_input(
            "Annotators per item", 1, max(1, len(people)), 1, key="route_overlap"
        )
        if not st.form_submit_button("Send to annotators", key="route_send_submit"):
            return
    try:
        counts = assign_plan(store, dataset, int(plan_id), chosen, overlap=int(overlap))
    except CuratorError as exc:
        st.error(str(exc))
    else:
        state.forget()
        st.success(
            f"plan {plan_id}: queued {counts['created']:,} assignments over "
            f"{counts['instances']:,} pairs ({counts['skipped_existing']:,} were already queued)"
        )


# ---- helpers (candidates for routing/) --------------------------------------------------------


main()
