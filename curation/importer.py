"""Import a file into a dataset: all or nothing, unless the user asks to skip bad rows.

The whole import runs inside one store transaction. Rows are converted and inserted in batches
(so a million-row file streams with bounded memory), every problem is collected with its file,
line and field, and if any problem remains at the end the transaction is rolled back: the store
is exactly what it was before.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.datasets import clear_dataset_contents
from curation.errors import CuratorError, ImportFailed, Problem
from curation.preset_fields import FieldError, Preset, apply_mapping
from curation.presets import detect_preset, get_preset
from curation.readers import RowError, open_source
from curation.records import ImportedItem
from curation.store import Store
from curation.value_maps import ScaleWatch, ValueMaps, apply_value_maps, check_label_targets

MAX_LISTED_PROBLEMS = 50

# progress(rows_done, fraction_done or None when the total is unknown)
ProgressFn = Callable[[int, float | None], None]


IMPORT_MODES = ("new", "append", "replace")

# Column names that hold labels: such a column must be read as labels, or the user must say
# that it is only metadata; it is never kept aside (or dropped) in silence.
_LABEL_COLUMN = re.compile(
    r"^(annotations?|labels?|preferences?|winner|verdict|choice)$"
    r"|^annotator_?\d+$|_(label|preference|winner|verdict)$",
    re.IGNORECASE,
)


@dataclass
class ImportReport:
    """What an import did (returned on success; with ``skip_bad`` it lists what it skipped).

    ``kept_in_metadata`` and ``ignored`` are the file's columns the preset did not read as
    fields: the first kept on each instance's metadata, the second dropped.
    """

    dataset: str
    preset: str
    file: str
    mode: str = "new"
    instances: int = 0
    annotations: int = 0
    replaced: int = 0
    empty_responses: int = 0
    kept_in_metadata: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    skipped_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "preset": self.preset,
            "file": self.file,
            "mode": self.mode,
            "instances": self.instances,
            "labels": self.annotations,
            "replaced": self.replaced,
            "empty_responses": self.empty_responses,
            "kept_in_metadata": self.kept_in_metadata,
            "ignored": self.ignored,
            "skipped": [
                {"line": p.line, "field": p.field, "message": p.message} for p in self.skipped
            ],
            "skipped_count": self.skipped_count,
        }


@dataclass
class ImportOptions:
    """How to read a file. ``mode`` says what to do with an existing dataset of that name:
    ``new`` refuses it, ``append`` adds new ids to it, ``replace`` swaps its contents (in the
    import's one transaction, so a failed replace leaves the old contents)."""

    dataset: str | None = None
    preset: str | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    values: ValueMaps = field(default_factory=dict)
    skip_bad: bool = False
    format: str | None = None
    split: str | None = None
    batch_size: int = 2000
    description: str | None = None
    mode: str = "new"
    require_nonempty: bool = False
    metadata_only: tuple[str, ...] = ()  # label-like columns the user says are only metadata


class _ReadTracker(dict):
    """A row that remembers which of its fields a preset read (to report the ones it did not)."""

    def __init__(self, data: dict[str, Any], read: set[str]):
        super().__init__(data)
        self._read = read

    def __getitem__(self, key: str) -> Any:
        self._read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._read.add(key)
        return super().get(key, default)


@dataclass
class _Columns:
    """The file's columns, which the preset read, and which it kept as metadata."""

    seen: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)

    def add(self, record: dict[str, Any], read: set[str], metadata: dict[str, Any]) -> None:
        self.seen.update(record)
        self.read |= read
        self.kept.update(metadata)

    def unread(self, mapping: dict[str, str]) -> tuple[list[str], list[str]]:
        """(kept in metadata, ignored): columns never read as a preset field."""
        used = {mapping.get(name, name) for name in self.read} | set(mapping.values())
        kept = sorted((self.kept & self.seen) - used)
        return kept, sorted(self.seen - used - set(kept))


def import_path(
    store: Store,
    path: str | os.PathLike,
    options: ImportOptions | None = None,
    *,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Import one file, folder or hub id into a dataset (created if needed)."""
    opts = options or ImportOptions()
    if opts.mode not in IMPORT_MODES:
        raise CuratorError(f"import mode {opts.mode!r} is not one of {', '.join(IMPORT_MODES)}")
    source = open_source(path, opts.format, split=opts.split)
    first = _peek(source.records)
    if first is None:
        raise CuratorError(f"{source.name}: no records in the input")
    records = _chain(first, source.records)
    preset = _choose_preset(opts, first, source.name)
    check_label_targets(opts.values, preset.label_fields)
    dataset_name = opts.dataset or _default_dataset_name(source.name)
    report = ImportReport(
        dataset=dataset_name, preset=preset.name, file=source.name, mode=opts.mode
    )
    problems: list[Problem] = []
    problem_count = 0
    label = Path(source.name).name if source.format != "hub" else source.name
    columns = _Columns()
    scales = ScaleWatch(
        fields=tuple(f for f in preset.label_fields if f not in opts.values),
        columns=dict(opts.mapping),
    )

    def note(problem: Problem) -> None:
        nonlocal problem_count
        problem_count += 1
        if len(problems) < MAX_LISTED_PROBLEMS:
            problems.append(problem)

    with store.bulk_load():
        dataset = _target_dataset(store, dataset_name, preset, source, opts)
        if opts.mode == "replace":
            report.replaced = clear_dataset_contents(store, dataset["id"]).get("instances", 0)
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
                row = apply_value_maps(apply_mapping(record, opts.mapping), opts.values)
                scales.see(row)
                read: set[str] = set()
                item = preset.convert(_ReadTracker(row, read))
                # Columns count from rows that converted: a failed row was not read through.
                columns.add(record, read, item.instance.metadata)
                for ann in item.annotations:
                    ann.origin = "import"
                    ann.validate()
                uid = item.instance.uid = str(item.instance.uid or f"{label}:{line}")
                empty = _empty_response(item)
                if empty and opts.require_nonempty:
                    raise FieldError(empty, "is empty (--require-nonempty)")
                report.empty_responses += bool(empty)
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

        # Whole-file refusals come first: they explain the row problems they cause.
        refusals = scales.ambiguous() + _unread_labels(columns, opts, preset)
        if refusals:
            raise ImportFailed([Problem(label, None, None, message) for message in refusals])
        problems.sort(key=lambda p: p.line or 0)
        if problem_count and not opts.skip_bad:
            raise ImportFailed(problems, truncated=problem_count - len(problems))
        if report.instances == 0:
            raise ImportFailed(
                problems or [Problem(label, None, None, "no valid rows to import")],
                truncated=max(0, problem_count - len(problems)),
            )
        report.kept_in_metadata, report.ignored = columns.unread(opts.mapping)
        report.skipped = problems
        report.skipped_count = problem_count
    return report


def _empty_response(item: ImportedItem) -> str | None:
    """The first of a pair's responses that is empty or only whitespace, by its field name."""
    for name in ("response_a", "response_b"):
        value = getattr(item.instance, name)
        if value is not None and not value.strip():
            return name
    return None


def _unread_labels(columns: _Columns, opts: ImportOptions, preset: Preset) -> list[str]:
    """A refusal per column that looks like preference labels but was not read as labels.

    Only preference presets are checked: a safety or eval set's ``label`` column (harmful or
    benign, say) is not a preference, and is listed under ``kept_in_metadata`` like any other.
    """
    if preset.kind != "preference":
        return []
    kept, ignored = columns.unread(opts.mapping)
    out = []
    for column in kept + ignored:
        if _LABEL_COLUMN.search(column) and column not in opts.metadata_only:
            fate = "kept as metadata" if column in kept else "ignored"
            out.append(
                f"column {column!r} looks like labels, but preset {preset.name} does not read it "
                f"(it would be {fate}): map it onto a label field (--map overall={column}), "
                f"choose the preset that reads it, or pass --metadata-only {column}"
            )
    return out


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
    store: Store, name: str, preset: Preset, source: Any, opts: ImportOptions
) -> dict[str, Any]:
    """The dataset to import into, created if new. An existing one is used only when the user
    asked to append or replace, and only when it holds the preset's kind of data."""
    existing = store.find_dataset(name)
    if existing and opts.mode == "new":
        raise ImportFailed(
            [
                Problem(
                    Path(source.name).name,
                    None,
                    None,
                    f"dataset {name!r} already exists: pass --append to add new ids to it, "
                    "--replace to swap its contents, or --dataset to name another",
                )
            ]
        )
    if existing and existing["kind"] != preset.kind:
        raise CuratorError(
            f"{source.name}: cannot import into dataset {name!r}: it holds {existing['kind']} "
            f"data, and the {preset.name} preset reads {preset.kind} data"
        )
    return store.create_dataset(
        name,
        preset.kind,
        source=source.name,
        description=opts.description,
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
