"""Imports fuzzed with hypothesis: whatever a file holds, an import either succeeds or raises the
project's error naming the file, and a failed import leaves the store exactly as it was.

Files come in every format the importer reads (JSONL, JSON, CSV, TSV, Parquet, gzipped text),
with rows shaped like every preset's schema, values of every JSON type, raw garbage lines, bytes
that are not UTF-8, truncation at any byte, and corrupted Parquet pages. They go through
``import_path``, the function `curator import` calls, into a real store.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_import_errors import _snapshot

from curation.errors import CuratorError, ImportFailed
from curation.explore import data_stamp
from curation.importer import ImportOptions, import_path
from curation.presets import PRESETS, get_preset
from curation.store import Store

get_preset("pairwise")  # loads every preset module, so PRESETS is complete
PRESET_NAMES = sorted(PRESETS)
# Every column some preset reads: fuzzed rows look like each schema, and break it.
COLUMNS = sorted({c for p in PRESETS.values() for c in (*p.signature, *p.fields)})
FORMATS = ("jsonl", "json", "csv", "tsv", "parquet", "jsonl.gz", "csv.gz")

PLAUSIBLE = st.sampled_from(
    ["A>B", "B>>A", "tie", "a", "b", 2, -2, 3, 0.5, "", " ", "human", "lm", "robot", "user",
     "assistant", "vanilla_harmful", "adversarial_benign", True, None, "1", "-1", "nan"]
)  # fmt: skip
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "x", 1]), "content": st.text()}
    ),
    max_size=3,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
VALUES = PLAUSIBLE | MESSAGES | JSON_VALUES
ROWS = st.dictionaries(st.sampled_from(COLUMNS) | st.text(max_size=8), VALUES, max_size=8)
# Rows that import, in the shapes of the common presets; fuzzing mostly mutates these, so that
# conversion code past the first check runs too.
GOOD_ROWS = st.sampled_from(
    [
        {"id": "g1", "prompt": "p", "response_a": "a", "response_b": "b", "label": "A>B"},
        {"id": "g2", "prompt": "p", "response_a": "a", "response_b": "b", "overall": -1,
         "annotator_kind": "lm", "annotator": "judge", "domain": "math"},
        {"prompt": "p", "chosen": "c", "rejected": "r"},
        {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "c"}],
         "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"instruction": "i", "input": "", "output": "o"},
        {"prompt": "p", "completion": "c"},
        # another tool's label codes (refused without a value map) and an empty generation
        {"id": "g3", "prompt": "p", "response_a": "a", "response_b": "b", "label": 0},
        {"id": "g4", "prompt": "p", "response_a": "a", "response_b": "", "label": 2},
        {"id": "g5", "prompt": "p", "response_a": " ", "response_b": "b"},
    ]
)  # fmt: skip
# What a curator says the codes of the fuzzed label column mean, or nothing.
VALUE_MAPS = st.sampled_from([{}, {"label": {"0": "A", "1": "B", "2": "tie"}}])


@st.composite
def mutated_rows(draw) -> dict[str, Any]:
    """A good row with a field or two replaced by anything, or dropped."""
    row = dict(draw(GOOD_ROWS))
    for _ in range(draw(st.integers(1, 2))):
        own = row and draw(st.integers(0, 3)) > 0  # mostly a field the row has
        key = draw(st.sampled_from(sorted(row) if own else COLUMNS))
        if draw(st.booleans()):
            row.pop(key, None)
        else:
            row[key] = draw(VALUES)
    return row


# Lines that are not a JSON object at all, or are JSON that Python's parser refuses to hold.
RAW_LINES = st.sampled_from(
    [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe\x00", b'{"prompt": "caf\xe9"}',
     b'{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}',
     b'{"prompt": ' + b"9" * 5000 + b', "response_a": "a", "response_b": "b"}',
     b"[" * 100_000, b"\x00", b'{"a": 1}{"b": 2}']
) | st.binary(max_size=24)  # fmt: skip
LINES = st.one_of(GOOD_ROWS, GOOD_ROWS, mutated_rows(), mutated_rows(), ROWS, RAW_LINES)


def _json_line(item: dict | bytes) -> bytes:
    if isinstance(item, bytes):
        return item
    return json.dumps(item, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _text_file(fmt: str, items: list[dict | bytes]) -> bytes:
    """The bytes of a text file in ``fmt`` holding ``items`` (rows, or raw lines spliced in)."""
    if fmt == "jsonl":
        return b"\n".join(_json_line(i) for i in items) + b"\n"
    if fmt == "json":
        return b"[" + b",\n".join(_json_line(i) for i in items) + b"]"
    delimiter = "\t" if fmt == "tsv" else ","
    header = list(dict.fromkeys(k for i in items if isinstance(i, dict) for k in i)) or ["prompt"]
    lines = [delimiter.join(header).encode("utf-8", "surrogatepass")]
    for item in items:
        if isinstance(item, bytes):
            lines.append(item)
        else:
            cells = ['"' + _cell(item.get(k, "")).replace('"', '""') + '"' for k in header]
            lines.append(delimiter.join(cells).encode("utf-8", "surrogatepass"))
    return b"\n".join(lines) + b"\n"


PARQUET_COLUMNS = st.dictionaries(
    st.sampled_from(COLUMNS),
    st.sampled_from(["string", "int", "float", "bool", "list", "binary", "struct", "null"]),
    min_size=1,
    max_size=6,
)


@st.composite
def parquet_files(draw) -> bytes:
    """A Parquet file with typed columns, sometimes cut short or with bytes flipped."""
    columns = draw(PARQUET_COLUMNS)
    rows = draw(st.integers(1, 6))
    makers = {
        "string": st.text(max_size=8) | PLAUSIBLE.filter(lambda v: isinstance(v, str)),
        "int": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(),
        "bool": st.booleans(),
        "list": st.lists(st.text(max_size=4), max_size=3),
        "binary": st.binary(max_size=8),
        "struct": st.fixed_dictionaries({"role": st.text(max_size=5), "content": st.text()}),
        "null": st.none(),
    }
    data = {
        name: draw(st.lists(makers[kind] | st.none(), min_size=rows, max_size=rows))
        for name, kind in columns.items()
    }
    buffer = io.BytesIO()
    pq.write_table(pa.table(data), buffer)
    raw = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage == "truncate":
        return raw[: draw(st.integers(1, len(raw) - 1))]
    if damage == "flip":
        at = draw(st.integers(4, len(raw) - 5))
        return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]
    return raw


@st.composite
def import_files(draw) -> tuple[str, bytes]:
    """(format, file bytes) for one fuzzed input."""
    fmt = draw(st.sampled_from(FORMATS))
    if fmt == "parquet":
        return fmt, draw(parquet_files())
    base = fmt.removesuffix(".gz")
    raw = _text_file(base, draw(st.lists(LINES, min_size=1, max_size=8)))
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw  # a byte-order mark, as spreadsheet exports write
    if fmt.endswith(".gz"):
        raw = gzip.compress(raw)
    if draw(st.integers(0, 3)) == 0:
        raw = raw[: draw(st.integers(1, len(raw)))]  # a file cut off while being copied
    return fmt, raw


@pytest.fixture
def seeded(store: Store, tmp_path: Path) -> Store:
    """A store whose dataset ``d`` already holds labelled pairs, so a bad import has
    something to damage."""
    path = tmp_path / "seed.jsonl"
    rows = [
        {"id": f"g{i}", "prompt": f"q{i}", "response_a": "x", "response_b": "y", "label": "A>B"}
        for i in range(3)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    import_path(store, path, ImportOptions(dataset="d"))
    return store


_names = itertools.count()


def _damaged_parquet_page() -> bytes:
    """A Parquet file whose footer reads fine but whose first page header is broken."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["p"], "response_a": ["a"], "response_b": ["b"]}), buffer)
    raw = buffer.getvalue()
    return raw[:4] + bytes([raw[4] ^ 0xFF]) + raw[5:]


# Inputs the fuzzer found that escaped as bare Python errors (fixed in curation/readers.py).
REGRESSIONS = {
    "huge number": ("jsonl", b'{"prompt": ' + b"9" * 5000 + b"}\n"),  # ValueError
    "deep nesting": ("json", b"[" * 100_000),  # RecursionError
    "cut-off gzip": ("jsonl.gz", gzip.compress(b'{"prompt": "p"}\n' * 50)[:-9]),  # EOFError
    "lone surrogate": ("jsonl", b'{"prompt": "\\ud800", "response_a": "a", "response_b": "b"}\n'),
    "only half a BOM": ("csv", b"\xef"),  # StopIteration in a generator: RuntimeError
    "damaged page": ("parquet", _damaged_parquet_page()),  # OSError from pyarrow
}


def _regressions(test):
    for file in REGRESSIONS.values():
        test = example(file=file, preset=None, into_existing=True, skip_bad=False,
                       batch_size=2000, values={})(test)  # fmt: skip
    return test


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    file=import_files(),
    preset=st.none() | st.none() | st.sampled_from(PRESET_NAMES),
    into_existing=st.booleans(),
    skip_bad=st.booleans(),
    batch_size=st.sampled_from([2, 3, 2000]),
    values=VALUE_MAPS,
)
@_regressions
def test_a_fuzzed_import_succeeds_or_fails_clearly_and_changes_nothing(
    seeded, tmp_path, file, preset, into_existing, skip_bad, batch_size, values
):
    """Any exception but CuratorError is a bug (the CLI would print a traceback); a
    CuratorError must name the file, each row problem its line, and leave no trace."""
    fmt, raw = file
    path = tmp_path / f"fuzz{next(_names)}.{fmt}"
    path.write_bytes(raw)
    dataset = "d" if into_existing else f"new{path.stem}"
    before, stamp = _snapshot(seeded), data_stamp(seeded)
    options = ImportOptions(
        dataset=dataset,
        preset=preset,
        skip_bad=skip_bad,
        batch_size=batch_size,
        values=values,
        mode="append" if into_existing else "new",
    )
    try:
        report = import_path(seeded, path, options)
    except CuratorError as exc:
        assert path.name in str(exc), f"the error does not name the file: {exc}"
        if isinstance(exc, ImportFailed):
            assert all(p.file == path.name for p in exc.problems)
            # Row problems name their line; a refusal of the whole file (an ambiguous label
            # scale, a label column nobody reads) stands alone.
            whole_file = len(exc.problems) == 1 and exc.problems[0].line is None
            assert whole_file or all(p.line for p in exc.problems)
        assert _snapshot(seeded) == before, "a failed import changed the store"
        assert data_stamp(seeded) == stamp
    else:
        assert report.instances > 0
        assert all(p.file == path.name and p.line for p in report.skipped)
        assert seeded.stats()["instances"] == before[0]["instances"] + report.instances
        assert seeded.integrity_check() == "ok"


def test_a_repeated_id_in_a_later_batch_names_the_line_it_first_appeared_on(seeded, tmp_path):
    """Earlier batches are looked up in the store, not held in memory: the first line of an id
    is still named exactly, across batches and past skipped bad rows."""
    lines = [
        {"id": "a", "prompt": "p", "response_a": "a", "response_b": "b"},  # 1
        b"{not json",  # 2
        {"id": "b", "prompt": "p", "response_a": "a", "response_b": "b"},  # 3
        {"id": "c", "prompt": "p", "response_a": "a", "response_b": "b"},  # 4
        {"id": "c", "prompt": "p", "response_a": "a", "response_b": "b"},  # 5: same batch
        {"id": "d", "prompt": "p", "response_a": "a", "response_b": "b"},  # 6
        {"id": "b", "prompt": "p", "response_a": "a", "response_b": "b"},  # 7: a later batch
        {"id": "g0", "prompt": "p", "response_a": "a", "response_b": "b"},  # 8: seeded before
    ]
    path = tmp_path / "repeats.jsonl"
    path.write_bytes(_text_file("jsonl", lines))
    before = _snapshot(seeded)
    options = ImportOptions(dataset="d", batch_size=2, mode="append")
    with pytest.raises(ImportFailed) as info:
        import_path(seeded, path, options)
    assert [str(p) for p in info.value.problems] == [
        "repeats.jsonl:2: invalid JSON: Expecting property name enclosed in double quotes "
        "at column 2",
        "repeats.jsonl:5 [id]: duplicate id 'c' (first on line 4)",
        "repeats.jsonl:7 [id]: duplicate id 'b' (first on line 3)",
        "repeats.jsonl:8 [id]: id 'g0' is already in dataset 'd'",
    ]
    assert _snapshot(seeded) == before


# ---- labels attached to existing pairs --------------------------------------------------------

LABEL_COLUMNS = ["id", "uid", "prompt", "response_a", "response_b", "label", "overall",
                 "helpful", "annotator", "annotator_kind", "confidence"]  # fmt: skip
# Rows that match the seeded pairs by id or content (in either order), and ones that do not.
LABEL_ROWS = st.sampled_from(
    [
        {"id": "g0", "label": "A>B"},
        {"id": "g1", "label": 0, "annotator": "x"},
        {"prompt": "q2", "response_a": "y", "response_b": "x", "label": "B"},  # swapped
        {"prompt": "q1", "response_a": "x", "response_b": "y", "overall": -1},
        {"id": "g2", "response_a": "y", "response_b": "x", "label": "tie"},
        {"id": "nope", "label": "A"},
    ]
)  # fmt: skip


@st.composite
def label_rows(draw) -> dict[str, Any]:
    row = dict(draw(LABEL_ROWS))
    if draw(st.booleans()):
        key = draw(st.sampled_from(LABEL_COLUMNS))
        row[key] = draw(VALUES)
    return row


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(st.one_of(label_rows(), label_rows(), RAW_LINES), min_size=1, max_size=6),
    match=st.sampled_from(["id", "content"]),
    skip_bad=st.booleans(),
    values=VALUE_MAPS,
)
def test_a_fuzzed_labels_import_attaches_or_refuses_clearly_and_changes_nothing(
    seeded, tmp_path, lines, match, skip_bad, values
):
    """Whatever the rows hold, a labels import either attaches labels to existing pairs only
    (never adding a pair) or raises the project's error naming the file, writing nothing."""
    from curation.label_import import LabelImportOptions, import_labels

    path = tmp_path / f"labels{next(_names)}.jsonl"
    path.write_bytes(_text_file("jsonl", lines))
    before = _snapshot(seeded)
    options = LabelImportOptions(dataset="d", match=match, skip_bad=skip_bad, values=values)
    try:
        report = import_labels(seeded, path, options)
    except CuratorError as exc:
        assert path.name in str(exc), f"the error does not name the file: {exc}"
        assert _snapshot(seeded) == before, "a refused labels import changed the store"
    else:
        assert report.matched == report.labels_added + report.labels_updated > 0
        assert seeded.stats()["instances"] == before[0]["instances"]
        labels = seeded.stats()["annotations"]
        assert sum(labels.values()) == sum(before[0]["annotations"].values()) + report.labels_added
        assert seeded.integrity_check() == "ok"
