"""Run every benchmark script in this folder and collect their output in benchmarks/RESULTS.md.

Each script prints its own figures next to the baseline it is compared against in the same run;
this runner only records them with the machine, the date, each script's exact command, its wall
time and exit status. ``make bench`` runs it.

    .venv/bin/python benchmarks/run_all.py                    # every script, its own defaults
    .venv/bin/python benchmarks/run_all.py --quick            # smoke sizes where a script has them
    .venv/bin/python benchmarks/run_all.py --only import_bench explore_bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
# Smaller sizes for --quick, for the scripts whose defaults take many minutes on 2 cores.
# --no-save keeps smoke figures out of benchmarks/results, which the README quotes.
QUICK_ARGS: dict[str, list[str]] = {
    "decontam_bench": ["--quick", "--no-save"],
    "routing_bench": ["--quick", "--no-save"],
    "routing_real": ["--quick", "--no-save"],
    "explore_bench": ["--pairs", "20000"],
    "import_bench": ["--rows", "5000"],
    "annotate_bench": ["--per-user", "20"],
    "features_scale": ["--pairs", "300", "--cpu-pairs", "100", "--no-save"],
    "training_bench": ["--max-length", "64", "--no-save"],
}


@dataclass
class Outcome:
    script: str
    command: list[str]
    seconds: float
    returncode: int
    stdout: str
    stderr: str


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
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    outcome = Outcome(
        script.stem,
        command,
        time.perf_counter() - started,
        result.returncode,
        result.stdout,
        result.stderr,
    )
    print(result.stdout, end="", flush=True)
    if result.returncode:
        print(result.stderr, file=sys.stderr)
    return outcome


def report(outcomes: list[Outcome], quick: bool, started: str, load_before: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/run_all.py`): every script in `benchmarks/`, each "
        "printing its figures beside the alternative it is measured against in the same run.",
        "",
        f"- date: {started}",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        f"- load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}",
        f"- command: `python benchmarks/run_all.py{' --quick' if quick else ''}`"
        + (" (smoke sizes: figures are not the README's)" if quick else ""),
        "",
        "| script | command | wall time | status |",
        "|---|---|---:|---|",
    ]
    for o in outcomes:
        status = "ok" if o.returncode == 0 else f"failed ({o.returncode})"
        command = " ".join(["python", *o.command[1:]])
        lines.append(f"| {o.script} | `{command}` | {o.seconds:.0f} s | {status} |")
    lines.append("")
    for o in outcomes:
        lines += [f"## {o.script}", "", "```", o.stdout.rstrip() or "(no output)", "```", ""]
        if o.returncode:
            tail = "\n".join(o.stderr.rstrip().splitlines()[-20:])
            lines += [f"Failed with exit status {o.returncode}:", "", "```", tail, "```", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes (see QUICK_ARGS)")
    parser.add_argument("--only", nargs="+", help="run only these scripts (names without .py)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the report goes")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()[0]
    outcomes: list[Outcome] = []
    for script in scripts(args.only):
        outcomes.append(run(script, args.quick))
        # after each script, so that a long run cut short keeps what it measured
        args.output.write_text(report(outcomes, args.quick, started, load_before))
    print(f"wrote {args.output}")
    return 1 if any(o.returncode for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
