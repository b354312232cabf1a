"""How fast decontamination runs: a million generated prompts against every real eval set in
../shared/data (GSM8K, MATH-500, HumanEval, IFEval, HarmBench, WildJailbreak eval, XSTest), with
the Tulu 3 rule (8-grams on prompts, > 50% of an eval prompt's tokens, flag above 2%).

- fast: ``curation.decontam.decontaminate`` (Arrow tokens, hashed n-grams in numpy, one pandas
  hash lookup, batches on a thread pool), index build included.
- baseline, in the same run: plain Python, the way the rule reads: a dict from each eval 8-gram
  (a tuple of words, ``re.findall(r"\\w+")`` on lower-cased text) to where it occurs, then for
  each training prompt its set of 8-gram tuples looked up one by one and the covered eval tokens
  counted in sets.
- correctness: prompts copied verbatim from the eval sets are planted among the generated ones
  (inside a longer prompt); both methods must find the same (prompt, eval instance) pairs, every
  planted copy long enough for the rule, and no generated prompt.

Generated prompts are random sentences over a Zipf-weighted vocabulary (100 common English words
and made-up words): their common phrases do meet eval n-grams now and then, as real data does.

    .venv/bin/python benchmarks/decontam_bench.py                   # 1,000,000 prompts
    .venv/bin/python benchmarks/decontam_bench.py --prompts 100000  # quicker
    .venv/bin/python benchmarks/decontam_bench.py --quick           # smoke run

Writes benchmarks/results/decontam_bench.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
EVAL_FILES = {
    "gsm8k": "gsm8k/test.jsonl",
    "math500": "math500/test.jsonl",
    "humaneval": "humaneval/HumanEval.jsonl.gz",
    "ifeval": "ifeval/input_data.jsonl",
    "harmbench": "harmbench/harmbench_behaviors_text_all.csv",
    "wildjailbreak-eval": "wildjailbreak-eval/eval.tsv",
    "xstest": "xstest/xstest_prompts.csv",
}
COMMON = (
    "the of and to a in is you that it he was for on are as with his they i at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her would "
    "make like him into time has look two more write go see number no way could people my than "
    "first water been call who oil its now find long down day did get come made may part please "
    "explain give list why best"
).split()


def log(message: str) -> None:
    print(message, flush=True)


def vocabulary(size: int, rng: np.random.Generator) -> np.ndarray:
    """Common words first, then made-up ones, for Zipf-weighted sampling."""
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "dor", "an", "is", "qua", "bre"]
    made = set()
    while len(made) < size - len(COMMON):
        made.add("".join(rng.choice(syllables, size=rng.integers(2, 5))))
    return np.array([*COMMON, *sorted(made)])


def generate(n: int, seed: int) -> list[str]:
    """``n`` random sentences of 8-60 words."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary(20_000, rng)
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(8, 61, size=n)
    words = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    out, start = [], 0
    for length in lengths.tolist():
        out.append(" ".join(vocab[words[start : start + length]].tolist()).capitalize() + "?")
        start += length
    return out


def plain_python(
    texts: list[str], evals: list[Any], n: int = 8, threshold: float = 0.5
) -> tuple[set[tuple[int, str, int]], float]:
    """The rule in plain Python (the baseline): (row, eval set, eval instance) and seconds."""
    started = time.perf_counter()
    token = re.compile(r"\w+")
    index: dict[tuple[str, ...], list[tuple[str, int, int]]] = {}
    lengths: dict[tuple[str, int], int] = {}
    for s in evals:
        for e, text in enumerate(s.texts):
            words = token.findall(text.lower())
            lengths[(s.name, e)] = len(words)
            for p in range(len(words) - n + 1):
                index.setdefault(tuple(words[p : p + n]), []).append((s.name, e, p))
    found = set()
    for row, text in enumerate(texts):
        words = token.findall(text.lower())
        grams = {tuple(words[p : p + n]) for p in range(len(words) - n + 1)}
        covered: dict[tuple[str, int], set[int]] = {}
        for gram in grams:
            for name, e, p in index.get(gram, ()):
                covered.setdefault((name, e), set()).update(range(p, p + n))
        for key, tokens in covered.items():
            if len(tokens) / lengths[key] > threshold:
                found.add((row, key[0], key[1]))
    return found, time.perf_counter() - started


def markdown(report: dict[str, Any]) -> str:
    m, f, b = report["machine"], report["fast"], report["baseline"]
    evals = ", ".join(f"{k} {v}" for k, v in report["eval_sets"].items())
    lines = [
        "# Decontamination speed",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['arch']}, {m['cores']} cores, load average {m['load_average_1min']} at "
        f"start, {m['load_average_1min_end']} at the end, Python {m['python']}",
        f"- command: `{report['command']}`",
        f"- eval sets ({report['eval_prompts']:,} prompts): {evals}",
        f"- training prompts: {report['prompts']:,} generated ({report['generate_s']:.1f} s to "
        f"generate), {report['planted']:,} of them with a verbatim eval prompt planted inside",
        "",
        "| method | prompts | seconds | prompts/s | ratio |",
        "|---|---:|---:|---:|---:|",
        f"| `curation.decontam` (Arrow + numpy n-gram hashes, {f['workers']} threads; index "
        f"build included) | {f['prompts']:,} | {f['seconds']:.1f} | {f['prompts_per_s']:,.0f} | "
        f"x{report['speedup']:.1f} |",
        f"| plain Python set of 8-gram tuples (same run) | {b['prompts']:,} | {b['seconds']:.1f} | "
        f"{b['prompts_per_s']:,.0f} | x1.0 |",
        "",
        f"Correctness: the two methods found {'the same' if report['agree'] else 'DIFFERENT'} "
        f"overlapping pairs on the prompts both ran ({report['pairs_compared']:,} pairs); "
        f"planted copies found {report['planted_found']:,} of {report['planted_checkable']:,} "
        f"long enough for the rule; generated prompts flagged: {report['false_positives']:,}.",
        f"Peak memory (max RSS of the process): {report['max_rss_mb']:,.0f} MB.",
        "",
        "Details: decontam_bench.json beside this file.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=1_000_000)
    parser.add_argument("--planted", type=int, default=1_000, help="eval copies planted")
    parser.add_argument(
        "--baseline-prompts", type=int, default=0, help="prompts the baseline runs (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20,000 prompts")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.planted = 20_000, 100
    if not DATA.is_dir():
        log(f"the real eval sets are not at {DATA}: nothing to measure")
        return 2

    from curation.decontam import DecontamConfig, decontaminate, load_prompt_set, tokenize

    machine = {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    log(
        f"machine: {machine['arch']}, {machine['cores']} cores, load {machine['load_average_1min']}"
    )
    evals = [load_prompt_set(None, str(DATA / path)) for path in EVAL_FILES.values()]
    log(f"eval sets: {', '.join(f'{s.name} {len(s)}' for s in evals)}")

    started = time.perf_counter()
    texts = generate(args.prompts - args.planted, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    planted: dict[int, tuple[str, int]] = {}
    for _ in range(args.planted):
        s = evals[int(rng.integers(len(evals)))]
        e = int(rng.integers(len(s)))
        row = int(rng.integers(len(texts) + 1))
        texts.insert(row, f"Answer this carefully. {s.texts[e]} Thanks!")
        planted = {(r + 1 if r >= row else r): v for r, v in planted.items()}
        planted[row] = (s.name, e)
    generate_s = time.perf_counter() - started
    log(f"generated {len(texts):,} prompts in {generate_s:.1f} s")

    sources = ["generated"] * len(texts)
    started = time.perf_counter()
    report = decontaminate(texts, sources, evals, DecontamConfig(action="report"))
    fast_s = time.perf_counter() - started
    index_of = {s.name: {i: k for k, i in enumerate(s.ids)} for s in evals}
    fast_pairs = {(m.row, m.eval_set, index_of[m.eval_set][m.eval_id]) for m in report.matches}
    log(f"fast: {fast_s:.1f} s, {len(texts) / fast_s:,.0f} prompts/s, {len(fast_pairs):,} pairs")

    limit = args.baseline_prompts or len(texts)
    base_pairs, base_s = plain_python(texts[:limit], evals)
    log(f"baseline: {base_s:.1f} s on {limit:,} prompts, {limit / base_s:,.0f} prompts/s")
    fast_on_limit = {p for p in fast_pairs if p[0] < limit}
    agree = fast_on_limit == base_pairs

    checkable = {
        row
        for row, (name, e) in planted.items()
        if len(tokenize([next(s for s in evals if s.name == name).texts[e]]).hashes) >= 8
    }
    found = {row for row, name, e in fast_pairs if planted.get(row, (None, None))[0] == name}
    false_positives = len({row for row, _, _ in fast_pairs} - set(planted))
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine, "load_average_1min_end": round(os.getloadavg()[0], 2)},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": vars(args),
        "eval_sets": {s.name: len(s) for s in evals},
        "eval_prompts": sum(len(s) for s in evals),
        "prompts": len(texts),
        "generate_s": round(generate_s, 2),
        "planted": len(planted),
        "fast": {
            "prompts": len(texts),
            "seconds": round(fast_s, 2),
            "prompts_per_s": round(len(texts) / fast_s),
            "workers": min(4, os.cpu_count() or 1),
            "pairs": len(fast_pairs),
        },
        "baseline": {
            "prompts": limit,
            "seconds": round(base_s, 2),
            "prompts_per_s": round(limit / base_s),
            "pairs": len(base_pairs),
        },
        "speedup": round((len(texts) / fast_s) / (limit / base_s), 2),
        "agree": agree,
        "pairs_compared": len(base_pairs),
        "planted_checkable": len(checkable),
        "planted_found": len(found & checkable),
        "false_positives": false_positives,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    log(markdown(result))
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "decontam_bench.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "decontam_bench.md").write_text(markdown(result))
        log(f"wrote {RESULTS / 'decontam_bench.md'} and .json")
    return 0 if agree and result["planted_found"] == len(checkable) else 1


if __name__ == "__main__":
    raise SystemExit(main())
