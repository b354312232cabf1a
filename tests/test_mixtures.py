"""Mixtures (curation.mixtures): specs as data, reproducible builds, versions, diff and export,
safety and preference mixtures, and the `curator mix` commands."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curation.demo import DemoConfig, build_demo
from curation.errors import CuratorError
from curation.flags import flag_instance
from curation.mixtures import (
    build_mixture,
    diff_mixtures,
    export_mixture,
    list_mixtures,
    load_spec,
    mixture_rows,
    parse_spec,
    resolve_mixture,
)
from curation.records import Annotation, Instance
from curation.safety import split_count, type_ratios
from curation.store import Store
from curation.workspace import Workspace

WORDS = "river lamp copper violin orbit maple tunnel quartz harbor ember prism walnut".split()
SMALL_DEMO = DemoConfig(sft_per_source=40, safety_per_subset=20)


def sft_dataset(store: Store, name: str, prompts: list[str], source: str | None = None) -> None:
    ds = store.create_dataset(name, "sft")
    store.insert_instances(
        ds["id"],
        [
            Instance(
                uid=f"{name}-{i}",
                prompt=p,
                messages=[
                    {"role": "user", "content": p},
                    {"role": "assistant", "content": f"Answer {i}."},
                ],
                source=source,
            )
            for i, p in enumerate(prompts)
        ],
    )


def random_prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=12)) + f" {seed}-{i}" for i in range(n)]


def spec(**fields) -> object:
    return parse_spec({"name": "mix", "kind": "sft", **fields})


def data_bytes(store: Store, ref: str) -> bytes:
    return (Path(resolve_mixture(store, ref)["path"]) / "data.jsonl").read_bytes()


@pytest.fixture
def demo(store):
    build_demo(store, n_pairs=60, config=SMALL_DEMO)
    return store


# ---- specs -----------------------------------------------------------------------------------


def test_a_decimal_amount_is_a_fraction_and_a_whole_number_a_count():
    """open-instruct's dataset_mixer rule: 1.0 is all of a source, 1 is one row."""
    parsed = parse_spec("name: m\nsources:\n  a: 1.0\n  b: 1\n  c: 0.25\n")
    amounts = {s.name: (s.fraction, s.count) for s in parsed.stages[0].sources}
    assert amounts == {"a": (1.0, None), "b": (None, 1), "c": (0.25, None)}
    assert parse_spec("name: m\ndataset_mixer: {a: 2.5}").stages[0].sources[0].fraction == 2.5


def test_spec_errors_name_the_file_line_and_field(tmp_path):
    """Every problem is listed with where it is, so a curator fixes the file in one go."""
    path = tmp_path / "mix.yaml"
    path.write_text(
        "name: m\n"
        "kind: sft\n"
        "sources:\n"
        "  chat: lots\n"
        "  code:\n"
        "    dataset: demo-sft\n"
        "    fraction: 0.5\n"
        "    count: 10\n"
        "dedupe: true\n"
    )
    with pytest.raises(CuratorError) as info:
        load_spec(path)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert f"{path}:4 [sources.chat]: expected a fraction (like 0.5) or a count" in message
    assert f"{path}:5 [sources.code]: give exactly one of fraction or count" in message
    assert f"{path}:9 [dedupe]: unknown field 'dedupe'" in message


def test_json_specs_are_read_and_checked_like_yaml(tmp_path):
    path = tmp_path / "mix.json"
    path.write_text(
        json.dumps({"name": "m", "kind": "sft", "sources": {"a": 0.5}, "seed": -1}, indent=1)
    )
    with pytest.raises(CuratorError, match=r"mix\.json:\d+ \[seed\]: must be at least 0"):
        load_spec(path)
    path.write_text(json.dumps({"name": "m", "sources": {"a": 0.5}}))
    assert load_spec(path).stages[0].sources[0].fraction == 0.5
    path.write_text("{not json")
    with pytest.raises(CuratorError, match=r"mix\.json:1: not JSON"):
        load_spec(path)


def test_stages_each_carry_their_own_sources():
    parsed = parse_spec(
        {
            "name": "m",
            "stages": [
                {"name": "sft", "sources": {"a": 1.0}},
                {"name": "anneal", "sources": {"a": 0.1, "b": 50}},
            ],
        }
    )
    assert [(s.name, [x.name for x in s.sources]) for s in parsed.stages] == [
        ("sft", ["a"]),
        ("anneal", ["a", "b"]),
    ]
    with pytest.raises(CuratorError, match=r"\[stages\[1\]\.name\]: stage name 'x' is used twice"):
        parse_spec({"name": "m", "stages": [{"name": "x", "sources": {"a": 1.0}}] * 2})


def test_a_mixture_name_must_make_a_folder_name():
    with pytest.raises(CuratorError, match=r"\[name\]: '\.\./evil'"):
        parse_spec({"name": "../evil", "sources": {"a": 1.0}})


# ---- building --------------------------------------------------------------------------------


def test_fractions_counts_and_upsampling_draw_the_expected_rows(store):
    sft_dataset(store, "a", random_prompts(40, 1))
    sft_dataset(store, "b", random_prompts(30, 2))
    sft_dataset(store, "c", random_prompts(20, 3))
    result = build_mixture(store, spec(sources={"a": 0.5, "b": 1.5, "c": 7}, dedup=False))
    ids = Counter((r["source"], r["instance_id"]) for r in mixture_rows(store, result.ref))
    per_source = Counter(source for source, _ in ids.elements())
    assert per_source == {"a": 20, "b": 45, "c": 7}
    b_counts = Counter(n for (source, _), n in ids.items() if source == "b")
    assert b_counts == {1: 15, 2: 15}  # every row once, half of them twice
    assert all(n == 1 for (source, _), n in ids.items() if source in ("a", "c"))
    drawn = {s["source"]: s["drawn"] for s in result.manifest["stages"][0]["sources"]}
    assert drawn == {"a": 20, "b": 45, "c": 7}


def test_the_same_spec_rebuilds_the_same_bytes(demo, tmp_path):
    """The content hash is the sha256 of data.jsonl, and rebuilding, here or in a workspace
    built the same way, writes the same bytes."""
    mix = spec(seed=5, sources={"demo-sft": 0.6}, decontaminate={"against": ["demo-eval"]})
    first = build_mixture(demo, mix)
    again = build_mixture(demo, mix, new_version=True)
    assert again.mixture["version"] == first.mixture["version"] + 1
    data = data_bytes(demo, first.ref)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == first.manifest["content_hash"]
    assert data_bytes(demo, again.ref) == data
    with Store.open(Workspace(tmp_path / "other").ensure()) as other:
        build_demo(other, n_pairs=60, config=SMALL_DEMO)
        elsewhere = build_mixture(other, mix)
        assert data_bytes(other, elsewhere.ref) == data
        assert elsewhere.manifest["content_hash"] == first.manifest["content_hash"]


def test_rebuilding_an_unchanged_spec_returns_the_latest_version(demo):
    mix = spec(sources={"demo-sft": 0.3})
    first = build_mixture(demo, mix)
    second = build_mixture(demo, mix)
    assert second.reused and second.ref == first.ref == "mix@1"
    assert [m["ref"] for m in list_mixtures(demo)] == ["mix@1"]


def test_another_seed_draws_other_rows_and_diff_shows_it(demo):
    build_mixture(demo, spec(seed=1, sources={"demo-sft": 0.5}))
    build_mixture(demo, spec(seed=2, sources={"demo-sft": 0.5}))
    diff = diff_mixtures(demo, "mix@1", "mix@2")
    assert diff["spec_changes"] == [{"field": "seed", "a": 1, "b": 2}]
    assert not diff["same_content"]
    assert diff["rows"]["a"] == diff["rows"]["b"]
    assert 0 < diff["rows"]["only_b"] < diff["rows"]["b"]


def test_diff_reports_rows_per_source(demo):
    build_mixture(demo, spec(sources={"demo-sft": 0.5}))
    build_mixture(demo, spec(sources={"demo-sft": 0.5, "demo-safety": 10}))
    diff = diff_mixtures(demo, "mix", "mix@1")
    changes = {c["source"]: c["change"] for c in diff["composition"]}
    assert changes == {"demo-safety": -10, "demo-sft": 0}


def test_asking_for_more_rows_than_a_source_has_names_the_field(store):
    sft_dataset(store, "a", random_prompts(5, 1))
    with pytest.raises(CuratorError, match=r"\[sources\.a\]: asks for 9 rows but 'a' has 5"):
        build_mixture(store, spec(sources={"a": 9}))


def test_an_unknown_dataset_or_filter_names_the_field(store):
    sft_dataset(store, "a", random_prompts(5, 1))
    with pytest.raises(CuratorError, match=r"\[sources\.b\.dataset\]: no dataset named 'b'"):
        build_mixture(store, spec(sources={"b": 1.0}))
    with pytest.raises(CuratorError, match=r"\[sources\.x\.where\]: unknown filter key 'colour'"):
        build_mixture(
            store, spec(sources={"x": {"dataset": "a", "where": "colour=red", "count": 1}})
        )


def test_duplicates_in_and_across_sources_are_dropped_and_reported(store):
    prompts = random_prompts(20, 1)
    sft_dataset(store, "a", [*prompts, prompts[0].upper()])  # a reformatted copy within a
    sft_dataset(store, "b", [prompts[1], *random_prompts(5, 2)])  # a copy of a's row across
    mix = spec(sources={"a": 1.0, "b": 1.0}, dedup={"near": False, "on": "prompt"})
    result = build_mixture(store, mix)
    dedup = result.manifest["stages"][0]["dedup"]
    assert dedup["by_source"] == {
        "a": {"exact": 1, "near": 0, "within": 1, "across": 0},
        "b": {"exact": 1, "near": 0, "within": 0, "across": 1},
    }
    assert result.manifest["rows"] == 25  # 21 + 6 rows, less the two copies
    folder = Path(result.mixture["path"])
    dropped = [json.loads(line) for line in (folder / "reports" / "dedup.jsonl").open()]
    assert {(d["source"], d["duplicate_of_source"]) for d in dropped} == {("a", "a"), ("b", "a")}


def test_planted_eval_copies_are_removed_from_the_mixture(demo):
    """The demo plants SFT rows that copy demo-eval prompts; decontamination removes each one."""
    planted = {
        i
        for i, inst in demo.iter_instances("demo-sft")
        if inst.metadata.get("contaminated_from") == "demo-eval"
    }
    assert planted
    result = build_mixture(
        demo, spec(sources={"demo-sft": 1.0}, dedup=False, decontaminate={"against": ["demo-eval"]})
    )
    kept = {r["instance_id"] for r in mixture_rows(demo, result.ref)}
    assert not planted & kept
    report = result.manifest["stages"][0]["decontamination"]
    assert report["flagged_sources"] == ["demo-sft"]
    matches = [
        json.loads(line)
        for line in (Path(result.mixture["path"]) / "reports" / "decontamination.jsonl").open()
    ]
    assert planted <= {m["instance_id"] for m in matches}
    assert all(m["removed"] for m in matches)


def test_drop_source_removes_a_flagged_source_whole_and_report_removes_nothing(store):
    evals = random_prompts(40, 9)
    sft_dataset(store, "evalset", evals)
    sft_dataset(store, "leaky", [*random_prompts(10, 1), evals[0], evals[1]])
    sft_dataset(store, "clean", random_prompts(10, 2))
    base = {"sources": {"leaky": 1.0, "clean": 1.0}, "dedup": False}
    removed = build_mixture(store, spec(**base, decontaminate={"against": ["evalset"]}))
    dropped = build_mixture(
        store,
        spec(**base, decontaminate={"against": ["evalset"], "action": "drop_source"}),
        dry_run=True,
    )
    reported = build_mixture(
        store,
        spec(**base, decontaminate={"against": ["evalset"], "action": "report"}),
        dry_run=True,
    )
    assert removed.manifest["composition"] == {"clean": 10, "leaky": 10}
    assert dropped.manifest["composition"] == {"clean": 10}
    assert reported.manifest["composition"] == {"clean": 10, "leaky": 12}
    assert reported.manifest["stages"][0]["decontamination"]["flagged_sources"] == ["leaky"]


def test_eval_files_next_to_the_spec_are_decontamination_targets(store, tmp_path):
    evals = random_prompts(10, 9)
    (tmp_path / "evals.jsonl").write_text(
        "".join(json.dumps({"question": q}) + "\n" for q in evals)
    )
    sft_dataset(store, "a", [*random_prompts(10, 1), evals[3]])
    (tmp_path / "mix.yaml").write_text(
        "name: m\nsources: {a: 1.0}\ndecontaminate:\n  against: [evals.jsonl]\n"
    )
    result = build_mixture(store, load_spec(tmp_path / "mix.yaml"))
    assert result.manifest["rows"] == 10
    (evalset,) = result.manifest["eval_sets"]
    assert evalset["instances"] == 10 and evalset["fingerprint"].startswith("sha256:")


# ---- safety mixtures -------------------------------------------------------------------------


def test_a_safety_mixture_follows_the_safety_fraction_and_type_ratios(demo):
    ratios = type_ratios(harmful_share=0.25, adversarial_share=0.5)
    result = build_mixture(
        demo,
        parse_spec(
            {
                "name": "safe",
                "kind": "safety",
                "sources": {"demo-sft": 60},
                "safety": {
                    "dataset": "demo-safety",
                    "fraction": 0.2,
                    "ratios": ratios,
                    "prompts_only": True,
                },
                "dedup": False,
            }
        ),
    )
    rows = mixture_rows(demo, result.ref)
    types = Counter(r["safety_type"] for r in rows)
    assert types.pop(None) == 60  # the general rows
    assert sum(types.values()) == 15  # 20% of 75
    assert dict(types) == {t: n for t, n in split_count(15, ratios).items() if n}
    safety = result.manifest["stages"][0]["safety"]
    assert safety["over_refusal_share"] == 0.75
    assert {r["source"] for r in rows if r["safety_type"]} == {"demo-safety"}


def test_safety_prompts_without_a_completion_are_left_out_unless_asked_for(demo):
    mix = {
        "name": "safe",
        "kind": "safety",
        "sources": {"demo-sft": 20},
        "safety": {"dataset": "demo-safety", "fraction": 0.5},
        "dedup": False,
    }
    result = build_mixture(demo, parse_spec(mix), dry_run=True)
    safety = result.manifest["stages"][0]["safety"]
    assert safety["left_out"]["no_completion"] > 0
    built = build_mixture(demo, parse_spec(mix))
    assert all(r["messages"][-1]["role"] == "assistant" for r in mixture_rows(demo, built.ref))


# ---- preference mixtures ---------------------------------------------------------------------


@pytest.fixture
def labelled(store):
    """Six pairs: human majority, LM only (slight, confident), human tie, LM only (unsure),
    human but flagged, and unlabelled."""
    ds = store.create_dataset("prefs", "preference")
    ids = store.insert_instances(
        ds["id"],
        [
            Instance(uid=f"p{i}", prompt=f"prompt {i}", response_a=f"A{i}", response_b=f"B{i}")
            for i in range(6)
        ],
    )

    def human(name: str, value: int) -> Annotation:
        return Annotation(annotator_kind="human", annotator=name, overall=value)

    def lm(value: int, confidence: float) -> Annotation:
        return Annotation(
            annotator_kind="lm", annotator="judge", overall=value, confidence=confidence
        )

    store.add_annotations(
        [
            (ids[0], human("ann", -2)),
            (ids[0], human("bob", -1)),
            (ids[0], lm(2, 0.99)),
            (ids[1], lm(-1, 0.9)),
            (ids[2], human("ann", 0)),
            (ids[2], lm(2, 0.9)),
            (ids[3], lm(2, 0.55)),
            (ids[4], human("ann", 2)),
        ]
    )
    flag_instance(store, ids[4], None, "broken text")
    return ids


def preference_spec(**preference) -> object:
    return parse_spec(
        {"name": "dpo", "kind": "preference", "sources": {"prefs": 1.0}, "preference": preference}
    )


def test_preference_rows_take_human_labels_where_present_and_lm_otherwise(store, labelled):
    result = build_mixture(store, preference_spec())
    rows = {r["instance_id"]: r for r in mixture_rows(store, result.ref)}
    assert set(rows) == {labelled[0], labelled[1], labelled[3]}
    assert (rows[labelled[0]]["chosen"], rows[labelled[0]]["rejected"]) == ("A0", "B0")  # people
    assert rows[labelled[1]]["chosen"] == "A1"  # the LM, "slightly" collapsed
    assert rows[labelled[3]]["chosen"] == "B3"
    assert rows[labelled[0]] == {
        "prompt": "prompt 0",
        "messages": None,
        "chosen": "A0",
        "rejected": "B0",
        "source": "prefs",
        "instance_id": labelled[0],
    }
    source = result.manifest["stages"][0]["sources"][0]
    assert source["left_out"] == {"flagged": 1, "human_no_verdict": 1, "unlabelled": 1}
    assert source["labels"]["label_origin"] == {"human": 1, "lm": 2}


def test_slight_preferences_can_be_dropped(store, labelled):
    result = build_mixture(store, preference_spec(slight="drop"))
    kept = {r["instance_id"] for r in mixture_rows(store, result.ref)}
    assert kept == {labelled[0], labelled[3]}  # human -2 and -1 leave the clear -2: still A


def test_a_rejected_label_never_counts_and_accepted_only_counts_just_the_accepted(store, labelled):
    """p0's people say A and the judge B. Unreviewed, people decide; with accepted-only and
    nothing accepted, the judge does; once ann's label is accepted, people decide again; and a
    rejected label never counts."""
    from curation import review

    def chosen(**preference) -> str:
        result = build_mixture(store, preference_spec(**preference), new_version=True)
        rows = {r["instance_id"]: r for r in mixture_rows(store, result.ref)}
        return rows[labelled[0]]["chosen"]

    labels = {a["annotator"]: a["id"] for a in store.annotations_for(labelled[0])}
    assert chosen() == "A0"
    assert chosen(accepted_only=True) == "B0"
    review.accept(store, labels["ann"], None)
    assert chosen(accepted_only=True) == "A0"
    review.reject(store, labels["ann"], None, "wrong side")
    review.reject(store, labels["bob"], None, "wrong side")
    assert chosen() == "B0"


def test_trusted_only_keeps_lm_labels_at_or_above_the_threshold(store, labelled):
    from routing.selective import trusted_labels

    result = build_mixture(
        store, preference_spec(trusted_only=True, threshold=0.7), trust=trusted_labels
    )
    kept = {r["instance_id"] for r in mixture_rows(store, result.ref)}
    assert kept == {labelled[0], labelled[1]}
    assert result.manifest["stages"][0]["sources"][0]["left_out"]["lm_untrusted"] == 1


def test_trusted_only_without_trust_or_escalate_is_refused_not_ignored(store, labelled):
    """Curation cannot reach trust or escalate itself: built without the rule, a trusted-only
    spec is a clear error, and the app's build (training.mix_job) supplies the rule."""
    from training.mix_job import build_mixture as build_with_trust

    mix = preference_spec(trusted_only=True, threshold=0.7)
    with pytest.raises(CuratorError, match="trusted_only.*needs trust or escalate"):
        build_mixture(store, mix, dry_run=True)
    assert build_with_trust(store, mix, dry_run=True).manifest["rows"] == 2


def test_a_mixture_takes_any_label_source_and_refuses_unknown_ones(store, labelled):
    """The mixture's labels are curation.pairs' vocabulary: `best` adds nothing gold-less here,
    and a mistyped source names the choices at its place in the spec."""
    assert build_mixture(store, preference_spec(labels="best"), dry_run=True).manifest["rows"] == 3
    with pytest.raises(CuratorError, match=r"\[preference.labels\].*plan:<id>, got 'majority'"):
        preference_spec(labels="majority")


def test_human_only_labels_ignore_the_lm(store, labelled):
    result = build_mixture(store, preference_spec(labels="human"), dry_run=True)
    assert result.manifest["rows"] == 1


# ---- versions, reading and export ------------------------------------------------------------


def test_stages_follow_each_other_in_the_data_file(store):
    sft_dataset(store, "a", random_prompts(10, 1))
    sft_dataset(store, "b", random_prompts(4, 2))
    mix = spec(
        stages=[{"name": "sft", "sources": {"a": 1.0}}, {"name": "anneal", "sources": {"b": 1.0}}],
        dedup=False,
    )
    result = build_mixture(store, mix)
    ranges = [(s["name"], s["start"], s["end"]) for s in result.manifest["stages"]]
    assert ranges == [("sft", 0, 10), ("anneal", 10, 14)]
    assert {r["source"] for r in mixture_rows(store, "mix", stage="anneal")} == {"b"}
    assert [r["source"] for r in mixture_rows(store, "mix")][10:] == ["b"] * 4
    with pytest.raises(CuratorError, match="has no stage 'late'"):
        mixture_rows(store, "mix", stage="late")


def test_mixtures_resolve_by_name_or_name_at_version(store):
    sft_dataset(store, "a", random_prompts(10, 1))
    build_mixture(store, spec(sources={"a": 0.5}))
    build_mixture(store, spec(sources={"a": 0.8}))
    assert resolve_mixture(store, "mix")["version"] == 2
    assert resolve_mixture(store, "mix@1")["version"] == 1
    assert resolve_mixture(store, "mix@v1")["manifest"]["rows"] == 5
    with pytest.raises(CuratorError, match=r"no mixture 'mix@3' .*mixtures: mix@1, mix@2"):
        resolve_mixture(store, "mix@3")
    with pytest.raises(CuratorError, match="must be a number"):
        resolve_mixture(store, "mix@latest")


def test_a_data_file_edited_after_the_build_is_refused(store):
    sft_dataset(store, "a", random_prompts(10, 1))
    result = build_mixture(store, spec(sources={"a": 1.0}))
    path = Path(result.mixture["path"]) / "data.jsonl"
    path.write_bytes(path.read_bytes().replace(b"Answer 1.", b"Answer 2."))
    with pytest.raises(CuratorError, match="no longer matches its content hash"):
        mixture_rows(store, result.ref)


def test_exports_and_the_hf_folder_hold_the_same_rows(store, tmp_path):
    import datasets
    import pyarrow.parquet as pq

    sft_dataset(store, "a", random_prompts(12, 1))
    result = build_mixture(store, spec(sources={"a": 1.0}))
    rows = mixture_rows(store, result.ref)
    export_mixture(store, "mix", "jsonl", tmp_path / "out.jsonl")
    export_mixture(store, "mix", "parquet", tmp_path / "out.parquet")
    export_mixture(store, "mix", "hf", tmp_path / "out-hf")
    assert (tmp_path / "out.jsonl").read_bytes() == data_bytes(store, "mix")
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == rows
    assert datasets.load_from_disk(str(tmp_path / "out-hf")).to_list() == rows
    folder = Path(result.mixture["path"])
    assert datasets.load_from_disk(str(folder / "hf")).to_list() == rows
    assert (
        json.loads((folder / "manifest.json").read_text())["content_hash"]
        == (result.manifest["content_hash"])
    )
    with pytest.raises(CuratorError, match="not an empty folder"):
        export_mixture(store, "mix", "hf", tmp_path / "out-hf")


def test_a_build_job_builds_through_the_job_context(store, workspace):
    from training.jobs import enqueue, get_job
    from training.kinds import JobContext
    from training.mix_job import run_build_job

    sft_dataset(store, "a", random_prompts(10, 1))
    job = get_job(store, enqueue(store, "judge", {}))  # any kind: only the context is used
    result = run_build_job(
        JobContext(store, workspace, job), {"spec": {"name": "m", "sources": {"a": 0.5}}}
    )
    assert result["mixture"] == "m@1" and result["rows"] == 5
    assert resolve_mixture(store, "m")["job_id"] == job.id


# ---- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli():
    from app.cli import cli as app  # the real CLI, with every command module registered

    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=True)

    return run


def test_cli_mix_build_prints_the_manifest_with_its_content_hash(demo, workspace, tmp_path, cli):
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text(
        "name: chat\nsources: {demo-sft: 0.5}\ndecontaminate: {against: [demo-eval]}\n"
    )
    ws = str(workspace.root)
    built = cli("mix", "build", str(spec_file), "--workspace", ws, "--json")
    assert built.exit_code == 0, built.output
    manifest = json.loads(built.output)
    assert manifest["content_hash"] == resolve_mixture(demo, "chat@1")["content_hash"]
    assert manifest["stages"][0]["decontamination"]["enabled"]
    text = cli("mix", "build", str(spec_file), "--workspace", ws, "--new-version")
    assert "built chat@2" in text.output and manifest["content_hash"] in text.output
    listed = json.loads(cli("mix", "list", "--workspace", ws, "--json").output)
    assert [m["ref"] for m in listed] == ["chat@2", "chat@1"]
    shown = json.loads(cli("mix", "show", "chat@1", "--workspace", ws).output)
    assert shown["version"] == 1
    diff = json.loads(cli("mix", "diff", "chat@1", "chat@2", "--workspace", ws, "--json").output)
    assert diff["same_content"] is True
    out = tmp_path / "chat.parquet"
    exported = cli(
        "mix", "export", "chat", "--format", "parquet", "--out", str(out), "--workspace", ws
    )
    assert exported.exit_code == 0 and out.is_file()


def test_cli_mix_build_refuses_a_bad_spec_with_its_location(workspace, tmp_path, cli):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text("name: m\nsources: {a: -1}\n")
    result = cli("mix", "build", str(spec_file), "--workspace", str(workspace.root))
    assert isinstance(result.exception, CuratorError)
    assert "bad.yaml:2 [sources.a]: an amount cannot be negative" in str(result.exception)


def test_cli_decontam_reports_overlap_per_source_and_eval_set(store, workspace, tmp_path, cli):
    evals = random_prompts(20, 9)
    (tmp_path / "evals.jsonl").write_text("".join(json.dumps({"prompt": q}) + "\n" for q in evals))
    sft_dataset(store, "train", [*random_prompts(30, 1), evals[0]], source="web")
    sft_dataset(store, "held", evals[:5])
    result = cli(
        "decontam", "train", "--against", str(tmp_path / "evals.jsonl"), "held",
        "--workspace", str(workspace.root), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    overlap = {(s["source"], s["eval_set"]): s["overlapping"] for s in report["sources"]}
    assert overlap == {("web", "evals"): 1, ("web", "held"): 1}
    assert report["flagged_sources"] == ["web"]


def test_a_background_build_is_a_job_the_worker_runs_to_the_same_bytes(
    demo, workspace, tmp_path, cli, monkeypatch
):
    """`mix build --background` queues a `mix` job; the worker's build writes the same content
    as a build in the foreground."""
    from training import jobs
    from training.worker import Worker, WorkerConfig

    monkeypatch.setenv("CURATOR_NO_AUTO_WORKER", "1")
    spec_file = tmp_path / "mix.yaml"
    spec_file.write_text("name: bg\nsources: {demo-sft: 0.5}\n")
    ws = str(workspace.root)
    queued = cli("mix", "build", str(spec_file), "--workspace", ws, "--background", "--json")
    assert queued.exit_code == 0, queued.output
    job_id = json.loads(queued.output)["job_id"]
    assert Worker(workspace, WorkerConfig(drain=True)).run() == 1
    job = jobs.get_job(demo, job_id)
    assert job.status == "succeeded", job.error
    assert job.result["mixture"] == "bg@1"
    foreground = cli("mix", "build", str(spec_file), "--workspace", ws, "--dry-run", "--json")
    assert json.loads(foreground.output)["content_hash"] == job.result["content_hash"]
