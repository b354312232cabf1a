"""What spreading a job's steps as Ray tasks costs and gains on this machine, against doing them in
one process, in the same run.

Two kinds of job step that a job on a Ray cluster hands to ``training.task_pool.RayPool``:

- feature measures: ``compute_features`` on the demo's ``demo-prefs`` in one process (no
  ``shard_map``), then with its measures in shards, one Ray task each (what a features job does on
  a cluster). The stored features of the sharded runs must equal the one-process ones within
  1e-5, so a fast wrong answer cannot pass as a gain.
- reward-model sweep runs: --runs runs of a tiny reward model (a 2-layer Llama, the one the tests
  use) scored one after another with ``score_reward_run`` (a sweep's local path), then as Ray tasks
  through ``RewardModelSweepData.score_on`` (its path on a cluster). Each run trains the same
  seeded model on the same split wherever it runs, so its eval score must match too.

The one-process passes run first, before Ray is started, as a job on one host runs; like a fresh
job they include loading the encoder and importing TRL. The Ray side then runs twice: "cold" is the
first map, whose workers import the libraries and load the models; "warm" is the same map again on
the same workers. The local Ray cluster this script starts has one CPU per core, and each task
reserves one CPU (so runs with one compute thread, where the one process uses all the cores). On
one machine this measures the overhead of tasks, not a cluster's scale-out: a real cluster gains
per node added. The default sizes keep the whole script near 2 minutes on 2 cores (the features
run at about 17 pairs/s there); the ratios, not the sizes, are the point.

    python benchmarks/cluster_bench.py                       # about 2 minutes on 2 cores
    python benchmarks/cluster_bench.py --pairs 2000 --shard-pairs 256 --runs 8

Writes benchmarks/results/cluster_bench.{md,json} (``--no-save`` to skip).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the tiny Llama the tests train
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray 2.60 turns token authentication on for a cluster that a bare ray.init() starts and keeps the
# token for every later `ray start` on this machine (tests/conftest.py): this one is throwaway.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402

from curation.demo import build_demo  # noqa: E402
from curation.evalsets import EvalSet  # noqa: E402
from curation.pairs import SplitLabels  # noqa: E402
from curation.store import Store  # noqa: E402
from curation.workspace import Workspace  # noqa: E402
from routing.features import FeatureConfig, compute_features, shard_bounds  # noqa: E402
from training.reward import RewardTrainConfig  # noqa: E402
from training.routing_jobs import RewardModelSweepData, RewardRunShared  # noqa: E402
from training.task_pool import RayPool, TaskResources  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATASET = "demo-prefs"
EVAL = "demo-eval"
TOLERANCE = 1e-5  # vectors encoded with another thread count differ in float32's last bits
# The tiny model's whole vocabulary (as tests/test_ray_cluster.py): speed, not skill, is measured.
WORDS = ["<pad>", "<unk>", "<s>", "</s>", "user", "assistant", ":", "the", "a", "is", "A", "B"]
TASK = TaskResources(num_cpus=1)

Rows = dict[tuple[int, str], tuple[float, str, str]]


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


def feature_rows(store: Store) -> Rows:
    """(instance, feature) -> (value, extractor, label) of every stored feature of the pairs."""
    found = store.conn.execute(
        "SELECT f.instance_id, f.name, f.value, f.extractor, f.label FROM features f "
        "JOIN instances i ON i.id = f.instance_id JOIN datasets d ON d.id = i.dataset_id "
        "WHERE d.name = ?",
        (DATASET,),
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in found}


def check_same_features(expected: Rows, got: Rows, what: str) -> float:
    """Fail unless ``got`` holds the same features as ``expected`` (values within TOLERANCE,
    extractors and labels equal); returns the largest value difference."""
    if set(got) != set(expected):
        raise AssertionError(f"{what}: {len(set(got) ^ set(expected))} features differ in kind")
    worst = 0.0
    for key, (value, extractor, label) in expected.items():
        other = got[key]
        worst = max(worst, abs(other[0] - value))
        if (other[1], other[2]) != (extractor, label) or abs(other[0] - value) > TOLERANCE:
            raise AssertionError(f"{what}: {key} is {other}, one process stored {expected[key]}")
    return worst


def timed(part: str, how: str, count: int, unit: str, per: float, call) -> dict[str, Any]:
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    rate = count / seconds * per
    # to the real stdout: a trainer's log lines may be sent elsewhere meanwhile
    print(f"  {part}, {how}: {seconds:.1f} s, {rate:.2f} {unit}", file=sys.__stdout__, flush=True)
    return {"how": how, "seconds": round(seconds, 2), "rate": round(rate, 2), "result": result}


class FeatureMeasures:
    """compute_features in one process, then with its measures sharded over Ray tasks."""

    name = "feature measures"

    def __init__(self, store: Store, args) -> None:
        self.store, self.pairs = store, args.pairs
        self.config = FeatureConfig(chunk_pairs=args.chunk_pairs, shard_pairs=args.shard_pairs)
        bounds = shard_bounds(args.pairs, self.config.shard_pairs, self.config.chunk_pairs)
        self.shards = len(bounds)
        self.rows: list[dict[str, Any]] = []
        self.expected: Rows = {}
        log(f"feature measures on {args.pairs:,} pairs (on Ray: {self.shards} shards of up to "
            f"{bounds[0][1]} pairs):")  # fmt: skip

    def here(self) -> None:
        run = partial(compute_features, self.store, DATASET, self.config)
        self.rows.append(timed(self.name, "one process", self.pairs, "pairs/s", 1, run))
        self.expected = feature_rows(self.store)

    def on_ray(self, pool: RayPool) -> None:
        def shard_map(fn, shared, items):
            return pool.map(fn, shared, items, resources=TASK)

        for how in ("Ray tasks, cold", "Ray tasks, warm"):
            with self.store.write():  # nothing of the run before is left to read
                self.store.conn.execute("DELETE FROM features")
            run = partial(compute_features, self.store, DATASET, self.config, shard_map=shard_map)
            self.rows.append(timed(self.name, how, self.pairs, "pairs/s", 1, run))
            worst = check_same_features(self.expected, feature_rows(self.store), how)
            self.rows[-1]["max_difference"] = worst
            log(f"    the same {len(self.expected):,} features as one process (largest "
                f"difference {worst:.1e})")  # fmt: skip

    def report(self) -> dict[str, Any]:
        rows = [{k: v for k, v in row.items() if k != "result"} for row in self.rows]
        return {"items": self.pairs, "unit": "pairs/s", "shards": self.shards, "rows": rows}


class RewardRuns:
    """Reward-model sweep runs one after another here, then as Ray tasks."""

    name = "reward-model runs"

    def __init__(self, store: Store, folder: Path, args) -> None:
        from tiny_models import save_tiny_llama

        base = save_tiny_llama(folder / "tiny-llama", WORDS)
        config = RewardTrainConfig.from_spec({
            "dataset": DATASET, "base_model": str(base), "max_steps": args.max_steps,
            "batch_size": 4, "max_length": args.max_length, "precision": "fp32",
        })  # fmt: skip
        labels = SplitLabels.load(store, DATASET)
        by_id = dict(store.iter_instances(DATASET))
        instances = [by_id[int(i)] for i in labels.instance_ids]
        shared = RewardRunShared(config, EvalSet.load(store, EVAL), str(store.workspace.root))
        self.data = RewardModelSweepData(None, labels, instances, shared)
        # each run's split: about half the pairs with their human label, the rest the LM judge's
        rng = np.random.default_rng(args.seed)
        self.masks = [rng.random(len(instances)) < 0.5 for _ in range(args.runs)]
        self.rows: list[dict[str, Any]] = []
        log(f"reward-model sweep runs: {args.runs} runs of a tiny Llama ({args.max_steps} steps, "
            f"batch 4, max length {args.max_length}, ~{len(self.data.pairs(self.masks[0])):,} "
            f"pairs each, scored on {EVAL}):")  # fmt: skip

    def here(self) -> None:
        # the trainer prints its log lines to stdout here (on Ray they stay in the workers' logs)
        def run() -> list[Any]:
            return [self.data.score(m)[0] for m in self.masks]

        with contextlib.redirect_stdout(sys.stderr):
            self.rows.append(timed(self.name, "one process", len(self.masks), "runs/min", 60, run))

    def on_ray(self, pool: RayPool) -> None:
        scores = self.data.score_on(pool, TASK, None)  # a sweep job's path on a cluster
        for how in ("Ray tasks, cold", "Ray tasks, warm"):
            self.rows.append(timed(self.name, how, len(self.masks), "runs/min", 60,
                                   lambda: [r[0] for r in scores(self.masks)]))  # fmt: skip
        # the same split trains the same seeded model wherever it runs
        here = [s.overall for s in self.rows[0]["result"]]
        for row in self.rows[1:]:
            there = [s.overall for s in row["result"]]
            row["max_difference"] = float(np.max(np.abs(np.subtract(there, here))))
            if row["max_difference"] > 0.01:
                raise AssertionError(f"{row['how']}: eval scores {there}, one process {here}")
        log(f"    the same eval scores as one process: {[round(x, 4) for x in here]}")

    def report(self) -> dict[str, Any]:
        rows = [{k: v for k, v in row.items() if k != "result"} for row in self.rows]
        return {"items": len(self.masks), "unit": "runs/min", "shards": len(self.masks),
                "rows": rows}  # fmt: skip


def table(parts: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| step | how | items | tasks | seconds | rate | vs one process |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, part in parts.items():
        base = part["rows"][0]["rate"]
        for row in part["rows"]:
            tasks = "-" if row["how"] == "one process" else part["shards"]
            lines.append(
                f"| {name} | {row['how']} | {part['items']:,} | {tasks} | {row['seconds']} | "
                f"{row['rate']} {part['unit']} | x{row['rate'] / base:.2f} |"
            )
    return lines


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Job steps as Ray tasks against one process",
        "",
        f"- date: {report['date']}",
        f"- machine: {m['arch']}, {m['cores']} cores, torch threads {m['torch_threads']}, load "
        f"average {m['load_average_1min']} at start, {m['load_average_1min_end']} at the end, "
        f"Python {m['python']}",
        f"- command: `{report['command']}`",
        f"- Ray: a local cluster of {report['ray_cpus']} CPUs started by the script; each task "
        "reserves 1 CPU",
        "",
        *table(report["parts"]),
        "",
        "One process ran first, before Ray was started. Cold: the first map of the Ray session "
        "(its workers import the libraries and load the models); warm: the same map again on the "
        "same workers. Both Ray feature runs stored the same features as one process (values "
        f"within {TOLERANCE}, labels equal); each reward run scored the same on the eval set "
        "(within 0.01) wherever it ran.",
        "",
        f"On one {m['cores']}-core machine this is the overhead of tasks (object store, worker "
        "processes, one compute thread per task against all cores in one process), not a "
        "cluster's scale-out: on a real cluster the gain is per node added.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=600, help="demo pairs to compute features of")
    parser.add_argument("--shard-pairs", type=int, default=160, help="pairs per feature shard")
    parser.add_argument("--chunk-pairs", type=int, default=32,
                        help="pairs encoded together (a shard holds whole chunks)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=4, help="reward-model sweep runs")
    parser.add_argument("--max-steps", type=int, default=8, help="training steps per run")
    parser.add_argument("--max-length", type=int, default=64, help="tokens per response")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
    }
    m = report["machine"]
    log(f"machine: {m['arch']}, {m['cores']} cores, load {m['load_average_1min']}; on one "
        "machine this measures the overhead of tasks, not a cluster's scale-out")  # fmt: skip
    import ray

    with tempfile.TemporaryDirectory(prefix="cluster-bench-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        store = Store.open(Workspace(folder / "ws").ensure())
        build_demo(store, seed=args.seed, n_pairs=args.pairs)
        log(f"demo of {args.pairs:,} pairs built in {time.perf_counter() - started:.1f} s")
        features, runs = FeatureMeasures(store, args), RewardRuns(store, folder, args)
        # one process first, with no Ray on the machine, as a job on one host runs
        log("in one process:")
        features.here()
        runs.here()
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False,
                 log_to_driver=False)  # fmt: skip
        try:
            pool = RayPool()
            report["ray_cpus"] = pool.workers
            log(f"as Ray tasks, on a local Ray cluster of {pool.workers} CPUs (started in "
                f"{time.perf_counter() - started:.1f} s, not counted below):")  # fmt: skip
            features.on_ray(pool)
            runs.on_ray(pool)
        finally:
            ray.shutdown()
            store.close()
    report["parts"] = {part.name: part.report() for part in (features, runs)}
    m["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    text = markdown(report)
    log("")
    log(text)
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "cluster_bench.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "cluster_bench.md").write_text(text)
        log(f"wrote {RESULTS / 'cluster_bench.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
