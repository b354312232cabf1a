"""Routing features for many pairs end to end: the call `curator features` makes, timed whole.

``compute_features`` on the demo's ``demo-prefs`` built with --pairs pairs (distinct pairs, not a
repeated sample): reading the pairs from SQLite, the lexical measures (ROUGE-1, entities, token
counts), the MiniLM encoding of prompts and responses with token vectors, the BERTScore-like
match, the embedding tagger, the embedding cache and the write of every feature row. Stage
times come from the same progress callback the CLI's bar uses.

The alternative, in the same run, on --cpu-pairs pairs of another demo: on a GPU, the same call
with the encoder on the CPU (batch 16, the default); on a CPU, encoding one text per forward
pass (batch 1). With no GPU, --device auto is the CPU and the default size drops to 1,000 pairs;
figures for 100,000 pairs are then extrapolated and say so. The CPU time of each run is printed
beside its wall time: on a shared machine it is the steadier measure of the work.

    python benchmarks/features_scale.py                                  # GPU: 100,000 pairs
    python benchmarks/features_scale.py --pairs 100000 --device cuda --batch-size 256
    python benchmarks/features_scale.py --encoder /path/to/minilm        # another copy of MiniLM

Writes benchmarks/results/features_scale.{md,json} (``--no-save`` to skip).
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
DATASET = "demo-prefs"
SCALE_TARGET = 100_000


def log(message: str) -> None:
    print(message, flush=True)


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timed_features(pairs: int, device: str, batch_size: int, encoder: str | None, seed: int):
    """Build a fresh demo of ``pairs`` pairs and time compute_features on it, stage by stage."""
    from curation.demo import build_demo
    from curation.embeddings import EncoderConfig
    from curation.store import Store
    from curation.workspace import Workspace
    from routing.features import FeatureConfig, compute_features

    folder = Path(tempfile.mkdtemp(prefix="features-scale-"))
    try:
        store = Store.open(Workspace(folder / "ws").ensure())
        t0 = time.perf_counter()
        build_demo(store, seed=seed, n_pairs=pairs)
        demo_s = time.perf_counter() - t0
        log(f"  demo of {pairs:,} pairs built in {demo_s:.1f} s")
        # A progress call comes after a chunk of work: the time since the previous call belongs
        # to the stage it names (the first chunk's includes loading the encoder); what follows
        # the last call is writing the features to the store.
        stages: dict[str, float] = {}
        last = {"at": 0.0, "shown": 0.0}

        def progress(stage: str, done: int, total: int) -> None:
            now = time.perf_counter()
            stages[stage] = stages.get(stage, 0.0) + now - last["at"]
            last["at"] = now
            if now - last["shown"] > 30 or done == total:
                log(f"    {stage}: {done:,}/{total:,}")
                last["shown"] = now

        config = FeatureConfig(
            encoder=EncoderConfig(encoder=encoder, batch_size=batch_size, device=device)
        )
        t0, cpu0 = time.perf_counter(), time.process_time()
        last["at"] = t0
        summary = compute_features(store, DATASET, config, progress=progress)
        total_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        stages["store"] = t0 + total_s - last["at"]
        rows = store.conn.execute("SELECT count(*) FROM features").fetchone()[0]
        store.close()
        return {
            "pairs": summary.instances,
            "device": device,
            "batch_size": batch_size,
            "demo_build_s": round(demo_s, 1),
            "seconds": round(total_s, 1),
            # CPU time of this process (all its threads): the work done, whatever the load
            "cpu_seconds": round(cpu_s, 1),
            "pairs_per_s": round(summary.instances / total_s, 1),
            "feature_rows": rows,
            "stages_s": {k: round(v, 1) for k, v in stages.items()},
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def summary_line(run: dict[str, Any]) -> str:
    return (
        f"{run['seconds']} s = {run['pairs_per_s']} pairs/s ({run['cpu_seconds']} s of CPU "
        f"time); stages {run['stages_s']}"
    )


def markdown(report: dict[str, Any]) -> str:
    main = report["main"]
    runs = [("measured", main)]
    if "cpu" in report:
        runs.append(("alternative, same run", report["cpu"]))
    lines = [
        "# Routing features end to end",
        "",
        f"- date: {report['date']}",
        f"- machine: {json.dumps(report['machine'])}",
        f"- command: `{report['command']}`",
        "",
        "| run | pairs | encoder on | batch | seconds | CPU seconds | pairs/s | feature rows |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs:
        lines.append(
            f"| {name} | {r['pairs']:,} | {r['device']} | {r['batch_size']} | {r['seconds']} | "
            f"{r['cpu_seconds']} | {r['pairs_per_s']} | {r['feature_rows']:,} |"
        )
    lines.append("")
    if "ratio" in report:
        lines += [f"Ratio (pairs/s, measured / alternative): **{report['ratio']}x**", ""]
    lines += ["Stage times (s), measured run: " + json.dumps(main["stages_s"]), ""]
    if "extrapolated_100k_s" in report:
        lines.append(
            f"EXTRAPOLATED, not measured: {SCALE_TARGET:,} pairs would take about "
            f"{report['extrapolated_100k_s']:,.0f} s at the measured rate."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pairs", type=int, default=None, help="default 100000 on a GPU, else 1000"
    )
    parser.add_argument(
        "--cpu-pairs",
        type=int,
        default=None,
        help="pairs of the alternative (default 2000 on a GPU, else 200; 0: none)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default 256 on a GPU, else 16"
    )
    parser.add_argument("--encoder", default=None, help="encoder folder or HF id (default MiniLM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    on_gpu = device == "cuda"
    pairs = args.pairs or (SCALE_TARGET if on_gpu else 1000)
    if args.cpu_pairs is None:
        args.cpu_pairs = 2000 if on_gpu else 200
    batch = args.batch_size or (256 if on_gpu else 16)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(device),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    log(f"machine: {json.dumps(report['machine'])}")
    # the small alternative first: its figure is there even if the big run is cut short
    if args.cpu_pairs:
        # on a GPU the alternative is the CPU path; on a CPU, encoding one text per pass
        alt_batch = 16 if on_gpu else 1
        log(f"alternative: {args.cpu_pairs:,} pairs, encoder on the CPU (batch {alt_batch}):")
        report["cpu"] = timed_features(args.cpu_pairs, "cpu", alt_batch, args.encoder, args.seed)
        log(f"  -> {summary_line(report['cpu'])}")
    log(f"features on {pairs:,} pairs, encoder on {device} (batch {batch}):")
    report["main"] = timed_features(pairs, device, batch, args.encoder, args.seed)
    log(f"  -> {summary_line(report['main'])}")
    if args.cpu_pairs:
        report["ratio"] = round(report["main"]["pairs_per_s"] / report["cpu"]["pairs_per_s"], 2)
        log(f"ratio, measured / alternative: {report['ratio']}x")
    if report["main"]["pairs"] < SCALE_TARGET:
        report["extrapolated_100k_s"] = SCALE_TARGET / report["main"]["pairs_per_s"]
        log(
            f"EXTRAPOLATED (not measured): {SCALE_TARGET:,} pairs ~ "
            f"{report['extrapolated_100k_s']:,.0f} s at this rate"
        )
    report["machine"]["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "features_scale.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "features_scale.md").write_text(markdown(report))
        log(f"wrote {RESULTS / 'features_scale.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
