"""Real files come in right or are refused: label codes of another scale, value maps, empty
responses, columns the preset does not read, native exports, and existing datasets.

Every refusal is checked to leave the store exactly as it was (every table dumped before and
after, as the import-error tests do), and the CLI's exit status and JSON are its contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import curator as run_curator
from test_import_errors import _snapshot
from test_presets import _multipref_row

from curation.errors import CuratorError, ImportFailed
from curation.exporter import export_dataset
from curation.importer import ImportOptions, import_path
from curation.labels import verdict
from curation.store import InstanceFilter, Store
from curation.workspace import Workspace


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(codes: list[Any], **extra: Any) -> list[dict[str, Any]]:
    """Pairs whose label column holds ``codes``, with a scenario column beside them."""
    return [
        {"id": f"r{i}", "prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}",
         "label": code, "scenario": "chat", **extra}
        for i, code in enumerate(codes)
    ]  # fmt: skip


def _verdicts(store: Store, dataset: str) -> dict[str, int]:
    rows = store.conn.execute(
        "SELECT i.uid, a.overall FROM annotations a JOIN instances i ON i.id = a.instance_id "
        "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = ?",
        (dataset,),
    )
    return {uid: verdict(overall) for uid, overall in rows}


def _refused(store: Store, path: Path, **options: Any) -> ImportFailed:
    before = _snapshot(store)
    with pytest.raises(ImportFailed) as info:
        import_path(store, path, ImportOptions(**options))
    assert _snapshot(store) == before
    return info.value


def curator(*args: str, code: int = 0):
    """The real `curator` command in a subprocess (so exit statuses are the script's)."""
    result = run_curator(*args, check=False)
    assert result.returncode == code, result.stdout + result.stderr
    result.output = result.stdout + result.stderr
    return result


# ---- label codes of another scale -----------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "shown", "guess"),
    [
        ([0, 1, 2, 0], "{0, 1, 2}", "--values label:0=A,1=B,2=tie"),
        (["1", "2", "2"], "{1, 2}", "--values label:1=A,2=B"),
        ([1, 2, 3], "{1, 2, 3}", "--values label:1=A,2=B,3=tie"),
    ],
)
def test_a_label_column_of_small_codes_is_refused_naming_its_values_and_two_maps(
    store, tmp_path, codes, shown, guess
):
    path = _write(tmp_path / "codes.jsonl", _rows(codes))
    error = _refused(store, path, dataset="codes", preset="pairwise")
    message = str(error)
    assert len(error.problems) == 1
    assert "column 'label'" in message and shown in message and guess in message
    assert message.count("--values label:") == 2


def test_codes_on_the_stores_own_scale_import_without_a_map(store, tmp_path):
    """Negative codes settle it: the column is on -2..2, and 0 is a tie."""
    path = _write(tmp_path / "scale.jsonl", _rows([-2, 0, 1, 2]))
    import_path(store, path, ImportOptions(dataset="scale"))
    assert _verdicts(store, "scale") == {"r0": -1, "r1": 0, "r2": 1, "r3": 1}


def test_a_value_map_reads_the_codes_as_the_user_says(store, tmp_path):
    path = _write(tmp_path / "codes.jsonl", _rows([0, 1, 2, 0]))
    report = import_path(
        store,
        path,
        ImportOptions(dataset="codes", values={"label": {"0": "A", "1": "B", "2": "tie"}}),
    )
    assert report.annotations == 4
    assert _verdicts(store, "codes") == {"r0": -1, "r1": 1, "r2": 0, "r3": -1}


def test_the_map_names_the_mapped_column_and_applies_to_the_field(store, tmp_path):
    rows = [{"q": f"p{i}", "x": "a", "y": "b", "winner": c} for i, c in enumerate([1, 2, 1])]
    path = _write(tmp_path / "w.jsonl", rows)
    mapping = {"prompt": "q", "response_a": "x", "response_b": "y", "label": "winner"}
    error = _refused(store, path, dataset="w", preset="pairwise", mapping=mapping)
    assert "column 'winner' (read as label)" in str(error)
    import_path(
        store,
        path,
        ImportOptions(dataset="w", mapping=mapping, values={"label": {"1": "A", "2": "B"}}),
    )
    assert sorted(_verdicts(store, "w").values()) == [-1, -1, 1]


def test_a_code_outside_its_map_names_the_line_and_field(store, tmp_path):
    path = _write(tmp_path / "codes.jsonl", _rows([0, 1, 5]))
    error = _refused(store, path, dataset="codes", values={"label": {"0": "A", "1": "B"}})
    assert [(p.line, p.field) for p in error.problems] == [(3, "label")]
    assert "value 5 is not in its --values map (0, 1)" in str(error)


def test_a_map_onto_something_that_is_not_a_label_is_refused_before_reading(store, tmp_path):
    path = _write(tmp_path / "codes.jsonl", _rows([0, 1]))
    before = _snapshot(store)
    with pytest.raises(CuratorError, match="'first' is not a preference"):
        import_path(store, path, ImportOptions(values={"label": {"0": "first", "1": "B"}}))
    assert _snapshot(store) == before


def test_a_preset_that_documents_its_codes_reads_them_without_a_map(store, tmp_path):
    """LLMBar's label is 1 or 2 by its schema: no value map is asked for."""
    rows = [
        {
            "input": f"q{i}",
            "output_1": "one",
            "output_2": "two",
            "label": code,
            "subset": "Natural",
            "idx": i,
        }
        for i, code in enumerate([1, 2, 2])
    ]
    report = import_path(store, _write(tmp_path / "llmbar.jsonl", rows), ImportOptions())
    assert report.preset == "llmbar" and report.annotations == 3


# ---- empty responses, columns, native exports --------------------------------------------------


def test_empty_responses_are_data_counted_and_refused_only_on_request(store, tmp_path):
    rows = _rows(["A>B", "B>A", "tie"])
    rows[1]["response_b"] = ""
    rows[2]["response_a"] = "  \n"
    path = _write(tmp_path / "empty.jsonl", rows)
    report = import_path(store, path, ImportOptions(dataset="empty"))
    assert (report.instances, report.empty_responses) == (3, 2)
    # Explore's filter finds them (a newline-only response is blank too)
    blank = InstanceFilter.parse("empty_response=yes", dataset="empty")
    assert [r["uid"] for r in store.page_instances(blank)] == ["r1", "r2"]
    assert store.count_instances(InstanceFilter(dataset="empty", empty_response=False)) == 1
    error = _refused(store, path, dataset="strict", require_nonempty=True)
    assert [(p.line, p.field) for p in error.problems] == [(2, "response_b"), (3, "response_a")]


def test_the_summary_lists_the_columns_kept_as_metadata_and_those_ignored(store, tmp_path):
    rows = _rows(["A>B", "B>A"], extra_notes="n")
    report = import_path(store, _write(tmp_path / "m.jsonl", rows), ImportOptions(dataset="m"))
    assert report.kept_in_metadata == ["extra_notes", "scenario"]
    assert report.ignored == []
    instance = dict(store.conn.execute("SELECT metadata FROM instances LIMIT 1").fetchone())
    assert json.loads(instance["metadata"]) == {"extra_notes": "n", "scenario": "chat"}
    # A column a preset drops is named as ignored: the native form reads only its own fields.
    native = tmp_path / "native.jsonl"
    export_dataset(store, "m", "jsonl", native, shape="native")
    records = [json.loads(line) for line in native.read_text().splitlines()]
    _write(native, [{**r, "stray": 1} for r in records])
    again = import_path(store, native, ImportOptions(dataset="m2"))
    assert again.preset == "curator" and again.ignored == ["stray"]


def test_a_label_column_the_preset_does_not_read_refuses_the_import(store, tmp_path):
    rows = [{**r, "human_label": "A"} for r in _rows(["A>B", "B>A"])]
    path = _write(tmp_path / "hl.jsonl", rows)
    error = _refused(store, path, dataset="hl")
    assert "column 'human_label' looks like labels" in str(error)
    assert "--metadata-only human_label" in str(error)
    report = import_path(store, path, ImportOptions(dataset="hl", metadata_only=("human_label",)))
    assert "human_label" in report.kept_in_metadata


def test_a_native_export_is_detected_by_its_marker_and_keeps_every_label(store, tmp_path):
    """A native file that lacks some optional columns still reads as native, not as pairwise
    with its ``annotations`` left aside."""
    rows = _rows(["A>B", "B>A"])
    import_path(store, _write(tmp_path / "src.jsonl", rows), ImportOptions(dataset="src"))
    native = tmp_path / "native.jsonl"
    export_dataset(store, "src", "jsonl", native, shape="native")
    records = [json.loads(line) for line in native.read_text().splitlines()]
    for record in records:  # a hand-edited export: optional fields dropped
        for name in ("gold", "subset", "model_a", "model_b", "source", "domain", "messages"):
            record.pop(name, None)
    _write(native, records)
    report = import_path(store, native, ImportOptions(dataset="back"))
    assert (report.preset, report.instances, report.annotations) == ("curator", 2, 2)


# ---- existing datasets ----------------------------------------------------------------------


def test_importing_into_an_existing_name_stops_with_one_line(store, tmp_path):
    path = _write(tmp_path / "d.jsonl", _rows(["A>B"]))
    import_path(store, path, ImportOptions(dataset="d"))
    error = _refused(store, _write(tmp_path / "more.jsonl", _rows(["A>B", "B>A"])), dataset="d")
    assert str(error).count("\n") == 0
    assert "dataset 'd' already exists: pass --append" in str(error)


def test_append_adds_new_ids_and_refuses_repeated_ones(store, tmp_path):
    import_path(store, _write(tmp_path / "d.jsonl", _rows(["A>B"])), ImportOptions(dataset="d"))
    more = [{**r, "id": f"m{i}"} for i, r in enumerate(_rows(["B>A", "tie"]))]
    report = import_path(
        store, _write(tmp_path / "more.jsonl", more), ImportOptions(dataset="d", mode="append")
    )
    assert report.instances == 2 and store.count_instances() == 3
    error = _refused(store, tmp_path / "more.jsonl", dataset="d", mode="append")
    assert "id 'm0' is already in dataset 'd'" in str(error)


def test_replace_swaps_the_contents_and_leaves_other_datasets_alone(store, tmp_path):
    import_path(
        store, _write(tmp_path / "d.jsonl", _rows(["A>B", "B>A"])), ImportOptions(dataset="d")
    )
    import_path(store, _write(tmp_path / "o.jsonl", _rows(["tie"])), ImportOptions(dataset="o"))
    other = _verdicts(store, "o")
    fresh = [{**r, "id": f"n{i}"} for i, r in enumerate(_rows(["tie"] * 3))]
    report = import_path(
        store, _write(tmp_path / "new.jsonl", fresh), ImportOptions(dataset="d", mode="replace")
    )
    assert (report.instances, report.replaced) == (3, 2)
    assert _verdicts(store, "d") == {"n0": 0, "n1": 0, "n2": 0}
    assert _verdicts(store, "o") == other
    hits = store.conn.execute(
        "SELECT count(*) FROM instances_fts WHERE instances_fts MATCH 'a0'"
    ).fetchone()[0]
    assert hits == 2  # the new d's r0 text and o's; the old d's row left the index


def test_a_failed_replace_keeps_the_old_contents(store, tmp_path):
    import_path(
        store, _write(tmp_path / "d.jsonl", _rows(["A>B", "B>A"])), ImportOptions(dataset="d")
    )
    bad = _rows(["A>B", "A>>>B"])
    _refused(store, _write(tmp_path / "bad.jsonl", bad), dataset="d", mode="replace")
    assert _verdicts(store, "d") == {"r0": -1, "r1": 1}


# ---- the CLI contract -------------------------------------------------------------------------


def test_cli_import_json_has_the_contracted_fields_and_refusals_exit_2(tmp_path):
    ws = str(tmp_path / "ws")
    rows = _rows([0, 1, 2])
    rows[0]["response_b"] = ""
    path = _write(tmp_path / "t.jsonl", rows)
    refused = curator("import", str(path), "-w", ws, "--preset", "pairwise", code=2)
    assert "holds only the codes {0, 1, 2}" in refused.output
    assert Store.open(Workspace(Path(ws))).list_datasets() == []
    result = curator("import", str(path), "-w", ws, "--values", "label:0=A,1=B,2=tie", "--json")
    report = json.loads(result.stdout)
    assert {k: report[k] for k in ("instances", "labels", "empty_responses")} == {
        "instances": 3,
        "labels": 3,
        "empty_responses": 1,
    }
    assert (report["kept_in_metadata"], report["ignored"], report["skipped"]) == (
        ["scenario"],
        [],
        [],
    )
    again = curator("import", str(path), "-w", ws, "--values", "label:0=A,1=B,2=tie", code=2)
    assert "already exists" in again.output and len(again.output.strip().splitlines()) == 1
    curator("import", str(path), "-w", ws, "--values", "label:0=A,1=B,2=tie", "--replace")
    curator("import", str(path), "-w", ws, "--append", "--replace", code=2)


# ---- every preset survives a native round trip ------------------------------------------------

_TURNS = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
# One good record per schema preset, with an empty response wherever the schema has one.
PRESET_SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "pairwise": ({"id": "x", "prompt": "p", "response_a": "a", "response_b": "", "label": "A>B",
                  "helpful": -1, "note": "kept"}, {}),
    "trl": ({"prompt": "p", "chosen": "good", "rejected": ""}, {}),
    "multipref": ({**_multipref_row(), "completion_b": ""}, {}),
    "hh-rlhf": ({"chosen": "\n\nHuman: hi\n\nAssistant: yes",
                 "rejected": "\n\nHuman: hi\n\nAssistant: "}, {}),
    "ultrafeedback": ({"prompt": "t", "prompt_id": "h", "score_chosen": 8.0, "score_rejected": 2.0,
                       "chosen": [_TURNS[0], {"role": "assistant", "content": "good"}],
                       "rejected": [_TURNS[0], {"role": "assistant", "content": ""}]}, {}),
    "multipref-gpt4": ({"comparison_id": "c", "prompt_id": "p", "prompt": "q",
                        "chosen": _TURNS, "rejected": [_TURNS[0], {"role": "assistant", "content": "b"}],
                        "chosen_model": "m1", "rejected_model": "m2"}, {}),
    "multipref-human": ({"comparison_id": "c", "prompt_id": "p", "prompt": "q",
                         "chosen": _TURNS, "rejected": [_TURNS[0], {"role": "assistant", "content": ""}],
                         "chosen_model": "m1", "rejected_model": "m2"}, {}),
    "helpsteer2": ({"prompt": "p", "response_1": "a", "response_2": "", "preference_strength": -2}, {}),
    "pandalm": ({"idx": 0, "motivation_app": "Notes", "cmp_key": "m1_m2", "instruction": "Sum up.",
                 "input": "milk", "response1": "Milk.", "response2": "", "annotator1": 1,
                 "annotator2": 2, "annotator3": 0}, {}),
    "llmbar": ({"input": "q", "output_1": "a", "output_2": "", "label": 2, "subset": "Natural",
                "idx": 0}, {}),
    "sft": ({"messages": _TURNS, "source": "s"}, {}),
    "alpaca": ({"instruction": "do", "input": "", "output": "done"}, {}),
    "prompt-completion": ({"prompt": "p", "completion": "c"}, {}),
    "wildjailbreak": ({"vanilla": "v", "adversarial": "adv", "completion": "c",
                       "data_type": "adversarial_harmful"}, {}),
    "rewardbench": ({"id": 1, "prompt": "p", "chosen": "c", "rejected": "", "subset": "s"}, {}),
    # another tool's codes, read through a value map, survive the trip as labels on -2..2
    "pairwise:codes": ({"prompt": "p", "response_a": "a", "response_b": "b", "label": 2},
                       {"values": {"label": {"0": "A", "1": "B", "2": "tie"}}}),
}  # fmt: skip


def test_every_schema_preset_has_a_round_trip_sample():
    from curation.native_format import MARKERS
    from curation.presets import PRESETS

    covered = {name.split(":")[0] for name in PRESET_SAMPLES}
    assert covered == set(PRESETS) - set(MARKERS)


@pytest.mark.parametrize("name", sorted(PRESET_SAMPLES))
def test_a_preset_import_survives_a_native_export_and_reimport(store, tmp_path, name):
    """Import with the preset, export natively, import again: the same instances and labels
    (empty responses and value-mapped codes included)."""
    from test_export import _snapshot as dataset_snapshot

    record, options = PRESET_SAMPLES[name]
    preset = name.split(":")[0]
    path = _write(tmp_path / "in.jsonl", [record])
    first = import_path(store, path, ImportOptions(dataset="first", preset=preset, **options))
    assert first.instances == 1
    native = tmp_path / "native.jsonl"
    export_dataset(store, "first", "jsonl", native, shape="native")
    again = import_path(store, native, ImportOptions(dataset="again"))
    assert again.preset.startswith("curator") and again.annotations == first.annotations
    assert dataset_snapshot(store, "again") == dataset_snapshot(store, "first")
