"""Import a file into a dataset: all or nothing, unless the user asks to skip bad rows.

The whole import runs inside one store transaction. Rows are converted and inserted in batches
(so a million-row file streams with bounded memory), every problem is collected with its file,
line and field, and if any problem remains at the end the transaction is rolled back: the store
is exactly what it was before.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError, ImportFailed, Problem
from curation.presets import FieldError, Preset, apply_mapping, detect_preset, get_preset
from curation.readers import RowError, open_source
from curation.records import ImportedItem
from curation.store import Store

MAX_LISTED_PROBLEMS = 50

# progress(rows_done, fraction_done or None when the total is unknown)
ProgressFn = Callable[[int, float | None], None]


@dataclass
class ImportReport:
    """What an import did (returned on success; with ``skip_bad`` it lists what it skipped)."""

    dataset: str
    preset: str
    file: str
    instances: int = 0
    annotations: int = 0
    skipped: list[Problem] = field(default_factory=list)
    skipped_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "preset": self.preset,
            "file": self.file,
            "instances": self.instances,
            "annotations": self.annotations,
            "skipped": self.skipped_count,
            "skipped_rows": [str(p) for p in self.skipped],
        }


@dataclass
class ImportOptions:
    dataset: str | None = None
    preset: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    skip_bad: bool = False
    format: str | None = None
    split: str | None = None
    batch_size: int = 2000
    description: str | None = None


def import_path(
    store: Store,
    path: str | os.PathLike,
    options: ImportOptions | None = None,
    *,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import one file, folder or hub id into a dataset (created if needed)."""
    opts = options or ImportOptions()
    source = open_source(path, opts.format, split=opts.split)
    first = _peek(source.records)
    if first is None:
        raise CuratorError(f"{source.name}: no records in the input")
    records = _chain(first, source.records)
    preset = _choose_preset(opts, first, source.name)
    dataset_name = opts.dataset or _default_dataset_name(source.name)
    report = ImportReport(dataset=dataset_name, preset=preset.name, file=source.name)
    problems: list[Problem] = []
    problem_count = 0
    label = Path(source.name).name if source.format != "hub" else source.name

    def note(problem: Problem) -> None:
        nonlocal problem_count
        problem_count += 1
        if len(problems) < MAX_LISTED_PROBLEMS:
            problems.append(problem)

    with store.bulk_load():
        dataset = _target_dataset(store, dataset_name, preset, source, opts.description)
        batch: list[tuple[int, ImportedItem]] = []
        batch_lines: dict[str, int] = {}  # uid -> line, for the rows of this batch only
        written = _LineRuns()
        rows_done = 0

        def flush() -> None:
            # Rows go into the open transaction even after a problem (which dooms the import
            # to a rollback): earlier batches are then in the store, where a repeated id is
            # found without holding every id of a million-row file in memory.
            earlier = store.instance_ids(dataset["id"], list(batch_lines))
            good = []
            for line, item in batch:
                uid = item.instance.uid
                if uid in earlier:
                    first_line = written.line_of(earlier[uid])
                    note(Problem(label, line, "id", _clash(uid, first_line, dataset_name)))
                else:
                    good.append((line, item))
            ids = store.insert_instances(dataset["id"], [item.instance for _, item in good])
            written.add(ids, [line for line, _ in good])
            labelled = [
                (iid, ann)
                for iid, (_, item) in zip(ids, good, strict=True)
                for ann in item.annotations
            ]
            report.annotations += store.add_annotations(labelled)
            report.instances += len(ids)
            batch.clear()
            batch_lines.clear()

        for line, record in records:
            rows_done += 1
            if isinstance(record, RowError):
                note(Problem(label, record.line, None, record.message))
                continue
            try:
                item = preset.convert(apply_mapping(record, opts.mapping))
                for ann in item.annotations:
                    ann.origin = "import"
                    ann.validate()
                uid = item.instance.uid = str(item.instance.uid or f"{label}:{line}")
            except FieldError as exc:
                note(Problem(label, line, exc.field, exc.message))
                continue
            except (ValueError, TypeError, KeyError) as exc:
                note(Problem(label, line, None, f"cannot convert the row: {exc}"))
                continue
            if uid in batch_lines:
                note(Problem(label, line, "id", _clash(uid, batch_lines[uid], dataset_name)))
                continue
            batch_lines[uid] = line
            batch.append((line, item))
            if len(batch) >= opts.batch_size:
                flush()
            if progress and rows_done % 500 == 0:
                progress(rows_done, _fraction(source, rows_done))
        if batch:
            flush()
        if progress:
            progress(rows_done, 1.0)

        problems.sort(key=lambda p: p.line or 0)
        if problem_count and not opts.skip_bad:
            raise ImportFailed(problems, truncated=problem_count - len(problems))
        if report.instances == 0:
            raise ImportFailed(
                problems or [Problem(label, None, None, "no valid rows to import")],
                truncated=max(0, problem_count - len(problems)),
            )
        report.skipped = problems
        report.skipped_count = problem_count
    return report


class _LineRuns:
    """The file line of each instance an import wrote, kept as runs of consecutive ids and lines.

    A repeated id found in a later batch must name the line where it first appeared; one entry
    per stretch of clean rows (a single one for a clean file), not one per row, keeps the memory
    of a million-row import flat.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lines: list[int] = []
        self._next: tuple[int, int] | None = None

    def add(self, ids: list[int], lines: list[int]) -> None:
        for instance_id, line in zip(ids, lines, strict=True):
            if (instance_id, line) != self._next:
                self.ids.append(instance_id)
                self.lines.append(line)
            self._next = (instance_id + 1, line + 1)

    def line_of(self, instance_id: int) -> int | None:
        """The line an instance came from, or None when this import did not write it."""
        run = bisect.bisect_right(self.ids, instance_id) - 1
        if run < 0:
            return None
        return self.lines[run] + instance_id - self.ids[run]


def _clash(uid: str, first_line: int | None, dataset: str) -> str:
    if first_line is None:
        return f"id {uid!r} is already in dataset {dataset!r}"
    return f"duplicate id {uid!r} (first on line {first_line})"


def _target_dataset(
    store: Store, name: str, preset: Preset, source: Any, description: str | None
) -> dict[str, Any]:
    """The dataset to import into, created if new; a clash of kinds names the file and preset."""
    existing = store.find_dataset(name)
    if existing and existing["kind"] != preset.kind:
        raise CuratorError(
            f"{source.name}: cannot import into dataset {name!r}: it holds {existing['kind']} "
            f"data, and the {preset.name} preset reads {preset.kind} data"
        )
    return store.create_dataset(
        name,
        preset.kind,
        source=source.name,
        description=description,
        metadata={"preset": preset.name, "format": source.format},
        exist_ok=True,
    )


def _fraction(source: Any, rows_done: int) -> float | None:
    if source.bytes_read and source.total_bytes:
        return min(1.0, source.bytes_read() / source.total_bytes)
    if source.total_rows:
        return min(1.0, rows_done / source.total_rows)
    return None


def _choose_preset(opts: ImportOptions, first: tuple[int, Any], name: str) -> Preset:
    if opts.preset:
        return get_preset(opts.preset)
    _, record = first
    if isinstance(record, RowError):
        raise ImportFailed([Problem(Path(name).name, record.line, None, record.message)])
    columns = set(apply_mapping(record, opts.mapping))
    preset = detect_preset(columns)
    if preset is None:
        raise CuratorError(
            f"{name}: cannot tell which schema this is (columns: {', '.join(sorted(columns))}); "
            "choose a --preset, or map columns with --map prompt=COLUMN --map response_a=COLUMN ..."
        )
    return preset


def _default_dataset_name(name: str) -> str:
    stem = Path(name.rstrip("/")).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq"):
        stem = stem.removesuffix(suffix)
    return stem.replace(":", "-") or "imported"


def _peek(iterator: Any) -> Any:
    return next(iterator, None)


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest
