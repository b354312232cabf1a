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


def test_report_lists_each_script_with_its_command_time_and_failure_output():
    outcomes = [
        run_all.Outcome("fast_bench", [sys.executable, "benchmarks/fast_bench.py"], 1.4, 0,
                        "1,000 rows/s (x3.0 against plain)\n", ""),
        run_all.Outcome("broken_bench", [sys.executable, "benchmarks/broken_bench.py", "--quick"],
                        0.2, 2, "", "Traceback\nValueError: no data\n"),
    ]  # fmt: skip
    text = run_all.report(outcomes, quick=True, started="2026-11-24 03:00 UTC", load_before=0.5)
    assert "| fast_bench | `python benchmarks/fast_bench.py` | 1 s | ok |" in text
    assert (
        "| broken_bench | `python benchmarks/broken_bench.py --quick` | 0 s | failed (2) |" in text
    )
    assert "1,000 rows/s (x3.0 against plain)" in text
    assert "ValueError: no data" in text
    assert "smoke sizes" in text
    assert "2026-11-24 03:00 UTC" in text


@pytest.mark.slow
def test_run_all_runs_a_real_benchmark_and_writes_its_figures(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--only", "import_bench",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    assert "| import_bench | `python benchmarks/import_bench.py --rows 5000` |" in text
    assert "| ok |" in text
    assert "rows/s" in text  # the script's own figures, not just the table
