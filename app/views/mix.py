"""Mix: compose SFT, safety and preference mixtures, see their composition live, check them for
duplicates and eval overlap, build versions, compare two versions, and map what datasets cover.

Everything here is :mod:`curation.mixtures` (specs, versions, diff, export; the build through
:mod:`training.mix_job`, which adds trust or escalate) and :mod:`curation.coverage`; the form only
writes a spec mapping, which ``parse_spec`` checks as it checks a spec file.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.express as px
import streamlit as st

from app import state, widgets
from curation.coverage import (
    GROUP_BY,
    REDUCERS,
    CoverageConfig,
    coverage_map,
    coverage_prompts,
    scatter_figure,
    shares_figure,
    silhouette_note,
)
from curation.decontam import ACTIONS
from curation.errors import CuratorError
from curation.explore import facet_values
from curation.mixtures import (
    FORMATS,
    KINDS,
    LABEL_SOURCES,
    SOURCE_KINDS,
    diff_mixtures,
    export_mixture,
    list_mixtures,
    manifest_tables,
    parse_spec,
    preview,
    resolve_mixture,
)
from curation.pairs import LABELS_HELP
from curation.safety import type_ratios
from training.mix_job import build_mixture

SUFFIXES = {"jsonl": ".jsonl", "parquet": ".parquet", "hf": ""}
_DRY_KEY = "mix_dry_run"  # (spec yaml, manifest) of the last check


def composition_figure(rows: list[dict], title: str):
    """Stage -> source -> safety type, sized by rows (names escaped: plotly renders some tags)."""
    frame = pd.DataFrame(rows)
    frame = frame[frame["rows"] > 0]
    if frame.empty:
        return None
    for column in ("stage", "source", "type"):
        frame[column] = frame[column].fillna("").map(lambda v: html.escape(str(v)) or None)
    path = ["stage", "source", "type"] if frame["type"].notna().any() else ["stage", "source"]
    if frame["stage"].nunique() == 1:
        path = path[1:]
    fig = px.sunburst(frame, path=path, values="rows", title=title)
    fig.update_traces(textinfo="label+value+percent root")
    fig.update_layout(height=420, margin={"t": 40, "l": 0, "r": 0, "b": 0})
    return fig


def source_options(datasets: list[dict], kind: str) -> dict[str, tuple[str, str]]:
    """Menu label -> (dataset, where): each usable dataset whole, and split by its sources."""
    options: dict[str, tuple[str, str]] = {}
    for d in datasets:
        if d["kind"] not in SOURCE_KINDS[kind]:
            continue
        options[d["name"]] = (d["name"], "")
        sources = state.memo(("mix_sources", d["name"]), lambda n=d["name"]: facet_values(store, n))
        for value in sources["source"]:
            if len(sources["source"]) > 1 and "," not in value and "|" not in value:
                options[f"{d['name']} · {value}"] = (d["name"], f"source={value}")
    return options


def compose(datasets: list[dict]) -> None:
    left, middle, right = st.columns([2, 1, 1])
    name = left.text_input("Mixture name", value="my-mix", key="mix_name")
    kind = middle.radio("Kind", KINDS, horizontal=True, key="mix_kind")
    seed = right.number_input("Seed", min_value=0, value=0, step=1, key="mix_seed")
    options = source_options(datasets, kind)
    if not options:
        st.info(f"No datasets a {kind} mixture can draw from: import some first.")
        return
    chosen = st.multiselect(
        "Sources", list(options), default=list(options)[:1], key=f"mix_sources_{kind}"
    )
    mode = st.radio(
        "Amounts as",
        ("fraction", "count"),
        horizontal=True,
        key="mix_mode",
        help="A fraction of each source's rows (above 1 upsamples), or a number of rows.",
    )
    sources: dict[str, dict] = {}
    for label in chosen:
        dataset, where = options[label]
        source = label.split(" · ")[-1]
        source = label if source in sources else source  # a source value named like a dataset
        if mode == "fraction":
            amount = {"fraction": st.slider(label, 0.0, 3.0, 1.0, 0.05, key=f"mix_f_{label}")}
        else:
            amount = {"count": int(st.number_input(label, 0, value=50, key=f"mix_c_{label}"))}
        sources[source] = {"dataset": dataset, **({"where": where} if where else {}), **amount}
    spec: dict = {"name": name.strip(), "kind": kind, "seed": int(seed), "sources": sources}
    if kind == "safety":
        safety_sets = [d["name"] for d in datasets if d["kind"] == "safety"]
        if not safety_sets:
            st.info("A safety mixture needs a safety dataset (WildJailbreak types): import one.")
            return
        c1, c2, c3, c4 = st.columns(4)
        spec["safety"] = {
            "dataset": c1.selectbox("Safety pool", safety_sets, key="mix_safety_set"),
            "fraction": c2.slider("Safety share", 0.0, 0.9, 0.1, 0.01, key="mix_safety_share"),
            "ratios": type_ratios(
                c3.slider("Harmful share", 0.0, 1.0, 0.5, 0.05, key="mix_harmful",
                          help="The rest are benign contrastive prompts: the over-refusal control."),
                c4.slider("Adversarial share", 0.0, 1.0, 0.5, 0.05, key="mix_adversarial"),
            ),
            "name": "safety",
        }  # fmt: skip
    if kind == "preference":
        c1, c2, c3 = st.columns(3)
        spec["preference"] = {
            "labels": c1.selectbox("Labels", LABEL_SOURCES, LABEL_SOURCES.index("hybrid"),
                                   key="mix_labels", help=LABELS_HELP),
            "slight": c2.selectbox("'Slightly' preferences", ("collapse", "drop"), key="mix_slight"),
            "trusted_only": c3.checkbox("Only LM labels trust-or-escalate keeps", key="mix_trusted"),
        }  # fmt: skip
    with st.expander("Dedup and decontamination"):
        c1, c2, c3 = st.columns(3)
        exact = c1.checkbox("Exact duplicates", value=True, key="mix_exact")
        near = c2.checkbox("Near duplicates (MinHash)", value=True, key="mix_near")
        threshold = c3.slider("Near-duplicate Jaccard", 0.5, 1.0, 0.8, 0.05, key="mix_jaccard")
        spec["dedup"] = {"exact": exact, "near": near, "threshold": threshold}
        evals = st.multiselect(
            "Decontaminate against",
            [
                d["name"]
                for d in datasets
                if d["name"] not in {s["dataset"] for s in sources.values()}
            ],
            key="mix_against",
            help="Tulu 3 rule: 8-gram overlap on user turns, > 50% of an eval prompt's tokens; a "
            "source is flagged above 2% of an eval set. Import eval files as datasets first.",
        )
        action = st.radio("On overlap", ACTIONS, horizontal=True, key="mix_action")
        spec["decontaminate"] = {"against": evals, "action": action}

    try:
        parsed = parse_spec(spec, file="the form")
        expected = state.memo(("mix_preview", parsed.to_yaml()), lambda: preview(store, parsed))
    except CuratorError as exc:
        widgets.error(exc)
        return
    rows = [{**r, "rows": r["expected"]} for r in expected]
    fig = composition_figure(rows, f"{sum(r['rows'] for r in rows):,} rows expected")
    left, right = st.columns([3, 2])
    if fig is not None:
        left.plotly_chart(fig, width="stretch", key="mix_sunburst")
    right.dataframe(pd.DataFrame(expected), hide_index=True, key="mix_expected")
    right.caption("Expected before dedup and decontamination; the build reports the real counts.")
    with st.expander("Spec (YAML)"):
        st.code(parsed.to_yaml(), language="yaml")
        st.download_button("Download spec", parsed.to_yaml(), f"{parsed.name}.yaml", key="mix_dl")

    check, build, background = st.columns(3)
    if background.button("Build in the background", key="mix_build_background"):
        widgets.launch_background(
            store, "mix", {"spec": parsed.to_dict()}, f"mixture {parsed.name}"
        )
    if check.button("Check dedup and decontamination", key="mix_check"):
        try:
            with st.spinner("Reading the sources…"):
                result = build_mixture(store, parsed, dry_run=True)
        except CuratorError as exc:
            widgets.error(exc)
        else:
            st.session_state[_DRY_KEY] = (parsed.to_yaml(), result.manifest)
    if build.button("Build", type="primary", key="mix_build"):
        try:
            with st.spinner("Building…"):
                result = build_mixture(store, parsed)
        except CuratorError as exc:
            widgets.error(exc)
        else:
            state.forget()
            verb = "Unchanged, still" if result.reused else "Built"
            state.flash(
                "success",
                f"{verb} {result.ref}: {result.manifest['rows']:,} rows, "
                f"{result.manifest['content_hash']}",
            )
            st.rerun()
    dry = st.session_state.get(_DRY_KEY)
    if dry and dry[0] == parsed.to_yaml():
        reports(dry[1])


def reports(manifest: dict) -> None:
    """The dedup and decontamination reports (and counts drawn) of a manifest."""
    tables = manifest_tables(manifest)
    st.markdown("**Drawn per source**")
    st.dataframe(pd.DataFrame(tables["sources"]), hide_index=True, key="mix_report_sources")
    if tables["safety"]:
        st.dataframe(pd.DataFrame(tables["safety"]), hide_index=True, key="mix_report_safety")
    st.markdown("**Duplicates dropped**")
    if tables["dedup"]:
        st.dataframe(pd.DataFrame(tables["dedup"]), hide_index=True, key="mix_report_dedup")
        with st.expander("Examples"):
            st.dataframe(pd.DataFrame(tables["dedup_examples"]), hide_index=True)
    else:
        st.caption("None.")
    st.markdown("**Eval overlap**")
    if tables["decontamination"]:
        frame = pd.DataFrame(tables["decontamination"])
        st.dataframe(frame, hide_index=True, key="mix_report_decontam")
        flagged = sorted(set(frame.loc[frame["flagged"], "source"]))
        if flagged:
            st.warning(f"Flagged (over 2% of an eval set): {', '.join(flagged)}.")
        if tables["decontamination_matches"]:
            with st.expander("Matches"):
                st.dataframe(pd.DataFrame(tables["decontamination_matches"]), hide_index=True)
    else:
        st.caption("Not checked: choose eval sets under Dedup and decontamination.")


def versions(stored: list[dict]) -> None:
    st.dataframe(
        pd.DataFrame(stored)[["ref", "kind", "rows", "content_hash", "created_at"]],
        hide_index=True,
        key="mix_versions",
    )
    ref = st.selectbox("Version", [m["ref"] for m in stored], key="mix_version")
    mixture = resolve_mixture(store, ref)
    manifest = mixture["manifest"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Rows", f"{manifest['rows']:,}")
    c2.metric("Stages", len(manifest["stages"]))
    c3.metric("Seed", manifest["seed"])
    st.caption(f"Content hash `{mixture['content_hash']}` · folder `{mixture['path']}`")
    drawn = []
    for stage in manifest["stages"]:
        drawn += [{"stage": stage["name"], "source": s["source"], "type": None, "rows": s["drawn"]}
                  for s in stage["sources"]]  # fmt: skip
        safety = stage.get("safety") or {}
        drawn += [{"stage": stage["name"], "source": safety["source"], "type": t, "rows": i["drawn"]}
                  for t, i in (safety.get("types") or {}).items()]  # fmt: skip
    fig = composition_figure(drawn, f"{ref}: rows drawn")
    if fig is not None:
        st.plotly_chart(fig, width="stretch", key="mix_version_sunburst")
    reports(manifest)
    with st.form("mix_export"):
        left, right = st.columns(2)
        fmt = left.radio("Export as", FORMATS, horizontal=True, key="mix_export_format")
        out = right.text_input(
            "Output path (in the workspace's exports folder)", key="mix_export_out"
        )
        if st.form_submit_button("Export", key="mix_export_go"):
            name = out.strip() or f"{ref.replace('@', '-v')}{SUFFIXES[fmt]}"
            try:
                target = state.workspace().confine(name, base="exports", within_base=True)
                report = export_mixture(store, ref, fmt, target)
            except CuratorError as exc:
                widgets.error(exc)
            else:
                st.success(f"Wrote {report['rows']:,} rows to `{report['path']}`.")


def compare(stored: list[dict]) -> None:
    refs = [m["ref"] for m in stored]
    left, right = st.columns(2)
    a = left.selectbox("From", refs, index=min(1, len(refs) - 1), key=f"mix_diff_a_{len(refs)}")
    b = right.selectbox("To", refs, index=0, key=f"mix_diff_b_{len(refs)}")
    diff = diff_mixtures(store, a, b)
    rows = diff["rows"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Rows", f"{rows['b']:,}", delta=rows["b"] - rows["a"])
    c2.metric("Shared rows", f"{rows['shared']:,}")
    c3.metric(f"Only in {a}", f"{rows['only_a']:,}")
    c4.metric(f"Only in {b}", f"{rows['only_b']:,}")
    st.caption("Same content." if diff["same_content"] else "Different content.")
    if diff["spec_changes"]:
        changes = pd.DataFrame(diff["spec_changes"]).astype(str)
        st.dataframe(changes, hide_index=True, key="mix_diff_spec")
    st.dataframe(pd.DataFrame(diff["composition"]), hide_index=True, key="mix_diff_composition")


def coverage(datasets: list[dict]) -> None:
    """Where the prompts of several datasets sit: MiniLM, a 2-D map, k-means by silhouette."""
    st.caption(
        "Prompts are embedded with MiniLM, mapped to 2-D and clustered (k by silhouette); the "
        "table gives each source's share of each cluster: sources sharing no cluster test "
        "different things."
    )
    names = [d["name"] for d in datasets]
    chosen = st.multiselect("Datasets", names, key="mix_cov_datasets")
    c1, c2, c3, c4 = st.columns(4)
    group_by = c1.selectbox("Sources are", GROUP_BY, key="mix_cov_group",
                            help="Whole datasets, or datasets split by their source or subset.")  # fmt: skip
    per_source = c2.number_input("Prompts per source", 10, 5000, 300, key="mix_cov_n")
    reducer = c3.selectbox("Map", REDUCERS, key="mix_cov_reducer")
    color = c4.radio("Colour by", ("source", "cluster"), horizontal=True, key="mix_cov_color")
    if st.button("Draw the map", disabled=not chosen, key="mix_cov_go"):
        config = CoverageConfig(per_source=int(per_source), reducer=reducer)
        try:
            with st.spinner("Embedding and mapping the prompts…"):
                sets = coverage_prompts(store, chosen, group_by=group_by)
                st.session_state["mix_cov_map"] = coverage_map(
                    sets, config, workspace=state.workspace()
                )
        except CuratorError as exc:
            widgets.error(exc)
    cmap = st.session_state.get("mix_cov_map")
    if cmap is None:
        return
    c1, c2 = st.columns(2)
    c1.metric("Clusters", cmap.k)
    c2.metric("Silhouette", f"{cmap.silhouette:.3f}", help=silhouette_note(cmap.silhouette))
    st.plotly_chart(scatter_figure(cmap, color), width="stretch", key="mix_cov_scatter")
    st.plotly_chart(shares_figure(cmap), width="stretch", key="mix_cov_shares")
    st.dataframe(cmap.clusters(), hide_index=True, key="mix_cov_clusters")
    st.dataframe(cmap.overlap().round(3), key="mix_cov_overlap")
    st.caption("Overlap of two sources: the share of their prompts in the same clusters (0: none).")


state.require_page_role(state.CURATOR)
st.title("Mix")
st.caption(
    "Compose training mixtures from the workspace's datasets, with fractions or counts per "
    "source, duplicates and eval overlap removed; every build is a version you can rebuild "
    "byte for byte, compare and export."
)
state.show_flash()
store = state.store()
all_datasets = state.memo("datasets", store.list_datasets)
stored_versions = state.memo("mix_versions", lambda: list_mixtures(store))
compose_tab, versions_tab, compare_tab, coverage_tab = st.tabs(
    ["Compose", "Versions", "Compare", "Coverage"]
)
with compose_tab:
    compose(all_datasets)
with versions_tab:
    if stored_versions:
        versions(stored_versions)
    else:
        st.info("No mixture built yet.")
with compare_tab:
    if len(stored_versions) >= 1:
        compare(stored_versions)
    else:
        st.info("Build a mixture twice (or two mixtures) to compare versions.")
with coverage_tab:
    coverage(all_datasets)
