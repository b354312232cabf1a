"""How right the embedding tagger's tags are on real labelled prompts, and how often it abstains.

- safety_concern on XSTest (``xstest/xstest_prompts.csv``: 250 safe, 200 unsafe prompts, many of the
  safe ones built to look unsafe) and the WildJailbreak eval set (``wildjailbreak-eval/eval.tsv``:
  2,000 adversarial harmful, 210 adversarial benign). The tagger's "unsafe" call is
  ``moderate`` or ``high``; ``safe`` and ``low`` ("small risk, or risky only if misread") are the
  "safe" call; ``unknown`` abstains. Coverage is the share not unknown; precision and recall are of
  the unsafe call (recall over every unsafe prompt, abstentions counted as misses).
- subject_of_expertise on the sets whose source fixes the subject: GSM8K and MATH-500 questions
  and MT-bench's ``math`` questions -> Mathematics; HumanEval prompts and MT-bench's ``coding``
  questions -> Computer_sciences; HarmBench behaviours of the semantic categories
  chemical_biological, cybercrime_intrusion and illegal -> Security_and_crime. MT-bench's other
  categories (writing, roleplay, reasoning, extraction, stem, humanities) and the other HarmBench
  categories span several of the taxonomy's subjects, so they are left out; no set in
  ../shared/data labels the other 14 subjects. Accuracy is over the covered prompts.
- every dimension's coverage, and its most common value, on PandaLM's instructions (the routing
  data the issue measured), and the safety tag of a few obviously benign requests.
- a sweep of safety_concern's floors (best score, lead over the runner-up) on both sets, which is
  where the taxonomy's floor comes from.

The tagger runs on the prompts' MiniLM vectors, encoded once per set. The safety_concern examples
in the taxonomy were written for this project to cover XSTest's kinds of prompt (homonyms,
figurative language, safe targets, historical events, public figures, ...); none is taken from a
set measured here.

    .venv/bin/python benchmarks/tags_bench.py
    .venv/bin/python benchmarks/tags_bench.py --data /path/to/shared/data --limit 300

Writes benchmarks/results/tags_bench.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.embeddings import Encoder, EncoderConfig  # noqa: E402
from routing.taggers import UNKNOWN, EmbeddingTagger, TagFloor, load_taxonomy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
UNSAFE_CALL = ("moderate", "high")
SAFE_CALL = ("safe", "low")
TARGET_PRECISION = 0.8
BENIGN = (
    "Design a medium-level sudoku puzzle.",
    "Write a Jira ticket for adding dark mode to the settings page.",
    "Suggest a name for my new bakery.",
    "Summarise the plot of a heist film in three sentences.",
    "How do I remove a stuck screw from a bike frame?",
)
MT_BENCH_SUBJECTS = {"math": "Mathematics", "coding": "Computer_sciences"}
HARMBENCH_SUBJECTS = {
    "chemical_biological": "Security_and_crime",
    "cybercrime_intrusion": "Security_and_crime",
    "illegal": "Security_and_crime",
}
SWEEP_SIMILARITY = (0.0, 0.25, 0.3, 0.35, 0.4)
SWEEP_MARGIN = (0.0, 0.05, 0.08, 0.1, 0.12)


def log(message: str) -> None:
    print(message, flush=True)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _sample(items: list, limit: int | None, seed: int = 0) -> list:
    if limit is None or len(items) <= limit:
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[i] for i in sorted(keep)]


def safety_sets(data: Path, limit: int | None) -> dict[str, tuple[list[str], list[bool]]]:
    """name -> (prompts, is unsafe)."""
    with (data / "xstest" / "xstest_prompts.csv").open(encoding="utf-8") as f:
        xstest = [(r["prompt"], r["label"] == "unsafe") for r in csv.DictReader(f)]
    with (data / "wildjailbreak-eval" / "eval.tsv").open(encoding="utf-8") as f:
        wild = [
            (r["adversarial"], r["data_type"] == "adversarial_harmful")
            for r in csv.DictReader(f, delimiter="\t")
        ]
    out = {}
    for name, rows in (("xstest", xstest), ("wildjailbreak", _sample(wild, limit))):
        out[name] = ([p for p, _ in rows], [u for _, u in rows])
    return out


def subject_sets(data: Path, limit: int | None) -> dict[str, tuple[list[str], str]]:
    """name -> (prompts, the subject their source fixes)."""
    mt = _jsonl(data / "sft_samples" / "mt_bench" / "question.jsonl")
    with (data / "harmbench" / "harmbench_behaviors_text_all.csv").open(encoding="utf-8") as f:
        harm = [r for r in csv.DictReader(f) if r["SemanticCategory"] in HARMBENCH_SUBJECTS]
    out = {
        "gsm8k": ([r["question"] for r in _jsonl(data / "gsm8k" / "test.jsonl")], "Mathematics"),
        "math500": (
            [r["question"] for r in _jsonl(data / "math500" / "test.jsonl")],
            "Mathematics",
        ),
        "humaneval": (
            [r["prompt"] for r in _jsonl(data / "humaneval" / "HumanEval.jsonl.gz")],
            "Computer_sciences",
        ),
        "harmbench (chem/bio, cyber, illegal)": (
            [r["Behavior"] for r in harm],
            "Security_and_crime",
        ),
    }
    for category, subject in MT_BENCH_SUBJECTS.items():
        prompts = [r["turns"][0] for r in mt if r["category"] == category]
        out[f"mt_bench {category}"] = (prompts, subject)
    return {name: (_sample(prompts, limit), subject) for name, (prompts, subject) in out.items()}


def pandalm_prompts(data: Path) -> list[str]:
    rows = json.loads((data / "pandalm" / "testset-v1.json").read_text(encoding="utf-8"))
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(r["instruction"] + (f"\n{r['input']}" if r.get("input") else ""))
    return list(seen)


def safety_scores(labels: list[str], unsafe: list[bool]) -> dict[str, Any]:
    labels_a, unsafe_a = np.asarray(labels), np.asarray(unsafe)
    called = np.isin(labels_a, UNSAFE_CALL)
    covered = labels_a != UNKNOWN
    hits = int((called & unsafe_a).sum())
    return {
        "prompts": len(labels),
        "unsafe_prompts": int(unsafe_a.sum()),
        "coverage": round(float(covered.mean()), 3),
        "unsafe_calls": int(called.sum()),
        "precision": round(hits / called.sum(), 3) if called.any() else None,
        "recall": round(hits / unsafe_a.sum(), 3) if unsafe_a.any() else None,
        "safe_prompts_called_high": int(((labels_a == "high") & ~unsafe_a).sum()),
        "labels": dict(Counter(labels)),
    }


def with_floor(tagger: EmbeddingTagger, dimension: str, floor: TagFloor) -> EmbeddingTagger:
    tagger.taxonomy = [
        replace(d, floor=floor) if d.name == dimension else d for d in tagger.taxonomy
    ]
    return tagger


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = args.data.expanduser().resolve()
    if not data.is_dir():
        raise SystemExit(f"no shared data at {data} (pass --data)")
    encoder = Encoder(EncoderConfig(max_length=args.max_length))
    taxonomy = load_taxonomy(args.taxonomy)
    tagger = EmbeddingTagger(encoder, taxonomy, top_k=args.top_k)
    floors = {d.name: d.floor for d in taxonomy}
    vectors: dict[str, np.ndarray] = {}
    started = time.perf_counter()

    def encode(name: str, prompts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        vectors[name] = encoder.encode(prompts).vectors
        log(f"  encoded {name}: {len(prompts):,} prompts in {time.perf_counter() - t0:.0f} s")
        return vectors[name]

    safety: dict[str, Any] = {}
    safety_data = safety_sets(data, args.limit)
    for name, (prompts, unsafe) in safety_data.items():
        labels, _ = tagger.tag(prompts, vectors=encode(name, prompts))["safety_concern"]
        safety[name] = safety_scores(labels, unsafe)

    sweep = []
    for similarity in SWEEP_SIMILARITY:
        for margin in SWEEP_MARGIN:
            floor = replace(floors["safety_concern"], similarity=similarity, margin=margin)
            with_floor(tagger, "safety_concern", floor)
            row: dict[str, Any] = {"similarity": similarity, "margin": margin}
            for name, (prompts, unsafe) in safety_data.items():
                labels, _ = tagger.tag(prompts, vectors=vectors[name])["safety_concern"]
                scores = safety_scores(labels, unsafe)
                row[name] = {k: scores[k] for k in ("coverage", "precision", "recall")}
            sweep.append(row)
    with_floor(tagger, "safety_concern", floors["safety_concern"])

    subject: dict[str, Any] = {}
    for name, (prompts, truth) in subject_sets(data, args.limit).items():
        labels, _ = tagger.tag(prompts, vectors=encode(name, prompts))["subject_of_expertise"]
        covered = [label for label in labels if label != UNKNOWN]
        subject[name] = {
            "prompts": len(labels),
            "subject": truth,
            "coverage": round(len(covered) / len(labels), 3),
            "accuracy": round(sum(lb == truth for lb in covered) / len(covered), 3)
            if covered
            else None,
            "top_labels": dict(Counter(labels).most_common(3)),
        }

    prompts = pandalm_prompts(data)
    tags = tagger.tag(prompts, vectors=encode("pandalm", prompts))
    dimensions = {}
    for d in taxonomy:
        labels, scores = tags[d.name]
        counts = Counter(labels)
        top, top_n = next(((v, n) for v, n in counts.most_common() if v != UNKNOWN), (None, 0))
        dimensions[d.name] = {
            "floor": {"similarity": d.floor.similarity, "margin": d.floor.margin},
            "routing": d.routing,
            "pandalm_coverage": round(1 - counts[UNKNOWN] / len(labels), 3),
            "pandalm_top_value": top,
            "pandalm_top_share": round(top_n / len(labels), 3),
            "pandalm_median_score": round(float(np.median(scores)), 3),
        }
    benign_labels, _ = tagger.tag(list(BENIGN))["safety_concern"]
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "arch": platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "encoder": encoder.model_id,
        "top_k": args.top_k or {d.name: d.top_k for d in taxonomy},
        "limit": args.limit,
        "seconds": round(time.perf_counter() - started, 1),
        "target_precision": TARGET_PRECISION,
        "safety_concern": safety,
        "safety_floor_sweep": sweep,
        "subject_of_expertise": subject,
        "pandalm_prompts": len(prompts),
        "dimensions": dimensions,
        "benign": dict(zip(BENIGN, benign_labels, strict=True)),
    }


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    floor = report["dimensions"]["safety_concern"]["floor"]
    lines = [
        "# Tag accuracy and abstention (embedding tagger)",
        "",
        f"{report['date']}, {report['machine']['arch']} with {report['machine']['cores']} cores, "
        f"encoder {report['encoder']}, top_k {report['top_k']}, {report['seconds']} s"
        + (f", --limit {report['limit']}" if report["limit"] else "")
        + ". Command: `.venv/bin/python benchmarks/tags_bench.py`.",
        "",
        f"## safety_concern (floor: score >= {floor['similarity']}, lead >= {floor['margin']})",
        "",
        "Unsafe call = moderate or high; low counts as the safe call; unknown abstains. "
        f"Target: precision >= {report['target_precision']} on XSTest.",
        "",
        "| set | prompts | unsafe | coverage | unsafe calls | precision | recall "
        "| safe prompts tagged high |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["safety_concern"].items():
        lines.append(
            f"| {name} | {s['prompts']} | {s['unsafe_prompts']} | {_fmt(s['coverage'])} "
            f"| {s['unsafe_calls']} | {_fmt(s['precision'])} | {_fmt(s['recall'])} "
            f"| {s['safe_prompts_called_high']} |"
        )
    lines += ["", "Obviously benign requests:", ""]
    lines += [f"- {prompt!r}: {label}" for prompt, label in report["benign"].items()]
    names = list(report["safety_concern"])
    lines += [
        "",
        "### Floor sweep (coverage / precision / recall)",
        "",
        "| score >= | lead >= | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in report["safety_floor_sweep"]:
        cells = [
            f"{_fmt(row[n]['coverage'])} / {_fmt(row[n]['precision'])} / {_fmt(row[n]['recall'])}"
            for n in names
        ]
        lines.append(f"| {row['similarity']} | {row['margin']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## subject_of_expertise (sets whose source fixes the subject)",
        "",
        "| set | subject | prompts | coverage | accuracy (covered) | most common tags |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in report["subject_of_expertise"].items():
        top = ", ".join(f"{k} {v}" for k, v in s["top_labels"].items())
        lines.append(
            f"| {name} | {s['subject']} | {s['prompts']} | {_fmt(s['coverage'])} "
            f"| {_fmt(s['accuracy'])} | {top} |"
        )
    lines += [
        "",
        f"## Every dimension on PandaLM's {report['pandalm_prompts']} distinct instructions",
        "",
        "| dimension | floor (score, lead) | routing | coverage | most common value (share) "
        "| median score |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in report["dimensions"].items():
        lines.append(
            f"| {name} | {d['floor']['similarity']}, {d['floor']['margin']} "
            f"| {'used' if d['routing'] else 'left out'} | {_fmt(d['pandalm_coverage'])} "
            f"| {d['pandalm_top_value']} ({_fmt(d['pandalm_top_share'])}) "
            f"| {_fmt(d['pandalm_median_score'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="the shared data folder (default: ../shared/data beside the repo)",
    )
    parser.add_argument("--taxonomy", type=Path, default=None, help="a taxonomy YAML to measure")
    parser.add_argument(
        "--top-k", type=int, default=None, help="nearest examples per value (default: taxonomy's)"
    )
    parser.add_argument("--max-length", type=int, default=256, help="tokens kept per prompt")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many prompts per set (seeded)"
    )
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    report = run(args)
    text = markdown(report)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "tags_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "tags_bench.md").write_text(text)
        log(f"wrote {RESULTS / 'tags_bench.md'} and .json")


if __name__ == "__main__":
    main()
