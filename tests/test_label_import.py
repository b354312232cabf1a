"""Labels attached to pairs already in a dataset: by id or by content, swapped pairs flipped,
re-runs that update instead of duplicating, and refusals that write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_import_errors import _snapshot
from test_import_honesty import _verdicts, _write, curator

from curation.errors import ImportFailed
from curation.importer import ImportOptions, import_path
from curation.label_import import LabelImportOptions, import_labels
from curation.store import Store


@pytest.fixture
def pairs(store: Store, tmp_path: Path) -> Store:
    """Dataset ``d``: three pairs, each with one person's label (A better)."""
    rows = [
        {"id": f"p{i}", "prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}",
         "label": "A>B", "annotator": "alice"}
        for i in range(3)
    ]  # fmt: skip
    import_path(store, _write(tmp_path / "d.jsonl", rows), ImportOptions(dataset="d"))
    return store


def _labels(store: Store, annotator: str) -> dict[str, int]:
    rows = store.conn.execute(
        "SELECT i.uid, a.overall FROM annotations a JOIN instances i ON i.id = a.instance_id "
        "WHERE a.annotator = ?",
        (annotator,),
    )
    return dict(rows.fetchall())


def _refused(store: Store, path: Path, **options: Any) -> ImportFailed:
    before = _snapshot(store)
    with pytest.raises(ImportFailed) as info:
        import_labels(store, path, LabelImportOptions(dataset="d", **options))
    assert _snapshot(store) == before
    return info.value


def test_judge_verdicts_attach_by_id_and_a_rerun_updates_without_duplicating(pairs, tmp_path):
    verdicts = _write(
        tmp_path / "v.jsonl",
        [
            {"id": "p0", "verdict": "B"},
            {"id": "p1", "verdict": "A"},
            {"id": "p2", "verdict": "tie"},
        ],
    )
    options = {"mapping": {"label": "verdict"}, "kind": "lm", "annotator": "gpt-4"}
    report = import_labels(pairs, verdicts, LabelImportOptions(dataset="d", **options))
    assert (report.matched, report.labels_added, report.labels_updated) == (3, 3, 0)
    assert _labels(pairs, "gpt-4") == {"p0": 2, "p1": -2, "p2": 0}
    assert pairs.stats()["annotations"]["lm"] == 3
    again = import_labels(pairs, verdicts, LabelImportOptions(dataset="d", **options))
    assert (again.labels_added, again.labels_updated) == (0, 3)
    assert pairs.conn.execute("SELECT count(*) FROM annotations").fetchone()[0] == 6


def test_a_pair_written_with_a_and_b_swapped_is_matched_by_content_and_flipped(pairs, tmp_path):
    rows = [
        {"prompt": "q0", "response_a": "b0", "response_b": "a0", "label": "A>B"},  # swapped
        {"prompt": " q1", "response_a": "a1", "response_b": "b1 ", "label": "A>B"},  # as stored
    ]
    report = import_labels(
        pairs,
        _write(tmp_path / "c.jsonl", rows),
        LabelImportOptions(dataset="d", match="content", annotator="bob"),
    )
    assert (report.matched, report.flipped) == (2, 1)
    # bob preferred b0 (shown as A): on the stored order that is B; alice agrees on q1 only
    assert _labels(pairs, "bob") == {"p0": 1, "p1": -1}


def test_an_id_match_whose_responses_are_swapped_is_flipped_and_a_mismatch_refused(pairs, tmp_path):
    swapped = {"id": "p0", "response_a": "b0", "response_b": "a0", "label": "B>>A"}
    report = import_labels(
        pairs, _write(tmp_path / "s.jsonl", [swapped]), LabelImportOptions("d", annotator="c")
    )
    assert report.flipped == 1 and _labels(pairs, "c") == {"p0": -2}
    other = {**swapped, "response_a": "something else"}
    error = _refused(pairs, _write(tmp_path / "x.jsonl", [other]), annotator="c")
    assert "x.jsonl:1 [response_a]: the responses differ from those of pair 'p0'" in str(error)


def test_rows_that_match_nothing_are_named_by_line_and_nothing_is_written(pairs, tmp_path):
    rows = [{"id": "p0", "label": "A"}, {"id": "nope", "label": "B"}, {"id": "p1"}]
    path = _write(tmp_path / "u.jsonl", rows)
    error = _refused(pairs, path, annotator="c")
    assert [str(p) for p in error.problems] == [
        "u.jsonl:2 [id]: no pair with id 'nope' in the dataset",
        "u.jsonl:3 [label]: the row holds no label (label, overall, helpful, ...)",
    ]
    report = import_labels(pairs, path, LabelImportOptions("d", annotator="c", skip_bad=True))
    assert report.matched == 1 and [p.line for p in report.unmatched] == [2, 3]
    assert _labels(pairs, "c") == {"p0": -2}


def test_a_second_label_by_the_same_annotator_on_one_pair_is_refused(pairs, tmp_path):
    rows = [{"id": "p0", "label": "A"}, {"id": "p0", "label": "B"}]
    error = _refused(pairs, _write(tmp_path / "twice.jsonl", rows), annotator="c")
    assert "twice.jsonl:2: a second label by 'c' on pair 'p0' (first on line 1)" in str(error)


def test_small_codes_need_a_value_map_in_a_labels_import_too(pairs, tmp_path):
    path = _write(tmp_path / "v.jsonl", [{"id": f"p{i}", "label": i} for i in range(3)])
    error = _refused(pairs, path, annotator="c")
    assert "holds only the codes {0, 1, 2}" in str(error)
    import_labels(
        pairs,
        path,
        LabelImportOptions("d", annotator="c", values={"label": {"0": "A", "1": "B", "2": "tie"}}),
    )
    assert _labels(pairs, "c") == {"p0": -2, "p1": 2, "p2": 0}


def test_attached_lm_labels_are_seen_by_agreement_and_the_cli_contract_holds(tmp_path):
    ws = str(tmp_path / "ws")
    rows = [
        {"id": f"p{i}", "prompt": f"q{i}", "response_a": f"a{i}", "response_b": f"b{i}",
         "label": "A>B" if i % 2 else "B>A", "annotator": "alice"}
        for i in range(6)
    ]  # fmt: skip
    curator("import", str(_write(tmp_path / "d.jsonl", rows)), "-w", ws, "--dataset", "d")
    verdicts = _write(tmp_path / "v.jsonl", [{"id": f"p{i}", "winner": 1} for i in range(6)])
    args = ("labels", "import", str(verdicts), "--dataset", "d", "-w", ws, "--kind", "lm")
    refused = curator(*args, "--map", "label=winner", code=2)
    assert "column 'winner' (read as label)" in refused.output
    result = curator(
        *args, "--annotator", "judge", "--map", "label=winner", "--values", "label:1=A", "--json"
    )
    assert json.loads(result.stdout) == {
        "dataset": "d",
        "file": str(verdicts),
        "matched": 6,
        "flipped": 0,
        "labels_added": 6,
        "labels_updated": 0,
        "unmatched": [],
        "unmatched_count": 0,
    }
    agreement = json.loads(curator("agreement", "d", "-w", ws, "--json").stdout)
    judges = agreement["aspects"]["overall"]["human_vs_lm"]["judges"]
    # alice said A on the odd pairs, the judge A on all: agreement on half of the six
    assert [(j["judge"], j["n_items"], j["agreement"]) for j in judges] == [("judge", 6, 0.5)]
    with Store.open(Path(ws)) as store:
        assert _verdicts(store, "d") and store.stats()["annotations"]["lm"] == 6
