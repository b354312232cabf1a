"""Run every benchmark script in this folder and collect their output in benchmarks/RESULTS.md.

Each script prints its own figures next to the baseline it is compared against in the same run;
this runner records them with the machine, the date, each script's exact command, its wall time,
the load beside it and its exit status. ``make bench`` runs it.

Each script's last run is kept in ``benchmarks/results/runs/<script>.json`` and RESULTS.md is
written from all of them, so ``--only`` refreshes some sections and keeps the others (each
section says when and on what it ran).

    .venv/bin/python benchmarks/run_all.py                    # every script, its own defaults
    .venv/bin/python benchmarks/run_all.py --quick            # smoke sizes where a script has them
    .venv/bin/python benchmarks/run_all.py --only import_bench explore_bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
RUNS = HERE / "results" / "runs"
# Smaller sizes for --quick, for the scripts whose defaults take many minutes on 2 cores.
# --no-save keeps smoke figures out of benchmarks/results, which the README quotes.
QUICK_ARGS: dict[str, list[str]] = {
    "decontam_bench": ["--quick", "--no-save"],
    "routing_bench": ["--quick", "--no-save"],
    "routing_real": ["--quick", "--no-save"],
    "tags_bench": ["--limit", "200", "--no-save"],
    "explore_bench": ["--pairs", "20000"],
    "import_bench": ["--rows", "5000"],
    "annotate_bench": ["--per-user", "20"],
    "features_scale": ["--pairs", "200", "--cpu-pairs", "50", "--no-save"],
    "training_bench": ["--max-length", "64", "--no-save"],
    "cluster_bench": ["--pairs", "128", "--shard-pairs", "32", "--runs", "2", "--no-save"],
}


@dataclass
class Outcome:
    """One script's run: what ran, where, when, how long, and what it printed."""

    script: str
    command: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    date: str = ""
    machine: str = ""
    load: str = ""
    quick: bool = False

    @property
    def shown_command(self) -> str:
        return " ".join(["python", *self.command[1:]])


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def scripts(only: list[str] | None = None) -> list[Path]:
    """Every benchmark script here (all ``*.py`` but this runner), or the ones named."""
    found = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if only:
        missing = set(only) - {p.stem for p in found}
        if missing:
            raise SystemExit(f"no such benchmark: {', '.join(sorted(missing))}")
        found = [p for p in found if p.stem in only]
    return found


def run(script: Path, quick: bool) -> Outcome:
    command = [sys.executable, str(script.relative_to(ROOT))]
    if quick:
        command += QUICK_ARGS.get(script.stem, [])
    print(f"== {' '.join(command[1:])}", flush=True)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    print(result.stdout, end="", flush=True)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return Outcome(
        script.stem,
        command,
        seconds,
        result.returncode,
        result.stdout,
        result.stderr[-4000:],
        date=date,
        machine=machine(),
        load=f"{load_before:.2f} / {os.getloadavg()[0]:.2f}",
        quick=quick,
    )


def save(outcome: Outcome, folder: Path = RUNS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{outcome.script}.json").write_text(json.dumps(asdict(outcome), indent=1) + "\n")


def load_all(names: list[str], folder: Path = RUNS) -> list[Outcome | str]:
    """The last recorded run of each named script, or its name where it never ran."""
    found: list[Outcome | str] = []
    for name in names:
        path = folder / f"{name}.json"
        found.append(Outcome(**json.loads(path.read_text())) if path.exists() else name)
    return found


def report(entries: list[Outcome | str]) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python benchmarks/run_all.py`): every script in `benchmarks/`, "
        "each printing its figures beside the alternative it is measured against in the same run. "
        "Each row says when, where and beside what load (1-minute load average before / after) "
        "it ran: on a shared 2-core machine the load moves absolute figures, so read the ratios.",
        "",
        "| script | command | date | load | wall time | status |",
        "|---|---|---|---|---:|---|",
    ]
    for e in entries:
        if isinstance(e, str):
            lines.append(f"| {e} | `python benchmarks/{e}.py` | not run yet | | | |")
            continue
        status = "ok" if e.returncode == 0 else f"failed ({e.returncode})"
        if e.quick:
            status += ", smoke sizes"
        lines.append(
            f"| {e.script} | `{e.shown_command}` | {e.date} | {e.load} | {e.seconds:.0f} s | "
            f"{status} |"
        )
    machines = sorted({e.machine for e in entries if not isinstance(e, str)})
    lines += ["", "Machine: " + "; ".join(machines or ["none yet"]), ""]
    for e in entries:
        if isinstance(e, str):
            continue
        lines += [f"## {e.script}", "", "```", e.stdout.rstrip() or "(no output)", "```", ""]
        if e.returncode:
            tail = "\n".join(e.stderr.rstrip().splitlines()[-20:])
            lines += [f"Failed with exit status {e.returncode}:", "", "```", tail, "```", ""]
    return "\n".join(lines)


# Sections written by other scripts (the GPU figures of benchmarks/gpu/run_h100.py) sit between
# <!-- NAME:start --> and <!-- NAME:end --> markers; a new report keeps them as they are.
KEPT = re.compile(r"<!-- (\w+):start -->.*?<!-- \1:end -->", re.DOTALL)


def with_kept_sections(new: str, old: str) -> str:
    """The new report, followed by the marked sections the old one held."""
    kept = [m.group(0) for m in KEPT.finditer(old)]
    return new.rstrip("\n") + "".join(f"\n\n{section}" for section in kept) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (see QUICK_ARGS)")
    parser.add_argument("--only", nargs="+", help="run only these scripts (names without .py)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the report goes")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where each script's run is kept")
    args = parser.parse_args()
    names = [p.stem for p in scripts()]
    failed = False
    for script in scripts(args.only):
        outcome = run(script, args.quick)
        failed |= outcome.returncode != 0
        # after each script, so that a long run cut short keeps what it measured
        save(outcome, args.runs)
        old = args.output.read_text() if args.output.is_file() else ""
        args.output.write_text(with_kept_sections(report(load_all(names, args.runs)), old))
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
