"""Compare: finished training runs side by side.

A run is what a training job recorded (:mod:`training.runs`): its settings, training metrics and
evaluation. The page shows the runs table, the chosen runs' settings that differ and their numbers
side by side, their loss curves overlaid, per-category scores as grouped bars, and what two
generative models answer to the same prompts (greedy, through the evaluation's own
:class:`training.evaluate.Generator`).
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from app import state, widgets
from curation.errors import CuratorError
from training import jobs
from training.evaluate import Generator
from training.runs import Run, list_runs, run_model_dir

ANY = "any"
GENERATIVE = ("sft", "dpo")
SAMPLE_POOL = 500  # prompts sampled from a dataset are drawn from its first instances
_MODELS_KEY = "compare_models"  # {local model folder: loaded Generator}, the pair in use only
_OUTPUTS_KEY = "compare_generations"


def main() -> None:
    state.require_page_role(state.CURATOR)
    st.title("Compare")
    st.caption(
        "Runs are recorded when a training job finishes, with their evaluation. Pick two or more "
        "to compare their settings, scores, loss curves and per-category results."
    )
    store = state.store()
    every = state.memo("compare_runs", lambda: list_runs(store))
    if not every:
        st.info("No runs yet: launch a training job on the Jobs page.")
        st.stop()

    c1, c2, c3 = st.columns(3)
    kind = c1.selectbox("Kind", [ANY, *sorted({r.kind for r in every})], key="compare_kind")
    dataset = c2.selectbox(
        "Dataset", [ANY, *sorted({r.dataset for r in every if r.dataset})], key="compare_dataset"
    )
    mixture = c3.selectbox(
        "Mixture", [ANY, *sorted({r.mixture for r in every if r.mixture})], key="compare_mixture"
    )
    filters = {"kind": kind, "dataset": dataset, "mixture": mixture}
    runs = state.memo(
        ("compare_runs", kind, dataset, mixture),
        lambda: list_runs(store, **{k: None if v == ANY else v for k, v in filters.items()}),
    )
    if not runs:
        st.info("No runs match these filters.")
        st.stop()
    st.dataframe(_runs_frame(runs), hide_index=True, key="compare_table")

    by_id = {r.id: r for r in runs}
    # what was chosen and is still listed, else the two newest runs
    kept = [i for i in st.session_state.get("compare_chosen", []) if i in by_id]
    st.session_state["compare_chosen"] = kept or list(by_id)[:2]
    chosen = st.multiselect(
        "Runs to compare", list(by_id), key="compare_chosen", format_func=lambda i: _label(by_id[i])
    )
    if len(chosen) < 2:
        st.info("Choose at least two runs to compare.")
    else:
        picked = [by_id[i] for i in chosen]
        _side_by_side(picked)
        _loss_curves(store, picked)
        _category_bars(picked)
    _generations(store, runs)


def _label(run: Run) -> str:
    return f"#{run.id} {run.name or run.kind}"


def _runs_frame(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        headline = {
            f"eval {k}": widgets.number_text(v)
            for k, v in _numbers(run.evaluation).items()
            if ".categories." not in f".{k}" and ".subsets." not in f".{k}"
        }
        rows.append(
            {
                "id": run.id,
                "name": run.name or "",
                "kind": run.kind,
                "dataset": run.dataset or "",
                "mixture": run.mixture or "",
                "base model": run.base_model or "",
                "job": "" if run.job_id is None else str(run.job_id),
                "created": run.created_at,
                **headline,
            }
        )
    return pd.DataFrame(rows).fillna("")  # an eval score one run lacks: blank, not None


# ---- two or more runs -----------------------------------------------------------------------


def _side_by_side(runs: list[Run]) -> None:
    st.subheader("Side by side")
    labels = [_label(r) for r in runs]
    trained_on = ("base_model", "dataset", "mixture")
    settings = {
        label: r.config | {name: getattr(r, name) for name in trained_on}
        for label, r in zip(labels, runs, strict=True)
    }
    differing = _differences(settings)
    if differing.empty:
        st.caption("These runs were trained with the same settings.")
    else:
        st.markdown("**Settings that differ**")
        st.dataframe(differing, hide_index=True, key="compare_settings")
    numbers = {
        label: _numbers({"eval": r.evaluation, "train": r.metrics})
        for label, r in zip(labels, runs, strict=True)
    }
    names = sorted(set().union(*numbers.values()))
    if not names:
        st.caption("None of these runs recorded metrics or an evaluation.")
        return
    table = pd.DataFrame({"metric": names})
    for label in labels:
        table[label] = [widgets.number_text(numbers[label].get(n)) for n in names]
    st.markdown("**Scores and metrics**")
    st.dataframe(table, hide_index=True, key="compare_metrics")


def _loss_curves(store, runs: list[Run]) -> None:
    st.subheader("Training curves")
    rows = [
        m | {"run": _label(r)}
        for r in runs
        if r.job_id is not None
        for m in jobs.job_metrics(store, r.job_id)
    ]
    names = list(dict.fromkeys(m["name"] for m in rows))
    if not names:
        st.caption("These runs' jobs logged no metrics.")
        return
    widgets.metric_curves(
        rows, key="compare_curves", series="run", pick_key="compare_curve_metrics"
    )


def _category_bars(runs: list[Run]) -> None:
    st.subheader("Per category")
    rows = [
        {"run": _label(r), "eval set": eval_set, "category": category, "score": score}
        for r in runs
        for eval_set, category, score in _categories(r.evaluation)
    ]
    scored = {row["run"] for row in rows}
    unscored = [r for r in runs if _label(r) not in scored]
    if not rows:
        st.caption(_no_categories(unscored, none=True))
        return
    if unscored:
        st.caption(_no_categories(unscored, none=False))
    frame = pd.DataFrame(rows)
    sets = frame["eval set"].nunique()
    fig = px.bar(
        frame, x="category", y="score", color="run", barmode="group",
        facet_row="eval set" if sets > 1 else None, labels={"category": "", "score": "accuracy"},
    )  # fmt: skip
    fig.update_layout(height=320 * sets + 60, margin={"t": 30})
    st.plotly_chart(fig, width="stretch", key="compare_categories")


def _no_categories(runs: list[Run], *, none: bool) -> str:
    """Why ``runs`` have no per-category scores, and what gives a reward model some."""
    reward = [_label(r) for r in runs if r.kind == "reward"]
    other = [_label(r) for r in runs if r.kind != "reward"]
    said = ["None of these runs has per-category scores." if none else
            f"Without per-category scores: {', '.join(reward + other)}."]  # fmt: skip
    if reward:
        said.append(
            "A reward model gets them when it is evaluated on a categorised eval set, and "
            + ("this one was" if len(reward) == 1 else "these were")
            + " not: launch it again with **Eval set** (`eval_set`, under More settings) naming "
            "one, e.g. demo-eval."
        )
    if other:
        said.append("SFT and DPO runs have none: their evaluation scores each eval set as a whole.")
    return " ".join(said)


# ---- generations ----------------------------------------------------------------------------


def _generations(store, runs: list[Run]) -> None:
    st.subheader("Generations side by side")
    models = {r.id: r for r in runs if r.kind in GENERATIVE and r.artifact_path}
    if len(models) < 2:
        st.caption("Needs two SFT or DPO runs with a saved model under these filters.")
        return
    ids = list(models)
    for side, fallback in (("left", ids[0]), ("right", ids[1])):
        if st.session_state.get(f"compare_gen_{side}") not in models:
            st.session_state[f"compare_gen_{side}"] = fallback
    c1, c2 = st.columns(2)
    left = c1.selectbox(
        "Left model", ids, key="compare_gen_left", format_func=lambda i: _label(models[i])
    )
    right = c2.selectbox(
        "Right model", ids, key="compare_gen_right", format_func=lambda i: _label(models[i])
    )
    datasets = [d["name"] for d in state.memo("datasets", store.list_datasets)]
    source = st.radio("Prompts", ("Type them", "Sample from a dataset"), horizontal=True,
                      key="compare_gen_source")  # fmt: skip
    with st.form("compare_gen_form"):
        if source == "Type them":
            text = st.text_area("Prompts, one per line", key="compare_gen_prompts")
            pick = None
        else:
            c3, c4, c5 = st.columns(3)
            pick = (
                c3.selectbox("Dataset", datasets, key="compare_gen_dataset"),
                c4.number_input("Prompts", 1, 20, 3, key="compare_gen_n"),
                c5.number_input("Seed", 0, 2**31 - 1, 0, key="compare_gen_seed"),
            )
        max_new = st.number_input("Max new tokens", 1, 1024, 64, key="compare_gen_max_new")
        go = st.form_submit_button("Generate", key="compare_gen_submit", type="primary")
    if go:
        try:
            prompts = (
                [line.strip() for line in text.splitlines() if line.strip()]
                if pick is None
                else _sample_prompts(store, pick[0], int(pick[1]), int(pick[2]))
            )
            if not prompts:
                raise CuratorError("no prompts to generate from: type some, or pick a dataset")
            with st.spinner("Fetching the models (one at a storage URL downloads once)"):
                paths = [run_model_dir(store, models[i]) for i in (left, right)]
            outputs = []
            for side, path in zip(("left", "right"), paths, strict=True):
                bar = st.progress(0.0, text=f"{side} model: loading")
                outputs.append(
                    _model(path, paths).generate(
                        prompts,
                        max_new_tokens=int(max_new),
                        progress=lambda done, total, side=side, bar=bar: bar.progress(
                            done / max(total, 1), text=f"{side} model: {done} of {total} prompts"
                        ),
                    )
                )
        except CuratorError as exc:
            widgets.error(exc)
        else:
            st.session_state[_OUTPUTS_KEY] = {
                "labels": (_label(models[left]), _label(models[right])),
                "prompts": prompts,
                "outputs": outputs,
            }
    shown = st.session_state.get(_OUTPUTS_KEY)
    if shown:
        for i, prompt in enumerate(shown["prompts"]):
            st.markdown(f"**Prompt {i + 1}**")
            widgets.text_block(prompt, key=f"compare_gen_prompt_{i}")
            columns = st.columns(2)
            for side, (column, label) in enumerate(zip(columns, shown["labels"], strict=True)):
                with column:
                    st.caption(label)
                    widgets.text_block(shown["outputs"][side][i], key=f"compare_out_{side}_{i}")


def _model(path: Path, keep: list[Path]) -> Generator:
    """The loaded model at ``path``, kept in this session beside the other one in use only."""
    loaded: dict[Path, Generator] = st.session_state.setdefault(_MODELS_KEY, {})
    for stale in [p for p in loaded if p not in keep]:
        del loaded[stale]
    if path not in loaded:
        loaded[path] = Generator.load(path, batch_size=4)
    return loaded[path]


# ---- helpers (candidates for training/runs.py) ------------------------------------------------


def _numbers(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a nested dict, by dotted path (booleans are no scores)."""
    out: dict[str, float] = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _numbers(value, f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _differences(settings: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per setting whose value differs between the runs, values as text."""
    keys = sorted(set().union(*settings.values()))
    rows = []
    for key in keys:
        values = [config.get(key) for config in settings.values()]
        shown = ["" if v is None else v if isinstance(v, str) else json.dumps(v) for v in values]
        if len(set(shown)) > 1:
            rows.append({"setting": key} | dict(zip(settings, shown, strict=True)))
    return pd.DataFrame(rows, columns=["setting", *settings])


def _categories(evaluation: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(eval set, category, score) from a RewardBench-style evaluation, bare or keyed by eval
    set name."""
    evaluation = evaluation or {}
    scored = {"": evaluation} if "categories" in evaluation else evaluation
    return [
        (name, category, float(score))
        for name, result in scored.items()
        if isinstance(result, dict) and isinstance(result.get("categories"), dict)
        for category, score in result["categories"].items()
        if isinstance(score, int | float) and not isinstance(score, bool)
    ]


def _sample_prompts(store, dataset: str, n: int, seed: int) -> list[str]:
    pool = [inst.prompt for _, inst in itertools.islice(store.iter_instances(dataset), SAMPLE_POOL)]
    return random.Random(seed).sample(pool, min(n, len(pool)))


main()
