"""Read records from JSONL, JSON, CSV, Parquet, a saved HF dataset folder or a hub id.

Each reader yields ``(line, record)`` pairs so that every later problem can name where it came
from: the line for JSONL and CSV, the 1-based element or row number otherwise. Text formats are
streamed; a malformed line becomes a :class:`RowError` in the stream instead of stopping it, so
one pass reports every problem.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError

FORMATS = ("jsonl", "json", "csv", "parquet", "hf", "hub")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class RowError:
    """A row that could not even be read (bad JSON, bad encoding)."""

    line: int
    message: str


@dataclass
class Source:
    """An opened input: its display name, format, size for progress, and its record stream."""

    name: str
    format: str
    total_bytes: int | None
    total_rows: int | None
    records: Iterator[tuple[int, dict[str, Any] | RowError]]
    bytes_read: Any = None  # callable returning bytes consumed so far (text formats)


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format from the path: a folder saved by ``datasets``, or a file suffix."""
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            return "hf"
        raise CuratorError(f"{p} is a folder but not a saved Hugging Face dataset")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    if not p.exists() and "/" in str(path) and not str(path).startswith((".", "/")):
        return "hub"
    raise CuratorError(
        f"cannot tell the format of {p}: use a .jsonl, .json, .csv, .parquet file, a saved HF "
        "dataset folder, or pass --format"
    )


def open_source(
    path: str | os.PathLike, fmt: str | None = None, *, split: str | None = None
) -> Source:
    """Open an input for streaming; raise CuratorError when it cannot be read at all."""
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise CuratorError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    name = str(path)
    if fmt == "hub":
        return _open_hub(name, split)
    p = Path(path)
    if not p.exists():
        raise CuratorError(f"{name}: no such file or folder")
    if fmt == "hf":
        return _open_hf_folder(p, split)
    if p.is_dir():
        raise CuratorError(f"{name} is a folder, expected a {fmt} file")
    size = p.stat().st_size
    if size == 0:
        raise CuratorError(f"{name}: the file is empty")
    if fmt == "parquet":
        return _open_parquet(p)
    return _open_text(p, fmt, size)


# ---- text formats ---------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """A binary stream that counts bytes read, for a byte-based progress bar.

    A file that cannot be read on (above all a gzipped one cut short or damaged, which fails
    deep inside the decompressor) becomes a CuratorError naming it, whichever reader asked.
    """

    def __init__(self, raw: io.BufferedIOBase, name: str):
        self.raw = raw
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.raw.read(len(buffer))
        except (EOFError, OSError, zlib.error) as exc:
            raise CuratorError(f"{self.name}: the file is cut short or damaged ({exc})") from exc
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open_binary(p: Path) -> _CountingReader:
    if p.suffix.lower() == ".gz":
        import gzip

        return _CountingReader(gzip.open(p, "rb"), str(p))
    return _CountingReader(open(p, "rb"), str(p))  # noqa: SIM115 - closed by the generator


def _decoded_lines(counter: _CountingReader) -> Iterator[tuple[int, str | RowError]]:
    """Lines of a UTF-8 file; a line that is not UTF-8 becomes a RowError, not a crash."""
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    for number, raw in enumerate(buffered, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, RowError(number, f"not UTF-8 text (byte {exc.start} of the line)")
            continue
        if number == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield number, text


def _open_text(p: Path, fmt: str, size: int) -> Source:
    counter = _open_binary(p)
    if fmt == "jsonl":
        records = _jsonl_records(counter)
    elif fmt == "json":
        records = _json_records(counter, p)
    else:
        records = _csv_records(counter, delimiter="\t" if ".tsv" in p.suffixes else ",")
    return Source(str(p), fmt, size, None, records, bytes_read=lambda: counter.count)


def _jsonl_records(counter: _CountingReader) -> Iterator[tuple[int, dict | RowError]]:
    with counter:
        for number, text in _decoded_lines(counter):
            if isinstance(text, RowError):
                yield number, text
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as exc:
                yield number, RowError(number, _json_problem(exc))
                continue
            if not isinstance(value, dict):
                yield (
                    number,
                    RowError(number, f"expected a JSON object, got {type(value).__name__}"),
                )
                continue
            if _SURROGATE_ESCAPE.search(text) and _unpaired_surrogate(value):
                yield number, RowError(number, _UNPAIRED_SURROGATE)
                continue
            yield number, value


def _json_records(counter: _CountingReader, p: Path) -> Iterator[tuple[int, dict | RowError]]:
    """A JSON array of objects (or an object with one list of objects, as many dumps are)."""
    with counter:
        raw = counter.read()
    try:
        text = raw.decode("utf-8-sig")
        value = json.loads(text)
    except UnicodeDecodeError as exc:
        yield 1, RowError(1, f"not UTF-8 text (byte {exc.start})")
        return
    except (ValueError, RecursionError) as exc:
        line = exc.lineno if isinstance(exc, json.JSONDecodeError) else 1
        yield line, RowError(line, _json_problem(exc))
        return
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            yield 1, RowError(1, "expected a JSON array of objects (or an object holding one)")
            return
        value = lists[0]
    if not isinstance(value, list):
        yield 1, RowError(1, "expected a JSON array of objects")
        return
    escapes = _SURROGATE_ESCAPE.search(text) is not None  # only then can an element hold one
    for number, item in enumerate(value, start=1):
        if isinstance(item, dict) and escapes and _unpaired_surrogate(item):
            yield number, RowError(number, _UNPAIRED_SURROGATE)
        elif isinstance(item, dict):
            yield number, item
        else:
            yield (
                number,
                RowError(number, f"element {number} is {type(item).__name__}, not an object"),
            )


_UNPAIRED_SURROGATE = (
    "text with an unpaired surrogate escape (such as \\ud800), which is not Unicode"
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _unpaired_surrogate(value: Any) -> bool:
    """Whether decoded JSON holds half a surrogate pair: valid JSON (``"\\ud800"``), but not
    text that UTF-8, and so SQLite, can hold. Worth asking only of JSON text that has such an
    escape (``_SURROGATE_ESCAPE``)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_problem(exc: ValueError | RecursionError) -> str:
    """What is wrong with some JSON text, in words (Python's parser refuses more than bad
    syntax: nesting deeper than its recursion limit, and integers of over 4300 digits)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "invalid JSON: nested too deeply to read"
    if "digits" in str(exc):
        return "invalid JSON: a number has too many digits to read (over 4300)"
    return f"invalid JSON: {exc}"


def _csv_records(counter: _CountingReader, delimiter: str) -> Iterator[tuple[int, dict | RowError]]:
    """CSV/TSV rows keyed by the header, each numbered by the line it starts on.

    Bytes are decoded with ``surrogateescape`` so a non-UTF-8 byte marks only its own row
    (as lone surrogates, which real UTF-8 text never holds) instead of stopping the stream
    at whichever read block held it.
    """
    csv.field_size_limit(1 << 30)
    with counter:
        text = io.TextIOWrapper(counter, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.reader(text, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:  # nothing but a byte-order mark, or not even that
                return
            if _NOT_UTF8.search("".join(header)):
                yield 1, RowError(1, "not UTF-8 text (in the header)")
                return
            last = reader.line_num
            for row in reader:
                line, last = last + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                bad = next((i for i, cell in enumerate(row) if _NOT_UTF8.search(cell)), None)
                if bad is not None:
                    where = f" in column {header[bad]!r}" if bad < len(header) else ""
                    yield line, RowError(line, f"not UTF-8 text{where}")
                    continue
                if len(row) != len(header):
                    yield (
                        line,
                        RowError(line, f"has {len(row)} fields, the header has {len(header)}"),
                    )
                    continue
                yield line, dict(zip(header, row, strict=True))
        except csv.Error as exc:
            yield reader.line_num, RowError(reader.line_num, f"malformed CSV: {exc}")


_NOT_UTF8 = re.compile("[\udc80-\udcff]")


# ---- columnar formats -----------------------------------------------------------------------


def _open_parquet(p: Path) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(p)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise CuratorError(f"{p}: not a readable Parquet file ({exc})") from exc

    def records() -> Iterator[tuple[int, dict]]:
        # A readable footer says nothing about the pages: a damaged one fails only when read.
        number = 0
        batches = parquet.iter_batches(batch_size=2048)
        while True:
            try:
                batch = next(batches, None)
                rows = [] if batch is None else batch.to_pylist()
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CuratorError(
                    f"{p}: the Parquet file is damaged after row {number} ({exc})"
                ) from exc
            if batch is None:
                return
            for row in rows:
                number += 1
                yield number, row

    return Source(str(p), "parquet", p.stat().st_size, parquet.metadata.num_rows, records())


def _rows_of(dataset: Any) -> Iterator[tuple[int, dict]]:
    for number, row in enumerate(dataset, start=1):
        yield number, dict(row)


def _pick_split(loaded: Any, split: str | None, name: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded
    if split:
        if split not in loaded:
            raise CuratorError(f"{name} has no split {split!r} (splits: {', '.join(loaded)})")
        return loaded[split]
    if len(loaded) == 1:
        return next(iter(loaded.values()))
    for preferred in ("train", "train_prefs", "test"):
        if preferred in loaded:
            return loaded[preferred]
    raise CuratorError(f"{name} has several splits ({', '.join(loaded)}): choose one with --split")


def _open_hf_folder(p: Path, split: str | None) -> Source:
    from datasets import load_from_disk

    try:
        loaded = load_from_disk(str(p))
    except Exception as exc:
        raise CuratorError(f"{p}: cannot load the saved dataset ({exc})") from exc
    data = _pick_split(loaded, split, str(p))
    return Source(str(p), "hf", None, len(data), _rows_of(data))


def _open_hub(name: str, split: str | None) -> Source:
    """A dataset by hub id (``org/name`` or ``org/name:config``) through ``datasets.load_dataset``.

    The only import path that reaches the network, and only because the user named a hub id.
    """
    from datasets import load_dataset

    repo, _, config = name.partition(":")
    try:
        loaded = load_dataset(repo, config or None, split=split)
    except Exception as exc:
        raise CuratorError(f"cannot load {name} from the hub: {exc}") from exc
    data = _pick_split(loaded, split, name)
    return Source(name, "hub", None, len(data), _rows_of(data))
