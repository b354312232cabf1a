"""`make bench`: every benchmark script runs and lands in one report with its command and status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import run_all  # noqa: E402


def test_every_script_in_benchmarks_is_run_and_only_known_ones_have_quick_sizes():
    found = {p.stem for p in run_all.scripts()}
    on_disk = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {"run_all"}
    assert found == on_disk
    assert set(run_all.QUICK_ARGS) <= found


def test_naming_a_missing_benchmark_is_refused():
    with pytest.raises(SystemExit, match="no_such_bench"):
        run_all.scripts(["no_such_bench"])


def test_report_lists_each_script_with_its_command_time_load_and_failure_output(tmp_path):
    fast = run_all.Outcome(
        "fast_bench",
        [sys.executable, "benchmarks/fast_bench.py"],
        1.4,
        0,
        "1,000 rows/s (x3.0 against plain)\n",
        "",
        date="2026-11-24 03:00 UTC",
        machine="x86_64, 2 cores",
        load="0.50 / 0.70",
    )
    broken = run_all.Outcome("broken_bench", [sys.executable, "benchmarks/broken_bench.py",
                             "--quick"], 0.2, 2, "", "Traceback\nValueError: no data\n",
                             date="2026-11-24 03:05 UTC", machine="x86_64, 2 cores", load="1 / 1",
                             quick=True)  # fmt: skip
    for outcome in (fast, broken):
        run_all.save(outcome, tmp_path)
    entries = run_all.load_all(["broken_bench", "fast_bench", "never_bench"], tmp_path)
    text = run_all.report(entries)
    assert (
        "| fast_bench | `python benchmarks/fast_bench.py` | 2026-11-24 03:00 UTC | 0.50 / 0.70 "
        "| 1 s | ok |" in text
    )
    assert "`python benchmarks/broken_bench.py --quick`" in text
    assert "| failed (2), smoke sizes |" in text
    assert "| never_bench | `python benchmarks/never_bench.py` | not run yet |" in text
    assert "1,000 rows/s (x3.0 against plain)" in text
    assert "ValueError: no data" in text


def test_a_later_run_of_one_script_replaces_only_its_own_entry(tmp_path):
    for name, out in (("a_bench", "old a"), ("b_bench", "old b"), ("a_bench", "new a")):
        run_all.save(run_all.Outcome(name, ["python", f"{name}.py"], 1, 0, out, ""), tmp_path)
    text = run_all.report(run_all.load_all(["a_bench", "b_bench"], tmp_path))
    assert "new a" in text and "old b" in text and "old a" not in text


@pytest.mark.slow
def test_run_all_runs_a_real_benchmark_and_writes_its_figures(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--only", "import_bench",
         "--output", str(out), "--runs", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    assert "| import_bench | `python benchmarks/import_bench.py --rows 5000` |" in text
    assert "| ok, smoke sizes |" in text
    assert "| explore_bench | `python benchmarks/explore_bench.py` | not run yet |" in text
    assert "rows/s" in text  # the script's own figures, not just the table


def test_a_new_report_keeps_the_sections_other_scripts_wrote():
    old = "# old\n\n<!-- gpu:start -->\n## GPU\nnot yet measured\n<!-- gpu:end -->\n"
    new = run_all.with_kept_sections("# Benchmarks\n\n| a | b |\n", old)
    assert new == (
        "# Benchmarks\n\n| a | b |\n\n<!-- gpu:start -->\n## GPU\nnot yet measured\n"
        "<!-- gpu:end -->\n"
    )
    assert run_all.with_kept_sections("# B\n", "") == "# B\n"
