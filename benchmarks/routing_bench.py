"""How fast routing runs: sweep throughput, the feature pass at scale, and the simulated router's
search, each against the obvious alternative measured in the same run.

- sweep: runs/min of ``run_sweep`` (a Bradley-Terry probe per run on cached MiniLM embeddings, the
  run stored in the workspace) on the demo's --pairs preference pairs scored on demo-eval. The
  alternative re-encodes the texts for every run: one re-encode of the training pairs (prompt, A,
  B) is timed and added to the per-run time. The issue's target is >= 100 runs/min.
- features: pairs/s of the feature pass on --feature-pairs pairs (the demo's pairs repeated to
  that many), split into (a) the lexical measures that need no embedding (ROUGE-1, entity
  similarity, token counts for the length measures), (b) the MiniLM encoding (responses with token
  vectors, prompts) and (c) the BERTScore-like greedy match on those token vectors, plus the
  embedding tagger on the prompt vectors. The alternative encodes one text per forward pass (no
  batching), timed on --naive-pairs pairs against batched encoding of the same pairs (and batch
  16, to show where the configured batch size sits). Sizes below
  100,000 pairs are also extrapolated (linearly) to 100,000, and say so.
- search: ``route_simulated`` with --candidates candidate splits over --instances instances (the
  demo's binary feature matrix tiled to that many rows, 25% budget) and a LightGBM PPM fitted on
  synthetic sweep vectors from that matrix (its score is a made-up function of the vectors: the
  figure is speed, not quality). The alternative draws the same kind of candidates and predicts
  them one at a time, timed on --naive-candidates candidates.

LightGBM runs with n_jobs=1 (LAB-NOTES: its default threading stalls when a core is busy); torch
uses --threads (default: its own choice). The machine's cores and load average are printed with
the figures: on a shared 2-core machine the load changes them.

    .venv/bin/python benchmarks/routing_bench.py                       # defaults below
    .venv/bin/python benchmarks/routing_bench.py --feature-pairs 100000 --sections features
    .venv/bin/python benchmarks/routing_bench.py --quick               # smoke run

Writes benchmarks/results/routing_bench.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK = Path(__file__).resolve().parent / "_work" / "routing_bench"
RESULTS = Path(__file__).resolve().parent / "results"
DATASET, EVAL = "demo-prefs", "demo-eval"
SCALE_TARGET = 100_000
SECTIONS = ("sweep", "features", "search")


def log(message: str) -> None:
    print(message, flush=True)


def machine() -> dict[str, Any]:
    import torch

    return {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }


def open_demo(pairs: int, seed: int, rebuild: bool):
    """The benchmark workspace with the demo and its features (built once per pairs/seed)."""
    from curation.demo import build_demo
    from curation.store import Store
    from curation.workspace import Workspace
    from routing.features import compute_features

    work = WORK / f"demo-{pairs}-seed{seed}"
    stamp = work / "built.json"
    wanted = {"pairs": pairs, "seed": seed}
    if not rebuild and stamp.exists():
        return Store.open(Workspace(work / "ws"), create=False), json.loads(stamp.read_text())
    shutil.rmtree(work, ignore_errors=True)
    store = Store.open(Workspace(work / "ws").ensure())
    started = time.perf_counter()
    build_demo(store, seed=seed, n_pairs=pairs)
    demo_s = time.perf_counter() - started
    started = time.perf_counter()
    compute_features(store, DATASET)
    features_s = time.perf_counter() - started
    built = {**wanted, "demo_s": round(demo_s, 1), "compute_features_s": round(features_s, 1)}
    stamp.write_text(json.dumps(built))
    log(
        f"built the demo ({pairs} pairs) in {demo_s:.1f} s; compute_features on it "
        f"{features_s:.1f} s = {pairs / features_s:.0f} pairs/s (encoding, measures, tags, store)"
    )
    return store, built


# ---- sweep throughput -----------------------------------------------------------------------


def _time_sweep(store, config, runs: int) -> tuple[Any, float, float]:
    from routing.sweeps import SweepData, run_sweep

    started = time.perf_counter()
    data = SweepData.load(store, DATASET, EVAL, config)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    run_sweep(store, DATASET, EVAL, config, data=data)
    return data, load_s, time.perf_counter() - started


def bench_sweep(store, encoder, runs: int, reencode_pairs: int) -> dict[str, Any]:
    """The default scorer (TF-IDF probe, 5-fold crossfit: five probes a run) against the old one
    (MiniLM probe on cached vectors, one probe a run scored on demo-eval) in the same run, and the
    alternative of re-encoding the pairs every run."""
    from routing.features import PairTexts
    from routing.reward_probe import ProbeConfig
    from routing.sweeps import SweepConfig

    data, load_s, sweep_s = _time_sweep(store, SweepConfig(runs=runs), runs)
    old_config = SweepConfig(runs=runs, target="eval", sampler="mixed",
                             probe=ProbeConfig(representation="minilm", l2=1e-3))  # fmt: skip
    _, old_load_s, old_s = _time_sweep(store, old_config, runs)
    per_run = sweep_s / runs

    texts = PairTexts.load(store, DATASET)
    k = min(reencode_pairs or len(texts), len(texts))
    started = time.perf_counter()
    encoder.encode(texts.prompts[:k] + texts.response_a[:k] + texts.response_b[:k])
    encode_s = (time.perf_counter() - started) * len(texts) / k
    alt_per_run = old_s / runs + encode_s
    out = {
        "pairs": len(texts),
        "runs": runs,
        "scorer": "tfidf probe, crossfit (5 probes a run)",
        "load_s": round(load_s, 2),
        "sweep_s": round(sweep_s, 2),
        "s_per_run": round(per_run, 4),
        "runs_per_min": round(60 / per_run, 1),
        "old_scorer": "minilm probe on cached vectors, scored on demo-eval",
        "old_load_s": round(old_load_s, 2),
        "old_sweep_s": round(old_s, 2),
        "old_runs_per_min": round(60 * runs / old_s, 1),
        "new_over_old": round(old_s / sweep_s, 2),
        "reencode_s": round(encode_s, 2),
        "reencode_measured_pairs": k,
        "reencode_runs_per_min": round(60 / alt_per_run, 2),
        "ratio": round(alt_per_run / (old_s / runs), 1),
        "target_runs_per_min": 100,
        "l2": data.config.probe.l2,
    }
    log(
        f"sweep: {runs} runs on {out['pairs']} pairs in {sweep_s:.1f} s = {out['runs_per_min']} "
        f"runs/min with the default scorer (target >= 100; data load {load_s:.1f} s, once)\n"
        f"  old scorer, same run: {out['old_runs_per_min']} runs/min (new/old x"
        f"{out['new_over_old']}); re-encoding the pairs every run: one re-encode of "
        f"{3 * out['pairs']} texts {encode_s:.1f} s"
        + (f" (scaled from {k} pairs timed)" if k < len(texts) else "")
        + f" -> {out['reencode_runs_per_min']} runs/min"
    )
    return out


# ---- features at scale ----------------------------------------------------------------------


def _tiled(texts, n: int):
    from routing.features import PairTexts

    m = len(texts)

    def pick(values):
        return [values[i % m] for i in range(n)]

    return PairTexts(list(range(n)), pick(texts.prompts), pick(texts.response_a),
                     pick(texts.response_b))  # fmt: skip


def _encode_pass(encoder, texts, chunk: int) -> tuple[float, float, int]:
    """(b) encoding and (c) greedy matching as lexical_measures does them, chunk by chunk."""
    from curation.embeddings import greedy_match_f1

    encode_s = match_s = 0.0
    n = len(texts)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        a, b = texts.response_a[start:stop], texts.response_b[start:stop]
        t0 = time.perf_counter()
        encoded = encoder.encode(a + b, with_tokens=True)
        encoder.encode(texts.prompts[start:stop])
        t1 = time.perf_counter()
        size = stop - start
        for k in range(size):
            greedy_match_f1(encoded.tokens[k], encoded.tokens[size + k])
        encode_s += t1 - t0
        match_s += time.perf_counter() - t1
    return encode_s, match_s, n


def bench_features(
    store, encoder, n_pairs: int, naive_pairs: int, batch_sizes: list[int], chunk: int
) -> dict[str, Any]:
    import numpy as np

    from routing.features import (
        PairTexts,
        _rouge_scorer,
        entity_similarity,
        percentile_ranks,
    )
    from routing.taggers import EmbeddingTagger

    base = PairTexts.load(store, DATASET)
    texts = _tiled(base, n_pairs)
    tokenizer = encoder.tokenizer
    scorer = _rouge_scorer()

    def count_tokens(batch):
        return [len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]]

    # (a) measures that need no embedding
    rouge_s = entity_s = length_s = 0.0
    lengths = np.zeros((n_pairs, 3))
    for start in range(0, n_pairs, chunk):
        stop = min(start + chunk, n_pairs)
        a, b = texts.response_a[start:stop], texts.response_b[start:stop]
        t0 = time.perf_counter()
        lengths[start:stop, 0] = count_tokens(a)
        lengths[start:stop, 1] = count_tokens(b)
        lengths[start:stop, 2] = count_tokens(texts.prompts[start:stop])
        t1 = time.perf_counter()
        for x, y in zip(a, b, strict=True):
            entity_similarity(x, y)
        t2 = time.perf_counter()
        for x, y in zip(a, b, strict=True):
            scorer.score(y, x)
        t3 = time.perf_counter()
        length_s += t1 - t0
        entity_s += t2 - t1
        rouge_s += t3 - t2
    t0 = time.perf_counter()
    for column in lengths.T:
        percentile_ranks(column)
    length_s += time.perf_counter() - t0
    lexical_s = rouge_s + entity_s + length_s

    # (b) encoding and (c) BERTScore-like matching
    encode_s, match_s, _ = _encode_pass(encoder, texts, chunk)

    # embedding tagger on prompt vectors (a cheap pass over already-encoded prompts)
    tagger = EmbeddingTagger(encoder)
    prompt_vectors = encoder.encode(base.prompts).vectors
    vectors = prompt_vectors[np.arange(n_pairs) % len(base)]
    t0 = time.perf_counter()
    tagger.tag(texts.prompts, vectors=vectors)
    tag_s = time.perf_counter() - t0

    # alternative: one text per forward pass (and other batch sizes), against the configured
    # batch size, on the same sample
    sample = _tiled(base, min(naive_pairs, n_pairs))
    size = encoder.config.batch_size
    if len(sample) == n_pairs:  # the same pairs as (b): reuse its timing
        batched_s, m = encode_s, n_pairs
    else:
        batched_s, _, m = _encode_pass(encoder, sample, chunk)
    by_size = {size: batched_s}
    try:
        for bs in batch_sizes:
            if bs != size:
                encoder.config.batch_size = bs
                by_size[bs] = _encode_pass(encoder, sample, chunk)[0]
    finally:
        encoder.config.batch_size = size
    single_s = by_size.get(1, float("nan"))

    total_s = lexical_s + encode_s + match_s + tag_s

    def rate(seconds: float, n: int = n_pairs) -> float:
        return round(n / seconds, 1) if seconds > 0 else float("inf")

    out = {
        "pairs": n_pairs,
        "distinct_pairs": len(base),
        "lexical": {"seconds": round(lexical_s, 2), "pairs_per_s": rate(lexical_s),
                    "rouge_s": round(rouge_s, 2), "entity_s": round(entity_s, 2),
                    "lengths_s": round(length_s, 2)},
        "encoding": {"seconds": round(encode_s, 2), "pairs_per_s": rate(encode_s),
                     "texts_per_s": rate(encode_s, 3 * n_pairs),
                     "batch_size": size, "max_length": encoder.config.max_length},
        "bertscore_match": {"seconds": round(match_s, 2), "pairs_per_s": rate(match_s)},
        "tagger": {"seconds": round(tag_s, 2), "pairs_per_s": rate(tag_s)},
        "total": {"seconds": round(total_s, 2), "pairs_per_s": rate(total_s)},
        "naive": {"pairs": m, "batched_s": round(batched_s, 2), "batch1_s": round(single_s, 2),
                  "batched_pairs_per_s": rate(batched_s, m),
                  "batch1_pairs_per_s": rate(single_s, m),
                  "ratio": round(single_s / batched_s, 2) if batched_s > 0 else None,
                  "pairs_per_s_by_batch_size": {str(bs): rate(t, m)
                                                for bs, t in sorted(by_size.items())}},
    }  # fmt: skip
    if n_pairs < SCALE_TARGET:
        factor = SCALE_TARGET / n_pairs
        out["extrapolated_100k"] = {
            "measured_pairs": n_pairs,
            "lexical_s": round(lexical_s * factor, 0),
            "encoding_s": round(encode_s * factor, 0),
            "total_s": round(total_s * factor, 0),
            "note": "linear extrapolation from the measured size, not measured",
        }
    log(
        f"features on {n_pairs} pairs ({len(base)} distinct, repeated), chunks of {chunk}:\n"
        f"  (a) lexical, no embedding: {lexical_s:.1f} s = {out['lexical']['pairs_per_s']} pairs/s "
        f"(rouge {rouge_s:.1f} s, entities {entity_s:.1f} s, token counts {length_s:.1f} s)\n"
        f"  (b) MiniLM encoding: {encode_s:.1f} s = {out['encoding']['pairs_per_s']} pairs/s "
        f"({out['encoding']['texts_per_s']} texts/s, batch {size}, max {encoder.config.max_length}"
        f" tokens)\n"
        f"  (c) BERTScore-like match: {match_s:.1f} s = {out['bertscore_match']['pairs_per_s']} "
        f"pairs/s; embedding tagger {tag_s:.2f} s\n"
        f"  all together {total_s:.1f} s = {out['total']['pairs_per_s']} pairs/s\n"
        f"  alternative, one text per forward pass ({m} pairs): {single_s:.1f} s against "
        f"{batched_s:.1f} s batched (batch {size}) = x{out['naive']['ratio']} for batching; "
        f"pairs/s by batch size {out['naive']['pairs_per_s_by_batch_size']}"
    )
    if "extrapolated_100k" in out:
        e = out["extrapolated_100k"]
        log(
            f"  EXTRAPOLATED (not measured) to {SCALE_TARGET:,} pairs: lexical ~{e['lexical_s']:.0f}"
            f" s, encoding ~{e['encoding_s']:.0f} s, all ~{e['total_s']:.0f} s"
        )
    return out


# ---- simulated search at scale --------------------------------------------------------------


def bench_search(
    store, instances: int, candidates: int, naive: int, ppm_runs: int, budget: float, seed: int
) -> dict[str, Any]:
    import numpy as np

    from routing.features import FeatureMatrix
    from routing.ppm import PerformancePredictor, PPMConfig, make_regressor
    from routing.router import route_simulated
    from routing.splits import sample_grouped, sample_split, split_vector, split_vectors

    demo = FeatureMatrix.load(store, DATASET)
    reps = -(-instances // len(demo.instance_ids))
    binary = np.tile(demo.matrix, (reps, 1))[:instances]
    n, m = binary.shape
    density = float(binary.sum(1).mean())
    rng = np.random.default_rng(seed)

    # a PPM fitted on synthetic sweep vectors of this matrix
    masks = np.zeros((ppm_runs, n), dtype=bool)
    for k in range(ppm_runs):
        count = int(rng.integers(0, n + 1))
        masks[k] = sample_split(binary, count, rng, "grouped" if k % 2 == 0 else "uniform")
    x = split_vectors(binary, masks).astype(float)
    share = x / np.maximum(binary.sum(0), 1)
    w = rng.normal(0, 0.05, m)
    y = 0.6 + share @ w + 0.05 * share[:, 0] * share[:, 1 % m] + rng.normal(0, 0.005, ppm_runs)
    started = time.perf_counter()
    model = make_regressor(PPMConfig(kind="lightgbm")).fit(x, y)
    fit_s = time.perf_counter() - started
    names = [f"f{j}" for j in range(m)]
    predictor = PerformancePredictor("lightgbm", names, model)
    count = round(budget * n)

    started = time.perf_counter()
    route_simulated(predictor, binary, count, candidates, np.random.default_rng(seed + 1))
    batched_s = time.perf_counter() - started

    # the naive alternative: the same draws (half grouped, half uniform), one predict each
    rng = np.random.default_rng(seed + 2)
    sample_s = predict_s = 0.0
    best = -np.inf
    for k in range(naive):
        t0 = time.perf_counter()
        if k < naive // 2:
            mask = sample_grouped(binary, count, rng)
        else:
            mask = np.zeros(n, dtype=bool)
            mask[rng.choice(n, size=count, replace=False)] = True
        t1 = time.perf_counter()
        best = max(best, float(predictor.predict(split_vector(binary, mask))[0]))
        predict_s += time.perf_counter() - t1
        sample_s += t1 - t0
    naive_s = sample_s + predict_s
    batched_rate = candidates / batched_s
    naive_rate = naive / naive_s
    out = {
        "instances": n,
        "features": m,
        "features_per_instance": round(density, 2),
        "budget": budget,
        "count": count,
        "candidates": candidates,
        "ppm": {"kind": "lightgbm", "trees": PPMConfig().n_estimators, "fit_runs": ppm_runs,
                "fit_s": round(fit_s, 2), "targets": "synthetic"},
        "batched_s": round(batched_s, 2),
        "candidates_per_s": round(batched_rate, 1),
        "naive": {"candidates": naive, "seconds": round(naive_s, 2),
                  "sampling_s": round(sample_s, 2), "predict_s": round(predict_s, 2),
                  "candidates_per_s": round(naive_rate, 1),
                  "ms_sampling_per_candidate": round(1000 * sample_s / naive, 3),
                  "ms_predict_per_candidate": round(1000 * predict_s / naive, 3)},
        "ratio": round(batched_rate / naive_rate, 2),
    }  # fmt: skip
    log(
        f"simulated search: {candidates} candidates over {n} instances ({m} binary features, "
        f"{density:.1f} per instance; budget {budget} = {count}) in {batched_s:.1f} s = "
        f"{out['candidates_per_s']} candidates/s (PPM: LightGBM on {ppm_runs} synthetic runs, "
        f"fit {fit_s:.1f} s)\n"
        f"  alternative, one predict per candidate ({naive} candidates): {naive_s:.2f} s = "
        f"{out['naive']['candidates_per_s']} candidates/s (sampling "
        f"{out['naive']['ms_sampling_per_candidate']} ms + predict "
        f"{out['naive']['ms_predict_per_candidate']} ms per candidate); batched is x{out['ratio']}"
    )
    return out


# ---- report ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    mach = report["machine"]
    lines = [
        "# Routing speed",
        "",
        f"- date: {report['date']}",
        f"- machine: {mach['arch']}, {mach['cores']} cores, torch threads {mach['torch_threads']},"
        f" load average {mach['load_average_1min']} at start, Python {mach['python']}",
        f"- command: `{report['command']}`",
        "",
        "| figure | measured | alternative (same run) | ratio |",
        "|---|---|---|---:|",
    ]
    demo = report.get("demo") or {}
    if demo.get("compute_features_s"):
        lines.append(
            f"| compute_features end to end ({demo['pairs']} demo pairs: encoding, measures, tags, "
            f"store writes; timed when the workspace was built"
            f"{'' if report.get('built_now') else ', in an earlier run'}) | "
            f"{demo['pairs'] / demo['compute_features_s']:.1f} pairs/s "
            f"({demo['compute_features_s']} s) | - | - |"
        )
    s = report.get("sweep")
    if s:
        lines.append(
            f"| sweep throughput, default scorer ({s['scorer']}; {s['pairs']} demo pairs, "
            f"{s['runs']} runs, target >= 100 runs/min) | {s['runs_per_min']} runs/min | "
            f"old scorer ({s['old_scorer']}): {s['old_runs_per_min']} runs/min | "
            f"x{s['new_over_old']} |"
        )
        lines.append(
            f"| sweep throughput, old scorer | {s['old_runs_per_min']} runs/min | re-encode the "
            f"pairs every run: {s['reencode_runs_per_min']} runs/min ({s['reencode_s']} s per "
            "encode"
            + (
                f", scaled from {s['reencode_measured_pairs']} pairs timed"
                if s["reencode_measured_pairs"] < s["pairs"]
                else ""
            )
            + f") | x{s['ratio']} |"
        )
    f = report.get("features")
    if f:
        nv = f["naive"]
        lines += [
            f"| features (a) lexical, no embedding ({f['pairs']} pairs) | "
            f"{f['lexical']['pairs_per_s']} pairs/s ({f['lexical']['seconds']} s) | - | - |",
            f"| features (b) MiniLM encoding ({f['pairs']} pairs) | "
            f"{f['encoding']['pairs_per_s']} pairs/s ({f['encoding']['seconds']} s) | one text "
            f"per forward pass ({nv['pairs']} pairs): {nv['batch1_pairs_per_s']} pairs/s against "
            f"{nv['batched_pairs_per_s']} at batch {f['encoding']['batch_size']} (pairs/s by "
            f"batch size: {nv['pairs_per_s_by_batch_size']}) | x{nv['ratio']} |",
            f"| features (c) BERTScore-like match | {f['bertscore_match']['pairs_per_s']} pairs/s "
            f"({f['bertscore_match']['seconds']} s) | - | - |",
            f"| features, all parts + tagger ({f['pairs']} pairs) | {f['total']['pairs_per_s']} "
            f"pairs/s ({f['total']['seconds']} s) | - | - |",
        ]
        if "extrapolated_100k" in f:
            e = f["extrapolated_100k"]
            lines.append(
                f"| features at 100,000 pairs, EXTRAPOLATED from {e['measured_pairs']} (not "
                f"measured) | ~{e['total_s']:.0f} s (lexical ~{e['lexical_s']:.0f} s, encoding "
                f"~{e['encoding_s']:.0f} s) | - | - |"
            )
    r = report.get("search")
    if r:
        lines.append(
            f"| simulated search ({r['candidates']} candidates x {r['instances']} instances, "
            f"{r['features']} features) | {r['candidates_per_s']} candidates/s "
            f"({r['batched_s']} s) | one predict per candidate ({r['naive']['candidates']}): "
            f"{r['naive']['candidates_per_s']} candidates/s | x{r['ratio']} |"
        )
    lines += ["", "Details: routing_bench.json beside this file.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--pairs", type=int, default=2000, help="demo preference pairs")
    parser.add_argument("--runs", type=int, default=100, help="sweep runs timed")
    parser.add_argument(
        "--feature-pairs",
        type=int,
        default=2000,
        help="pairs in the feature pass (the demo's repeated; 100000 works)",
    )
    parser.add_argument(
        "--naive-pairs",
        type=int,
        default=256,
        help="pairs encoded one text at a time (and at --naive-batch-sizes) for the comparison; "
        "keep it at least --chunk-pairs, or the batched side pads to a few long texts",
    )
    parser.add_argument(
        "--naive-batch-sizes",
        type=int,
        nargs="+",
        default=[1, 16],
        help="batch sizes compared with the configured one on --naive-pairs",
    )
    parser.add_argument(
        "--reencode-pairs",
        type=int,
        default=0,
        help="pairs timed for the re-encode alternative (0: all; fewer: scaled)",
    )
    parser.add_argument("--chunk-pairs", type=int, default=256)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--naive-candidates", type=int, default=200)
    parser.add_argument("--ppm-runs", type=int, default=400, help="synthetic runs the PPM fits")
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the demo workspace")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    parser.add_argument("--json", action="store_true", help="print the JSON report too")
    args = parser.parse_args()  # fmt: skip
    if args.quick:
        args.pairs, args.runs, args.feature_pairs, args.naive_pairs = 300, 10, 60, 10
        args.reencode_pairs = 30
        args.instances, args.candidates, args.naive_candidates, args.ppm_runs = 2000, 1000, 50, 100

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    log(
        f"machine: {info['arch']}, {info['cores']} cores, torch threads {info['torch_threads']}, "
        f"load average {info['load_average_1min']}, Python {info['python']}"
    )
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": vars(args),
    }
    from curation.embeddings import Encoder

    started = time.perf_counter()
    store, built = open_demo(args.pairs, args.seed, args.rebuild)
    report["demo"] = built
    report["built_now"] = time.perf_counter() - started > 1.0 and "demo_s" in built
    try:
        encoder = Encoder()
        if "sweep" in args.sections:
            report["sweep"] = bench_sweep(store, encoder, args.runs, args.reencode_pairs)
        if "features" in args.sections:
            report["features"] = bench_features(
                store, encoder, args.feature_pairs, args.naive_pairs, args.naive_batch_sizes,
                args.chunk_pairs,
            )  # fmt: skip
        if "search" in args.sections:
            report["search"] = bench_search(
                store, args.instances, args.candidates, args.naive_candidates, args.ppm_runs,
                args.budget, args.seed,
            )  # fmt: skip
    finally:
        store.close()
    report["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=2))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "routing_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "routing_bench.md").write_text(markdown(report))
        log(f"wrote {RESULTS / 'routing_bench.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
