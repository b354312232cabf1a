"""Routing on real labels, proven with paired statistics: does sending a budget of pairs to people,
chosen by the performance predictor, beat a random choice of the same size?

Data (each imported into a throw-away workspace through the project's presets, every pair used):

- LLMBar (``llmbar/``): 885 pairs with a gold label (the human label here) and verdicts of several
  judges in both orders; the LM label is one judge's original-order verdict (``--llmbar-judges``,
  default ChatGPT and GPT-4, Vanilla_NoRules); the swapped-order verdict gives the judge's position
  consistency, a routing feature and the confidence router's signal.
- PandaLM (``pandalm/``): 999 pairs, 3 human labels each (the majority is the human label) and the
  gpt-3.5-turbo verdict (the LM label).

For each (dataset, judge), as the product does it (`curator features`, `sweep`, `route --evaluate`):

1. features (lexical measures, prompt tags that abstain, the judge's position consistency);
2. **headroom first**: all-human minus all-LM, paired over ``--seeds`` seeds, for each probe
   representation (``tfidf``, ``minilm``, ``tfidf+minilm``): the scorer whose headroom is largest is
   the one that can show routing at all;
3. a sweep of ``--runs`` probes (default scorer, feature-grouped splits, budgets uniform, scored by
   5-fold cross-fitted agreement with the reference on the *fit* half of the pairs);
4. each predictor kind (linear/top-k, quadratic/simulated, LightGBM/simulated, as HP pairs them)
   fitted on that sweep, and ``evaluate_routing`` on the *proof* half: routed, random, all-human,
   all-LM, oracle and confidence at 25/50/75%, each a paired delta against random with its SE.

Beside it, the paper code's reference numbers (``hybrid-preferences/...``: RewardBench Overall of
Tulu-2-13B reward models, Sep 2024): a different scale of experiment; compare the pattern.

    .venv/bin/python benchmarks/routing_real.py --quick   # smoke run, about a minute
    .venv/bin/python benchmarks/routing_real.py           # full data, 300 runs, 20 seeds

Writes benchmarks/results/routing_real.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
PAPER_FILE = Path("hybrid-preferences") / "rewardbench_multipref_feats_best.json"
BUDGETS = (0.25, 0.5, 0.75)
KINDS = ("linear", "quadratic", "lightgbm")
REPRESENTATIONS = ("tfidf", "minilm", "tfidf+minilm")


def log(message: str) -> None:
    print(message, flush=True)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _subsample(records: list[dict], limit: int | None, seed: int = 0) -> list[dict]:
    import numpy as np

    if not limit or limit >= len(records):
        return records
    keep = np.random.default_rng([seed, 1]).choice(len(records), size=limit, replace=False)
    return [records[i] for i in sorted(keep.tolist())]


def import_rows(store, tmp: Path, name: str, preset: str, rows: list[dict]) -> int:
    from curation.importer import ImportOptions, import_path

    path = _write_jsonl(tmp / f"{name}.jsonl", rows)
    return import_path(store, path, ImportOptions(dataset=name, preset=preset)).instances


def build_llmbar(store, data: Path, tmp: Path, args) -> dict[str, Any]:
    from curation.preset_llmbar import llmbar_records

    evaluators = sorted({j.split("/")[0] for j in args.llmbar_judges})
    strategies = sorted({j.split("/")[1] for j in args.llmbar_judges})
    records = list(llmbar_records(data / "llmbar", evaluators=evaluators, strategies=strategies))
    records = _subsample(records, args.limit)
    n = import_rows(store, tmp, "llmbar", "llmbar", records)
    return {"dataset": "llmbar", "pairs": n, "judges": list(args.llmbar_judges),
            "reference": "gold (the LLMBar label)"}  # fmt: skip


def build_pandalm(store, data: Path, tmp: Path, args) -> dict[str, Any]:
    from curation.preset_schemas import pandalm_records

    records = _subsample(list(pandalm_records(data / "pandalm")), args.limit)
    n = import_rows(store, tmp, "pandalm", "pandalm", records)
    return {"dataset": "pandalm", "pairs": n, "judges": ["gpt-3.5-turbo"],
            "reference": "the majority of 3 people"}  # fmt: skip


# ---- one (dataset, judge) -------------------------------------------------------------------


def label_stats(labels) -> dict[str, Any]:
    both = (labels.human != 0) & (labels.lm != 0)
    agree = float((labels.human[both] == labels.lm[both]).mean()) if both.any() else None
    return {"pairs": int(len(labels.human)), "human_labelled": int((labels.human != 0).sum()),
            "lm_labelled": int((labels.lm != 0).sum()), "both": int(both.sum()),
            "lm_agrees_with_human": agree, "judge": labels.judge,
            "reference": labels.reference_source}  # fmt: skip


def run_case(store, dataset: str, judge: str, args) -> dict[str, Any]:
    from curation.pairs import LabelConfig
    from routing.evaluation import (
        EvaluateConfig,
        evaluate_routing,
        measure_headroom,
        routing_table,
    )
    from routing.features import FeatureConfig, compute_features
    from routing.judge_signals import JudgeSignals
    from routing.ppm import PPMConfig, train_ppm
    from routing.reward_probe import ProbeConfig
    from routing.router import RouteConfig, default_method
    from routing.sweeps import SweepConfig, SweepData, SweepRuns, run_sweep

    started = time.perf_counter()
    summary = compute_features(store, dataset, FeatureConfig(judge=judge, domain=args.domain))
    features_s = time.perf_counter() - started
    log(f"  features in {features_s:.0f} s")
    labels = LabelConfig(judge=judge)
    headrooms = {}
    for rep in args.representations:
        config = SweepConfig(labels=labels, probe=ProbeConfig(representation=rep))
        data = SweepData.load(store, dataset, None, config)
        row = measure_headroom(data, seeds=args.seeds)
        row["l2"] = data.config.probe.l2
        headrooms[rep] = row
        log(f"  headroom [{rep}]: {row['delta']:+.4f} ± {row['se']:.4f} "
            f"(all-human {row['all_human']:.4f}, all-LM {row['all_lm']:.4f}, l2 {row['l2']:g})")  # fmt: skip
    signals = JudgeSignals.load(store, dataset, judge)
    uncertainty = signals.uncertainty() if any(signals.available.values()) else None
    kinds: dict[str, dict[str, Any]] = {kind: {"method": default_method(kind), "sweeps": []}
                                        for kind in args.kinds}  # fmt: skip
    sweeps = []
    for sweep_seed in range(args.sweep_seed, args.sweep_seed + args.sweeps):
        config = SweepConfig(runs=args.runs, seed=sweep_seed, labels=labels)
        data = SweepData.load(store, dataset, None, config)
        started = time.perf_counter()
        sweep_id = run_sweep(store, dataset, None, config, data=data)
        sweep_s = time.perf_counter() - started
        runs = SweepRuns.load(store, sweep_id)
        sweeps.append({"id": sweep_id, "seed": sweep_seed, "runs": len(runs),
                       "seconds": round(sweep_s, 1), "runs_per_min": len(runs) / sweep_s * 60,
                       "l2": data.config.probe.l2})  # fmt: skip
        log(f"  sweep {sweep_id} (seed {sweep_seed}): {len(runs)} runs in {sweep_s:.1f} s "
            f"({len(runs) / sweep_s * 60:.0f} runs/min), l2 {data.config.probe.l2:g}")  # fmt: skip
        for kind in args.kinds:
            predictor = train_ppm(store, sweep_id, PPMConfig(kind=kind))
            method = kinds[kind]["method"]
            started = time.perf_counter()
            rows = evaluate_routing(
                data,
                predictor,
                EvaluateConfig(budgets=BUDGETS, seeds=args.seeds,
                               route=RouteConfig(method=method, candidates=args.candidates)),
                uncertainty=uncertainty,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            cv = predictor.metrics["cv"]
            routed = _cell(rows, "routed", 0.25)
            log(f"    {kind}/{method}: CV R^2 {cv['r2']:.3f}, partial R^2 {cv['partial_r2']:.3f}, "
                f"Spearman within budget {cv['spearman_within_budget']:.3f}; routed - random "
                f"@25% {_delta(routed)} ({seconds:.0f} s)")  # fmt: skip
            kinds[kind]["sweeps"].append({
                "sweep_id": sweep_id, "seed": sweep_seed, "cv": cv, "seconds": round(seconds, 1),
                "rows": rows,
                "top_features": dict(list(predictor.metrics["importances"].items())[:8]),
            })  # fmt: skip
        if sweep_seed == args.sweep_seed:
            first = kinds[args.kinds[0]]["sweeps"][0]["rows"]
            log("    " + routing_table(first).replace("\n", "\n    "))
    return {
        "dataset": dataset,
        "judge": judge,
        "labels": label_stats(data.labels),
        "features": {"seconds": round(features_s, 1), "tags": summary.to_dict().get("tags")},
        "headroom_by_representation": headrooms,
        "sweeps": sweeps,
        "confidence_router": uncertainty is not None,
        "kinds": kinds,
    }  # fmt: skip


# ---- reporting ------------------------------------------------------------------------------


def _cell(rows, method: str, budget: float) -> dict[str, Any] | None:
    return next((r for r in rows if r["method"] == method and r.get("budget") == budget), None)


def _delta(row: dict[str, Any] | None) -> str:
    if not row or "delta_vs_random" not in row:
        return "-"
    d, se = row["delta_vs_random"], row["delta_se"]
    return f"{d:+.3f} ± {se:.3f}"


def _over_sweeps(result: dict[str, Any], method: str, budget: float) -> str:
    """A method's paired delta against random in each sweep, and their mean."""
    cells = [_cell(sweep["rows"], method, budget) for sweep in result["sweeps"]]
    if not cells or any(c is None or "delta_vs_random" not in c for c in cells):
        return "-"
    deltas = [c["delta_vs_random"] for c in cells]
    each = ", ".join(f"{c['delta_vs_random']:+.3f}±{c['delta_se']:.3f}" for c in cells)
    return f"**{sum(deltas) / len(deltas):+.3f}** ({each})" if len(cells) > 1 else each


def summary_table(report: dict[str, Any]) -> list[str]:
    """Per (dataset, LM, predictor): the headroom, the two ends, and routed - random at each
    budget as the mean over sweeps (each sweep's paired delta ± SE in brackets)."""
    heads = [f"routed - random @{b:.0%}" for b in BUDGETS]
    lines = [
        "| dataset / LM | predictor / router | headroom | all-LM | all-human | "
        + " | ".join(heads) + " | oracle - random @25% | confidence - random @25% | "
        "routed @25% / all-human |",
        "|---|---|---|---:|---:|" + "---:|" * len(heads) + "---:|---:|---:|",
    ]  # fmt: skip
    for case in report["cases"]:
        for kind, result in case["kinds"].items():
            first = result["sweeps"][0]["rows"]
            head = next(r for r in first if r["method"] == "headroom")
            lm, human = _cell(first, "all-lm", 0.0), _cell(first, "all-human", 1.0)
            ratios = [_cell(s["rows"], "routed", 0.25)["mean"] / human["mean"]
                      for s in result["sweeps"]]  # fmt: skip
            verdict = "yes" if head["significant"] else "**no**"
            lines.append(
                f"| {case['dataset']} / {case['judge']} | {kind} / {result['method']} | "
                f"{head['delta']:+.3f} ± {head['se']:.3f} ({verdict}) | {lm['mean']:.3f} | "
                f"{human['mean']:.3f} | "
                + " | ".join(_over_sweeps(result, "routed", b) for b in BUDGETS)
                + f" | {_delta(_cell(first, 'oracle', 0.25))} | "
                f"{_delta(_cell(first, 'confidence', 0.25))} | "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + " |"
            )
    return lines


def headroom_table(report: dict[str, Any]) -> list[str]:
    lines = ["| dataset / LM | " + " | ".join(report["config"]["representations"]) + " |",
             "|---|" + "---:|" * len(report["config"]["representations"])]  # fmt: skip
    for case in report["cases"]:
        cells = []
        for rep in report["config"]["representations"]:
            h = case["headroom_by_representation"][rep]
            cells.append(f"{h['delta']:+.3f} ± {h['se']:.3f} ({h['all_lm']:.3f} -> "
                         f"{h['all_human']:.3f})")  # fmt: skip
        lines.append(f"| {case['dataset']} / {case['judge']} | " + " | ".join(cells) + " |")
    return lines


def paper_reference(data: Path) -> dict[str, Any] | None:
    path = data / PAPER_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for name, table in raw.items():
        row: dict[str, Any] = {}
        for key in ("human_0", "human_100"):
            if key in table:
                row[key] = table[key]
        for budget in (25, 50, 75):
            cell = table.get(f"human_{budget}") or {}
            for method in ("random", "datamodel_ours"):
                if method in cell:
                    row[f"human_{budget}.{method}"] = cell[method]
        out[name] = row
    return out


def _fmt(cell: dict[str, Any] | None) -> str:
    if not cell or cell.get("score") is None:
        return "-"
    std = cell.get("std")
    return f"{cell['score']:.4f} ± {std:.4f}" if std is not None else f"{cell['score']:.4f}"


def paper_table(reference: dict[str, Any]) -> list[str]:
    cols = ["human_0", "human_25.random", "human_25.datamodel_ours", "human_50.random",
            "human_50.datamodel_ours", "human_75.random", "human_75.datamodel_ours",
            "human_100"]  # fmt: skip
    heads = ["all-LM (0%)", "25% random", "25% routed", "50% random", "50% routed",
             "75% random", "75% routed", "all-human (100%)"]  # fmt: skip
    lines = ["| dataset | " + " | ".join(heads) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in reference.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    return lines


def case_table(case: dict[str, Any]) -> list[str]:
    """The first sweep's full evaluation, per predictor."""
    lines = ["| predictor | method | budget | mean | std | vs random (paired) |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for kind, result in case["kinds"].items():
        for row in result["sweeps"][0]["rows"]:
            if row["method"] == "headroom":
                continue
            lines.append(f"| {kind} | {row['method']} | {row['budget']:.2f} | {row['mean']:.4f} | "
                         f"{row['std']:.4f} | {_delta(row)} |")  # fmt: skip
    return lines


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        "# Routing on real labels (Hybrid Preferences, paired)",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']}",
        f"- command: `{report['command']}`",
        f"- settings: {cfg['sweeps']} sweeps of {cfg['runs']} runs each (feature-grouped "
        "splits, budgets uniform), "
        f"{cfg['seeds']} paired seeds, budgets {', '.join(f'{b:.0%}' for b in BUDGETS)}; reward "
        "model = Bradley-Terry probe (TF-IDF + length, penalty tuned by CV); score = 5-fold "
        "cross-fitted agreement with the reference on the proof half of the pairs (the sweep "
        "is scored on the other half); features: lexical measures, the tags the taxonomy keeps, "
        "the judge's confidence and position consistency"
        + (", the pairs' own domain (LLMBar's subset)" if cfg.get("domain", False) else ""),
        f"- wall time: {report['seconds']:.0f} s",
        "",
        "## Summary",
        "",
        "Every delta is paired (same seeds, same training rows, same folds) and given with its "
        "standard error. Headroom 'no' means all-human - all-LM is under 2 SE: there no router "
        "can show a gain.",
        "",
        *summary_table(report),
        "",
        "## Headroom by scorer representation (why tfidf is the default)",
        "",
        *headroom_table(report),
        "",
    ]
    for case in report["cases"]:
        lab = case["labels"]
        lines += [
            f"## {case['dataset']} / LM = {case['judge']}",
            "",
            f"- labels: {lab['pairs']} pairs; LM agrees with the human label on "
            f"{lab['lm_agrees_with_human']:.3f} of {lab['both']}; reference: {lab['reference']}",
            "- sweeps: "
            + "; ".join(
                f"seed {w['seed']}: {w['runs']} runs in {w['seconds']} s "
                f"({w['runs_per_min']:.0f} runs/min), l2 {w['l2']:g}"
                for w in case["sweeps"]
            ),
            f"- confidence router: {'yes' if case['confidence_router'] else 'no signal'}",
            "- predictor fit (CV over the first sweep's runs): "
            + "; ".join(
                f"{k} R^2 {r['sweeps'][0]['cv']['r2']:.3f}, partial R^2 "
                f"{r['sweeps'][0]['cv']['partial_r2']:.3f}, Spearman within budget "
                f"{r['sweeps'][0]['cv']['spearman_within_budget']:.3f}"
                for k, r in case["kinds"].items()
            ),
            "",
            *case_table(case),
            "",
        ]
    if report.get("paper"):
        lines += ["## Paper code's reference numbers", "",
                  "RewardBench Overall (mean ± std) of Tulu-2-13B reward models, from "
                  f"`{PAPER_FILE}` ('routed' = datamodel_ours).", "",
                  *paper_table(report["paper"]), ""]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=1000, help="runs per sweep")
    parser.add_argument("--seeds", type=int, default=20, help="paired seeds")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--representations", nargs="+", default=list(REPRESENTATIONS),
                        choices=REPRESENTATIONS)  # fmt: skip
    parser.add_argument("--candidates", type=int, default=1000, help="simulated router candidates")
    parser.add_argument("--sweep-seed", type=int, default=0, help="seed of the first sweep")
    parser.add_argument("--sweeps", type=int, default=3,
                        help="sweeps per (dataset, judge), each with its own seed: the predictor "
                        "itself varies between sweeps, which a single sweep's SE does not show")  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="pairs per source at most")
    parser.add_argument("--llmbar-judges", nargs="+",
                        default=["ChatGPT/Vanilla_NoRules/noswap", "GPT-4/Vanilla_NoRules/noswap"])  # fmt: skip
    parser.add_argument("--sources", nargs="+", default=["llmbar", "pandalm"],
                        choices=["llmbar", "pandalm"])  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=None, help="workspace folder to keep")
    parser.add_argument("--no-domain", dest="domain", action="store_false",
                        help="leave the pairs' own domain (LLMBar's subset) out of the features")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 pairs per source, 60 runs, 4 seeds, one judge")  # fmt: skip
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from .json")
    args = parser.parse_args()
    if args.render:
        report = json.loads((RESULTS / "routing_real.json").read_text())
        (RESULTS / "routing_real.md").write_text(markdown(report) + "\n")
        return 0
    if args.quick:
        args.limit = args.limit or 300
        args.runs, args.seeds, args.candidates = min(args.runs, 60), min(args.seeds, 4), 200
        args.sweeps = 1
        args.llmbar_judges = args.llmbar_judges[:1]
    data = args.data.expanduser().resolve()
    if not (data / "llmbar").is_dir() and not (data / "pandalm").is_dir():
        log(f"skipped: no real data at {data} (pass --data DIR, the shared data folder)")
        return 0

    import torch

    from curation.store import Store
    from curation.workspace import Workspace

    started_all = time.perf_counter()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="routing_real-"))
    (root / "inputs").mkdir(parents=True, exist_ok=True)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
               f"{torch.get_num_threads()}, load average at start {os.getloadavg()[0]:.2f}, "
               f"Python {platform.python_version()}")  # fmt: skip
    log(f"machine: {machine}")
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "datasets": {},
        "cases": [],
    }
    try:
        with Store.open(Workspace(root / "ws")) as store:
            builders = {"llmbar": build_llmbar, "pandalm": build_pandalm}
            for source in args.sources:
                if not (data / source).is_dir():
                    log(f"{source}: no data folder, skipped")
                    continue
                info = builders[source](store, data, root / "inputs", args)
                report["datasets"][source] = info
                for judge in info["judges"]:
                    log(f"== {source}, LM = {judge}")
                    report["cases"].append(run_case(store, source, judge, args))
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    report["paper"] = paper_reference(data)
    report["seconds"] = time.perf_counter() - started_all
    log("\n" + "\n".join(summary_table(report)))
    log(f"\ntotal {report['seconds']:.0f} s")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "routing_real.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "routing_real.md").write_text(markdown(report) + "\n")
        log(f"wrote {RESULTS / 'routing_real.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
