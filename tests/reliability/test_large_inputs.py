"""Large inputs: 10 MB fields survive import and export whole, and a million-row file is imported
(and a large dataset exported) streamed, with each `curator` process's peak memory measured."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from curation.exporter import export_dataset
from curation.importer import ImportOptions, import_path

ROOT = Path(__file__).resolve().parents[2]
CURATOR = [sys.executable, "-m", "app.cli"]
MILLION = 1_000_000
MB = 1 << 20
measures_memory = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from Linux's /proc"
)


def _big_text(size: int, seed: str) -> str:
    """``size`` characters of text with words (for the search index) and non-ASCII letters."""
    unit = f"{seed} zeppelin café naïve 東京 "
    return (unit * (size // len(unit) + 1))[:size]


def _row_file(path: Path, rows: int) -> Path:
    """A JSONL file of ``rows`` small pairwise rows, written fast (no json.dumps per row)."""
    with path.open("w") as handle:
        handle.writelines(
            f'{{"id": "r{i}", "prompt": "question {i}", "response_a": "answer a {i}", '
            f'"response_b": "answer b {i}"}}\n'
            for i in range(rows)
        )
    return path


# Runs `curator` exactly as ``python -m app.cli`` does, then reports the process's own peak
# memory. ru_maxrss cannot be used: Linux carries the parent's high-water mark across fork and
# exec, so every child of this (large) test process would report at least the parent's size.
_MEASURED = """
import runpy, sys
sys.argv = ["curator", *sys.argv[1:]]
try:
    runpy.run_module("app.cli", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    print("PEAK_KB", peak.split()[1], file=sys.stderr)
"""


def _run_measured(args: list[str], log: Path) -> tuple[int, float, float]:
    """Run `curator ARGS`; return its exit status, peak resident memory (MB) and CPU seconds."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MEASURED, *args], cwd=ROOT, stdout=out, stderr=out
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    peak_kb = int(text.rsplit("PEAK_KB ", 1)[1].split()[0])
    return proc.returncode, peak_kb / 1024, usage.ru_utime + usage.ru_stime


def _rows_as_dicts_mb(path: Path, rows: int, sample: int = 1000) -> float:
    """What holding every row as a parsed dict would take, from a sample's deep size."""
    with path.open() as handle:
        parsed = [json.loads(next(handle)) for _ in range(sample)]
    per_row = sum(
        sys.getsizeof(r) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in r.items())
        for r in parsed
    )
    return per_row / sample * rows / MB


def test_ten_megabyte_fields_import_and_export_whole(store, tmp_path):
    """A 10 MB prompt and a 10 MB response are stored, searchable, exported byte for byte, and
    the export imports again."""
    rows = [
        {"id": "long-prompt", "prompt": _big_text(10 * MB, "prompt"), "response_a": "a",
         "response_b": "b", "label": "A>B"},
        {"id": "long-response", "prompt": "p", "response_a": _big_text(10 * MB, "response"),
         "response_b": "b", "label": "B>A"},
    ]  # fmt: skip
    source = tmp_path / "big.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    report = import_path(store, source, ImportOptions(dataset="big"))
    assert (report.instances, report.annotations) == (2, 2)
    hits = store.conn.execute(
        "SELECT count(*) FROM instances_fts WHERE instances_fts MATCH 'zeppelin'"
    ).fetchone()[0]
    assert hits == 2

    out = tmp_path / "big-export.jsonl"
    export_dataset(store, "big", "jsonl", out, shape="native")
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    fields = ("prompt", "response_a", "response_b")
    assert [(r["uid"], *(r[f] for f in fields)) for r in exported] == [
        (r["id"], *(r[f] for f in fields)) for r in rows
    ]
    assert import_path(store, out, ImportOptions(dataset="big-again")).instances == 2
    again = {inst.uid: inst.response_a for _, inst in store.iter_instances("big-again")}
    assert again == {r["id"]: r["response_a"] for r in rows}


def _curator(args: list[str], log: Path) -> tuple[float, float]:
    """`curator ARGS`, which must succeed; its peak memory (MB) and CPU seconds."""
    status, peak_mb, cpu_s = _run_measured(args, log)
    assert status == 0, log.read_text()
    return peak_mb, cpu_s


def _check_streamed(step: str, rows: int, measured: tuple, baseline_mb: float, held_mb: float):
    """Print what a run took, and fail unless its memory stayed flat as the rows grew."""
    peak_mb, cpu_s = measured
    print(
        f"\n{step} of {rows:,} rows: peak RSS {peak_mb:.0f} MB (1,000 rows: {baseline_mb:.0f} MB; "
        f"the rows held as dicts: {held_mb:.0f} MB); CPU {cpu_s:.1f} s, "
        f"{rows / cpu_s:,.0f} rows per CPU second"
    )
    # Streaming: many times the rows adds a small part of what holding them all would take.
    assert peak_mb - baseline_mb < held_mb / 10
    assert peak_mb < 600


@pytest.mark.slow
@measures_memory
def test_a_million_row_file_imports_streamed_in_bounded_memory(tmp_path):
    """`curator import` of 1,000,000 rows: every row arrives, and the process's peak memory is
    about that of importing 1,000 rows, a small part of what the rows would take held at once."""
    small = _row_file(tmp_path / "thousand.jsonl", 1000)
    baseline_mb, _ = _curator(
        ["import", str(small), "--workspace", str(tmp_path / "ws-small")], tmp_path / "small.log"
    )
    source = _row_file(tmp_path / "million.jsonl", MILLION)
    measured = _curator(
        ["import", str(source), "--workspace", str(tmp_path / "ws"), "--dataset", "m"],
        tmp_path / "import.log",
    )
    with sqlite3.connect(tmp_path / "ws" / "curator.db") as conn:
        count, uids, last = conn.execute(
            "SELECT count(*), count(DISTINCT uid), max(id) FROM instances"
        ).fetchone()
        prompt = conn.execute("SELECT prompt FROM instances WHERE id = ?", (last,)).fetchone()[0]
    assert (count, uids, prompt) == (MILLION, MILLION, f"question {MILLION - 1}")
    _check_streamed("import", MILLION, measured, baseline_mb, _rows_as_dicts_mb(source, MILLION))


EXPORT_ROWS = 100_000  # a million would double the cost of the test above; 100x shows the same


@pytest.mark.slow
@measures_memory
def test_an_export_streams_in_bounded_memory(store, tmp_path):
    """`curator export` of 100,000 rows takes about the memory of exporting 1,000."""
    for name, rows in (("small", 1000), ("large", EXPORT_ROWS)):
        import_path(store, _row_file(tmp_path / f"{name}.jsonl", rows), ImportOptions(dataset=name))
    ws = ["--workspace", str(store.path.parent), "--format", "jsonl", "--shape", "native"]
    out = {name: tmp_path / f"{name}-export.jsonl" for name in ("small", "large")}
    baseline_mb, _ = _curator(["export", "small", *ws, "--out", str(out["small"])],
                              tmp_path / "small.log")  # fmt: skip
    measured = _curator(
        ["export", "large", *ws, "--out", str(out["large"])], tmp_path / "large.log"
    )
    with out["large"].open() as handle:
        first = json.loads(next(handle))
        exported = 1 + sum(1 for _ in handle)
    assert (exported, first["uid"], first["prompt"]) == (EXPORT_ROWS, "r0", "question 0")
    held_mb = _rows_as_dicts_mb(out["large"], EXPORT_ROWS)
    _check_streamed("export", EXPORT_ROWS, measured, baseline_mb, held_mb)
