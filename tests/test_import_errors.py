"""The bad-input contract: a failed import names file, line and field, and writes nothing.

Every case runs twice: into a new dataset, and into a dataset that already holds rows. Either
way the whole store (every table, not only the counts) must be exactly what it was before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from curation.errors import CuratorError, ImportFailed
from curation.importer import ImportOptions, import_path
from curation.store import Store

HEADER = "prompt,response_a,response_b,label\n"


def _snapshot(store: Store) -> tuple[dict[str, Any], dict[str, list[tuple]]]:
    """The store's stats and the sorted contents of every table."""
    tables = [
        r[0]
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    dump = {
        t: sorted((tuple(r) for r in store.conn.execute(f'SELECT * FROM "{t}"')), key=repr)
        for t in tables
    }
    return store.stats(), dump


def _jsonl_lines(*rows: Any) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def _pair(i: int, **extra: Any) -> dict[str, Any]:
    return {"id": f"n{i}", "prompt": f"p{i}", "response_a": "a", "response_b": "b", **extra}


@pytest.fixture
def seeded(store: Store, tmp_path: Path) -> Store:
    """A store already holding dataset ``d`` with two labelled pairs (ids s0, s1)."""
    path = tmp_path / "seed.jsonl"
    path.write_bytes(
        _jsonl_lines(
            *(
                {
                    "id": f"s{i}",
                    "prompt": f"q{i}",
                    "response_a": "x",
                    "response_b": "y",
                    "label": "A>B",
                }
                for i in range(2)
            )
        )
    )
    import_path(store, path, ImportOptions(dataset="d"))
    return store


@pytest.fixture(params=["new", "existing"])
def target(request) -> str:
    """The dataset an import writes into: a new one, or ``d`` which already has rows (the
    import then appends to it)."""
    return "fresh" if request.param == "new" else "d"


def _mode(dataset: str) -> str:
    return "append" if dataset == "d" else "new"


def _fails(store: Store, path: Path, dataset: str, **options: Any) -> ImportFailed:
    """Run an import that must fail; check that it changed nothing; return its error."""
    before = _snapshot(store)
    with pytest.raises(ImportFailed) as info:
        import_path(store, path, ImportOptions(dataset=dataset, mode=_mode(dataset), **options))
    assert _snapshot(store) == before
    return info.value


# ---- one problem per file -------------------------------------------------------------------


def test_malformed_json_line_is_named_by_file_and_line(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(_pair(1), b'{"prompt": "p", "response_a": ', _pair(3)))
    error = _fails(seeded, path, target)
    assert [(p.file, p.line) for p in error.problems] == [("bad.jsonl", 2)]
    assert "bad.jsonl:2: invalid JSON" in str(error)


def test_number_where_text_is_expected_names_the_field(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(_pair(1), _pair(2), {**_pair(3), "prompt": 42}))
    error = _fails(seeded, path, target)
    assert "bad.jsonl:3 [prompt]: expected text, got int" in str(error)


def test_csv_without_a_required_column_names_it_on_every_row(seeded, tmp_path, target):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,response_a\np1,a1\np2,a2\n")
    error = _fails(seeded, path, target, preset="pairwise")
    assert [(p.line, p.field) for p in error.problems] == [(2, "response_b"), (3, "response_b")]
    assert "bad.csv:2 [response_b]: missing required field" in str(error)


def test_non_utf8_bytes_in_jsonl_are_named_by_line(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        _jsonl_lines(_pair(1), b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}')
    )
    error = _fails(seeded, path, target)
    assert [(p.line, p.field) for p in error.problems] == [(2, None)]
    assert "bad.jsonl:2: not UTF-8 text" in str(error)


def test_non_utf8_bytes_in_csv_are_named_by_line_and_column(seeded, tmp_path, target):
    path = tmp_path / "bad.csv"
    path.write_bytes(
        (HEADER + "p1,a,b,A>B\np2,a,b,A>B\n").encode() + b"p3,a,caf\xe9,A>B\np4,a,b,B>A\n"
    )
    error = _fails(seeded, path, target)
    assert [p.line for p in error.problems] == [4]
    assert "bad.csv:4: not UTF-8 text in column 'response_b'" in str(error)


def test_duplicate_ids_within_a_file_name_both_lines(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(_pair(1), _pair(2), _pair(1)))
    error = _fails(seeded, path, target)
    assert "bad.jsonl:3 [id]: duplicate id 'n1' (first on line 1)" in str(error)


def test_id_already_in_the_dataset_is_refused(seeded, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(_pair(1), {**_pair(2), "id": "s1"}))
    error = _fails(seeded, path, "d")
    assert "bad.jsonl:2 [id]: id 's1' is already in dataset 'd'" in str(error)


def test_bad_label_value_names_the_label_field(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(_pair(1, label="A>B"), _pair(2, label="A>>>B")))
    error = _fails(seeded, path, target)
    assert "bad.jsonl:2 [label]: not a preference label" in str(error)


def test_csv_row_with_the_wrong_number_of_fields_is_named_by_line(seeded, tmp_path, target):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "p1,a,b,A>B\np2,a,b\np3,a,b,tie\n")
    error = _fails(seeded, path, target)
    assert "bad.csv:3: has 3 fields, the header has 4" in str(error)


def test_problem_in_the_last_batch_rolls_back_the_batches_already_written(seeded, tmp_path, target):
    """Earlier batches really are inserted mid-import; the failure must still undo them."""
    rows = [_pair(i) for i in range(1199)] + [{**_pair(1199), "response_b": None}]
    path = tmp_path / "big.jsonl"
    path.write_bytes(_jsonl_lines(*rows))
    before = seeded.stats()["instances"]
    seen_mid_import: list[int] = []

    def progress(done: int, fraction: float | None) -> None:
        count = seeded.conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        seen_mid_import.append(count - before)

    snapshot = _snapshot(seeded)
    with pytest.raises(ImportFailed):
        import_path(
            seeded,
            path,
            ImportOptions(dataset=target, mode=_mode(target), batch_size=7),
            progress=progress,
        )
    assert max(seen_mid_import) >= 994  # batches of 7 up to row 1000 were in the open transaction
    assert _snapshot(seeded) == snapshot


# ---- unreadable or empty inputs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "the file is empty"),
        ("empty.csv", b"", "the file is empty"),
        ("blank.jsonl", b"\n\n  \n", "no records in the input"),
        ("header_only.csv", HEADER.encode(), "no records in the input"),
        ("notes.txt", b"hello", "cannot tell the format"),
    ],
)
def test_empty_or_unreadable_files_are_a_curator_error_and_write_nothing(
    seeded, tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    before = _snapshot(seeded)
    with pytest.raises(CuratorError, match=message) as info:
        import_path(seeded, path, ImportOptions(dataset="d"))
    assert name in str(info.value)
    assert _snapshot(seeded) == before


def test_missing_file_is_a_curator_error(seeded, tmp_path):
    with pytest.raises(CuratorError, match="no such file"):
        import_path(seeded, tmp_path / "absent.jsonl")


def test_unknown_schema_lists_its_columns(seeded, tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(_jsonl_lines({"question": "q", "answer": "a"}))
    before = _snapshot(seeded)
    with pytest.raises(CuratorError, match="cannot tell which schema this is.*answer, question"):
        import_path(seeded, path)
    assert _snapshot(seeded) == before


# ---- many problems, and skipping them -------------------------------------------------------


def _mixed_file(tmp_path: Path) -> Path:
    """Good rows on lines 1, 4, 8 and 10; one kind of problem on each other line."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        _jsonl_lines(
            _pair(1),  # 1 good
            b"{not json",  # 2 malformed
            {**_pair(3), "prompt": 3.5},  # 3 wrong type
            _pair(4, label="B>A"),  # 4 good
            {"id": "n5", "prompt": "p5", "response_a": "a"},  # 5 missing field
            _pair(6, label="C"),  # 6 bad label
            b'{"prompt": "\xff"}',  # 7 not UTF-8
            _pair(8),  # 8 good
            {**_pair(9), "id": "n1"},  # 9 duplicate id
            _pair(10, annotator_kind="lm", label=-1),  # 10 good
            b"[1, 2]",  # 11 not an object
            _pair(12, annotator_kind="robot", label=1),  # 12 bad annotator kind
        )
    )
    return path


EXPECTED = [
    (2, None),
    (3, "prompt"),
    (5, "response_b"),
    (6, "label"),
    (7, None),
    (9, "id"),
    (11, None),
    (12, "annotator_kind"),
]


def test_every_problem_in_a_file_is_reported_in_one_pass(seeded, tmp_path, target):
    error = _fails(seeded, _mixed_file(tmp_path), target)
    assert [(p.line, p.field) for p in error.problems] == EXPECTED
    assert f"({len(EXPECTED)} problems)" in str(error)


def test_skip_bad_imports_the_good_rows_and_reports_each_skipped_one(seeded, tmp_path, target):
    report = import_path(
        seeded,
        _mixed_file(tmp_path),
        ImportOptions(dataset=target, mode=_mode(target), skip_bad=True),
    )
    assert (report.instances, report.annotations) == (4, 2)
    assert [(p.line, p.field) for p in report.skipped] == EXPECTED
    assert report.skipped_count == len(EXPECTED)
    stored = {i.uid for _, i in seeded.iter_instances(target)}
    assert {"n1", "n4", "n8", "n10"} <= stored
    assert not stored & {"n3", "n5", "n6", "n12"}


def test_skip_bad_with_no_good_row_still_fails_and_writes_nothing(seeded, tmp_path, target):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(b"{", {**_pair(2), "prompt": None}))
    error = _fails(seeded, path, target, skip_bad=True, preset="pairwise")
    assert [p.line for p in error.problems] == [1, 2]


def test_problem_list_is_capped_but_the_count_is_exact(seeded, tmp_path):
    """A file with thousands of bad rows lists the first 50 and counts the rest."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_jsonl_lines(*({**_pair(i), "prompt": i} for i in range(120))))
    error = _fails(seeded, path, "fresh")
    assert (len(error.problems), error.truncated) == (50, 70)
    assert "... and 70 more problems" in str(error)
