"""Renaming, deleting and emptying a dataset: every table dumped before and after, on a real store.

The workspace has two datasets with labels (human and LM), summaries, flags, queue
assignments, features and search-index entries each; tests add the records that refer to a
dataset (jobs, sweeps, PPMs, route plans, mixtures, runs) where they are about them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from app.state import _USER_KEY
from curation import flags, queues, users
from curation.datasets import (
    clear_dataset_contents,
    dataset_references,
    delete_dataset,
    rename_dataset,
)
from curation.errors import CuratorError
from curation.records import Annotation, Instance
from curation.store import InstanceFilter, Store
from curation.users import PermissionDenied
from curation.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "app" / "Home.py"
IMPORT_PAGE = "views/import_data.py"
Dump = dict[str, list[dict[str, Any]]]


def _fill(store: Store, name: str, word: str) -> int:
    """A dataset of four pairs about ``word``, labelled, flagged, queued and featurised."""
    dataset_id = store.create_dataset(name, "preference")["id"]
    ids = store.insert_instances(
        dataset_id,
        [
            Instance(
                uid=f"{name}-{i}", prompt=f"{word} question {i}", response_a="a", response_b="b"
            )
            for i in range(4)
        ],
    )
    store.add_annotations(
        [(i, Annotation("human", "ann", overall=-1)) for i in ids]
        + [(i, Annotation("lm", "judge", overall=1, confidence=0.9)) for i in ids[:2]]
    )
    flags.flag_instance(store, ids[0], None, "broken text", "typo")
    queues.assign(store, name, ["ann"])
    with store.write():
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor, label) VALUES (?, ?, ?, ?, ?)",
            [(i, "length", 0.5, "lexical", "mid") for i in ids],
        )
    return dataset_id


@pytest.fixture
def ws(tmp_path: Path, cheap_password_hashing) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as store:
        users.add_user(store, "ann", "annotator", "a long enough password")
        _fill(store, "prefs", "zebra")
        _fill(store, "other", "walrus")
    return ws


@pytest.fixture
def store(ws: Workspace):
    with Store.open(ws) as opened:
        yield opened


def _add(store: Store, table: str, **row: Any) -> int:
    row = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}
    with store.write():
        cursor = store.conn.execute(
            f"INSERT INTO {table}({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608
            list(row.values()),
        )
    return int(cursor.lastrowid)


def _job(store: Store, spec: dict, status: str = "succeeded", kind: str = "sweep") -> int:
    return _add(store, "jobs", kind=kind, spec=spec, status=status)


def dump(store: Store) -> Dump:
    """Every row of every table (the search index is checked by searching)."""
    tables = [
        r[0]
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE 'instances_fts%' ORDER BY name"
        )
    ]
    return {
        t: sorted((dict(r) for r in store.conn.execute(f'SELECT * FROM "{t}"')), key=repr)  # noqa: S608
        for t in tables
    }


def without(before: Dump, dataset_id: int) -> Dump:
    """``before`` less every row that belongs to one dataset, table by table."""
    instances = {r["id"] for r in before["instances"] if r["dataset_id"] == dataset_id}
    plans = {r["id"] for r in before["route_plans"] if r["dataset_id"] == dataset_id}
    sweeps = {r["id"] for r in before["sweeps"] if r["dataset_id"] == dataset_id}

    def owned(table: str, row: dict) -> bool:
        if table == "datasets":
            return row["id"] == dataset_id
        if table == "route_plan_items":
            return row["plan_id"] in plans or row["instance_id"] in instances
        if table == "sweep_runs":
            return row["sweep_id"] in sweeps
        if "instance_id" in row:
            return row["instance_id"] in instances
        return table in ("instances", "sweeps", "ppms", "route_plans") and (
            row["dataset_id"] == dataset_id
        )

    return {t: [r for r in rows if not owned(t, r)] for t, rows in before.items()}


def search(store: Store, words: str) -> int:
    return store.count_instances(InstanceFilter(search=words))


def fts_ok(store: Store) -> None:
    store.conn.execute("INSERT INTO instances_fts(instances_fts) VALUES ('integrity-check')")
    assert store.integrity_check() == "ok"


# ---- rename ------------------------------------------------------------------------------------


def test_a_rename_changes_the_name_and_nothing_else(store: Store) -> None:
    """Only the dataset row's name changes; its instances, labels, flags, queues, features and
    search entries are found under the new name."""
    before = dump(store)
    report = rename_dataset(store, "prefs", "prefs-v2")
    after = dump(store)
    assert report == {"renamed": "prefs", "to": "prefs-v2", "id": 1, "updated": {}}
    renamed = [dict(r, name="prefs-v2") if r["name"] == "prefs" else r for r in before["datasets"]]
    assert after == {**before, "datasets": renamed}
    assert store.find_dataset("prefs") is None
    assert store.count_instances(InstanceFilter(dataset="prefs-v2", search="zebra")) == 4
    assert {f["dataset"] for f in flags.open_flags(store, "prefs-v2")} == {"prefs-v2"}
    fts_ok(store)


def test_a_rename_to_a_name_in_use_refuses_and_changes_nothing(store: Store) -> None:
    """Renaming onto an existing dataset says so and leaves both as they were."""
    before = dump(store)
    with pytest.raises(CuratorError, match="'other' already exists"):
        rename_dataset(store, "prefs", "other")
    assert dump(store) == before


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("missing", "fine", "no dataset named 'missing'"),
        ("prefs", "  ", "needs a name"),
        ("prefs", "two\nlines", "printable"),
        ("prefs", "x" * 201, "at most 200"),
        ("prefs", "prefs", "already has that name"),
    ],
)
def test_a_rename_of_a_missing_dataset_or_to_a_bad_name_refuses(
    store: Store, old: str, new: str, message: str
) -> None:
    """Each refusal names what is wrong, and nothing is written."""
    before = dump(store)
    with pytest.raises(CuratorError, match=message):
        rename_dataset(store, old, new)
    assert dump(store) == before


def test_a_rename_rewrites_the_jobs_runs_and_ppms_that_name_it(store: Store) -> None:
    """Job specs, run configs and evaluation keys, and PPM provenance follow the new name, so a
    retried job or a PPM's evaluation still finds the dataset; other names stay as they were."""
    prefs, other = store.dataset("prefs")["id"], store.dataset("other")["id"]
    job = _job(store, {"dataset": "other", "eval_dataset": "prefs", "config": {"runs": 3}})
    queued = _job(store, {"dataset": "prefs"}, status="queued", kind="judge")
    untouched = _job(store, {"dataset": "other"})
    run = _add(
        store,
        "runs",
        kind="reward",
        dataset_id=other,
        config={"dataset": "other", "eval_set": "prefs"},
        evaluation={"rewardbench:prefs": {"overall": 0.7, "dataset": "prefs"}, "loss": 1.0},
    )
    ppm = _add(store, "ppms", dataset_id=other, kind="linear", provenance={"eval_dataset": "prefs"})
    report = rename_dataset(store, "prefs", "bench")
    assert report["updated"] == {
        "jobs.spec": 2,
        "runs.config": 1,
        "runs.evaluation": 1,
        "ppms.provenance": 1,
    }

    def column(table: str, col: str, row_id: int) -> Any:
        sql = f"SELECT {col} FROM {table} WHERE id = ?"  # noqa: S608
        return json.loads(store.conn.execute(sql, (row_id,)).fetchone()[0])

    assert column("jobs", "spec", job) == {
        "dataset": "other",
        "eval_dataset": "bench",
        "config": {"runs": 3},
    }
    assert column("jobs", "spec", queued) == {"dataset": "bench"}
    assert column("jobs", "spec", untouched) == {"dataset": "other"}
    assert column("runs", "config", run) == {"dataset": "other", "eval_set": "bench"}
    assert column("runs", "evaluation", run) == {
        "rewardbench:bench": {"overall": 0.7, "dataset": "bench"},
        "loss": 1.0,
    }
    assert column("ppms", "provenance", ppm) == {"eval_dataset": "bench"}
    assert prefs == store.dataset("bench")["id"]


def test_a_rename_refuses_while_a_mixture_draws_from_it_or_a_job_runs_on_it(store: Store) -> None:
    """A mixture's spec is a hashed record of what it was built from, and a running job reads
    the name as it goes: both refuse the rename, saying which and why; nothing changes."""
    spec = {"stages": [{"name": "main", "sources": {"p": {"dataset": "prefs", "fraction": 1.0}}}]}
    _add(store, "mixtures", name="mix", version=1, kind="preference", spec=spec)
    _job(store, {"dataset": "other"}, status="running")
    before = dump(store)
    with pytest.raises(CuratorError, match=r"mixture mix@1 refer to it.*delete the mixture"):
        rename_dataset(store, "prefs", "renamed")
    with pytest.raises(CuratorError, match=r"job 1 \(sweep, running\).*cancel"):
        rename_dataset(store, "other", "renamed")
    assert dump(store) == before


def test_a_mixture_source_named_for_its_dataset_counts_as_a_reference(store: Store) -> None:
    """Shorthand sources (``prefs: 0.5``), safety blocks and decontamination targets name
    datasets too."""
    for spec in (
        {"sources": {"prefs": 0.5}},
        {"stages": [{"sources": {"a": {"dataset": "other", "count": 1}}}],
         "safety": {"dataset": "prefs"}},
        {"sources": {"a": {"dataset": "other", "count": 1}}, "decontaminate": {"against": ["prefs"]}},
        {"decontaminate": {"against": [{"ref": "prefs", "field": "prompt"}]}},
    ):  # fmt: skip
        _job(store, {"spec": spec}, kind="mix")
    _job(store, {"spec": {"sources": {"prefsx": 0.5, "b": {"dataset": "other"}}}}, kind="mix")
    refs = dataset_references(store, "prefs")
    assert [r.id for r in refs] == [1, 2, 3, 4]
    rename_dataset(store, "prefs", "p2")
    spec = json.loads(store.conn.execute("SELECT spec FROM jobs WHERE id = 1").fetchone()[0])
    assert spec == {"spec": {"sources": {"p2": 0.5}}}


# ---- delete ------------------------------------------------------------------------------------


def test_a_delete_removes_every_row_of_the_dataset_and_nothing_else(store: Store) -> None:
    """Instances, labels, summaries, flags, assignments, features and search entries of the
    dataset go, in one transaction; every other row of every table is as it was."""
    before = dump(store)
    dataset_id = store.dataset("prefs")["id"]
    report = delete_dataset(store, "prefs")
    assert dump(store) == without(before, dataset_id)
    assert report["rows"] == {
        "annotations": 6,
        "assignments": 4,
        "datasets": 1,
        "features": 4,
        "flags": 1,
        "instance_summary": 4,
        "instances": 4,
    }
    assert report["references"] == [] and report["unlinked"] == {}
    assert search(store, "zebra") == 0 and search(store, "walrus") == 4
    assert [d["name"] for d in store.list_datasets()] == ["other"]
    fts_ok(store)


def test_a_delete_refuses_while_records_refer_to_it_and_lists_them(store: Store) -> None:
    """Jobs, sweeps, PPMs, route plans, mixtures and runs block a delete, each named; with force
    the dataset goes with its own sweeps, PPMs and route plans, and what only pointed at it
    (a run, another dataset's sweep scored on it) stays, unlinked."""
    prefs, other = store.dataset("prefs")["id"], store.dataset("other")["id"]
    first = store.conn.execute("SELECT min(id) FROM instances WHERE dataset_id = ?", (prefs,))
    instance = first.fetchone()[0]
    _job(store, {"dataset": "prefs"})
    sweep = _add(store, "sweeps", dataset_id=prefs)
    _add(store, "sweep_runs", sweep_id=sweep, budget=0.5, human_ids="[]", feature_vector="[]")
    scored_on = _add(store, "sweeps", dataset_id=other, eval_dataset_id=prefs)
    _add(store, "ppms", dataset_id=prefs, sweep_id=sweep, kind="linear")
    plan = _add(store, "route_plans", dataset_id=prefs, method="topk", budget=2)
    _add(store, "route_plan_items", plan_id=plan, instance_id=instance, target="human")
    spec = {"sources": {"p": {"dataset": "prefs", "fraction": 1.0}}}
    _add(store, "mixtures", name="mix", version=1, kind="preference", spec=spec)
    run = _add(store, "runs", kind="reward", dataset_id=prefs)
    before = dump(store)
    labels = (
        "job 1 (sweep, succeeded), sweep 1, sweep 2 (as its eval set), PPM 1 (linear), "
        "route plan 1, mixture mix@1, run 1 (reward)"
    )
    with pytest.raises(
        CuratorError, match=re.escape(f"referred to by {labels}; delete those first")
    ):
        delete_dataset(store, "prefs")
    assert dump(store) == before

    report = delete_dataset(store, "prefs", force=True)
    assert ", ".join(r["label"] for r in report["references"]) == labels
    assert report["unlinked"] == {"runs": 1, "sweeps": 1}
    assert {t: report["rows"][t] for t in ("sweeps", "sweep_runs", "ppms", "route_plans")} == {
        "sweeps": 1,
        "sweep_runs": 1,
        "ppms": 1,
        "route_plans": 1,
    }
    assert report["rows"]["route_plan_items"] == 1
    expected = without(before, prefs)
    expected["runs"] = [dict(r, dataset_id=None) for r in expected["runs"]]
    expected["sweeps"] = [
        dict(r, eval_dataset_id=None) if r["id"] == scored_on else r for r in expected["sweeps"]
    ]
    assert dump(store) == expected
    assert store.conn.execute("SELECT count(*) FROM runs WHERE id = ?", (run,)).fetchone()[0] == 1
    fts_ok(store)


def test_a_running_job_blocks_a_delete_even_when_forced(store: Store) -> None:
    """Deleting data under a running job would fail it half-way through its writes."""
    _job(store, {"dataset": "prefs"}, status="running", kind="judge")
    before = dump(store)
    with pytest.raises(CuratorError, match=r"job 1 \(judge, running\) use it"):
        delete_dataset(store, "prefs", force=True)
    assert dump(store) == before


def test_annotators_may_not_rename_or_delete_a_dataset(store: Store) -> None:
    """The data layer checks the signed-in account's role itself."""
    annotator = users.get_user(store, "ann")
    before = dump(store)
    with pytest.raises(PermissionDenied):
        rename_dataset(store, "prefs", "mine", user=annotator)
    with pytest.raises(PermissionDenied):
        delete_dataset(store, "prefs", user=annotator)
    assert dump(store) == before


# ---- clear -------------------------------------------------------------------------------------


def test_clearing_a_dataset_keeps_its_row_and_nothing_else_of_it(store: Store) -> None:
    """Everything per instance goes (with the dataset's route plans and sweeps); the dataset
    row and the other dataset stay, and the dataset takes new instances."""
    dataset_id = store.dataset("prefs")["id"]
    before = dump(store)
    with store.write():
        rows = clear_dataset_contents(store, dataset_id)
    expected = without(before, dataset_id)
    expected["datasets"] = before["datasets"]
    assert dump(store) == expected
    assert "datasets" not in rows and rows["instances"] == 4 and rows["annotations"] == 6
    store.insert_instances(dataset_id, [Instance(uid="prefs-0", prompt="new", response_a="a")])
    assert search(store, "zebra") == 0 and search(store, "new") == 1
    fts_ok(store)


def test_clearing_inside_a_write_that_fails_is_rolled_back_with_it(store: Store) -> None:
    """Called inside a caller's open transaction, the clearing is part of it."""
    before = dump(store)
    with pytest.raises(RuntimeError), store.bulk_load():
        clear_dataset_contents(store, store.dataset("prefs")["id"])
        assert store.count_instances(InstanceFilter(dataset="prefs")) == 0
        raise RuntimeError("the import failed after clearing")
    assert dump(store) == before
    assert search(store, "zebra") == 4


# ---- the command line --------------------------------------------------------------------------


def curator(ws: Workspace, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        input=stdin,
        env={**os.environ, "CURATOR_WORKSPACE": str(ws.root)},
    )


def test_the_cli_lists_renames_and_deletes_datasets(ws: Workspace) -> None:
    """`curator datasets` lists as it always did; rename and delete report in JSON; refusals
    exit 1 with one line; a delete that is not confirmed deletes nothing."""
    listed = curator(ws, "datasets")
    assert (
        listed.returncode == 0 and listed.stdout == "prefs\tpreference\t4\nother\tpreference\t4\n"
    )
    rows = json.loads(curator(ws, "datasets", "--json").stdout)
    assert [(r["name"], r["instances"], r["human_labels"]) for r in rows] == [
        ("prefs", 4, 4),
        ("other", 4, 4),
    ]

    refused = curator(ws, "datasets", "rename", "prefs", "other")
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "error: cannot rename 'prefs': a dataset named 'other' already exists "
        "(choose another name, or delete that dataset first)"
    ]
    renamed = curator(ws, "datasets", "rename", "prefs", "prefs-v2", "--json")
    assert json.loads(renamed.stdout)["to"] == "prefs-v2"

    not_confirmed = curator(ws, "datasets", "delete", "prefs-v2", stdin="n\n")
    assert not_confirmed.returncode == 1
    with Store.open(ws) as store:
        _job(store, {"dataset": "prefs-v2"})
    blocked = curator(ws, "datasets", "delete", "prefs-v2", "--yes")
    assert blocked.returncode == 1 and len(blocked.stderr.splitlines()) == 1
    assert "job 1 (sweep, succeeded)" in blocked.stderr
    deleted = curator(
        ws, "datasets", "-w", str(ws.root), "delete", "prefs-v2", "--force", "-y", "--json"
    )
    assert deleted.returncode == 0, deleted.stderr
    report = json.loads(deleted.stdout)
    assert report["deleted"] == "prefs-v2" and report["rows"]["instances"] == 4
    assert curator(ws, "datasets").stdout == "other\tpreference\t4\n"
    missing = curator(ws, "datasets", "delete", "prefs-v2", "-y")
    assert missing.returncode == 1 and "no dataset named 'prefs-v2'" in missing.stderr


# ---- the app -----------------------------------------------------------------------------------


@pytest.fixture
def page(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The Import page, for a curator: a workspace with accounts needs a signed-in one."""
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    with Store.open(ws) as store:
        users.add_user(store, "cur", "curator", "a long enough password")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.session_state[_USER_KEY] = "cur"
    at.run()
    at.switch_page(IMPORT_PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def names(ws: Workspace) -> list[str]:
    with Store.open(ws) as store:
        return [d["name"] for d in store.list_datasets()]


def test_the_import_page_renames_a_dataset(page: AppTest, ws: Workspace) -> None:
    """Choose, type the new name, press Rename: the page says so and the store has it."""
    page.selectbox(key="datasets_rename_from").set_value("other")
    page.text_input(key="datasets_rename_to").set_value("walruses")
    page.button(key="datasets_rename_go").click().run()
    assert not page.exception
    assert any("Renamed dataset 'other' to 'walruses'" in s.value for s in page.success)
    assert names(ws) == ["prefs", "walruses"]
    page.text_input(key="datasets_rename_to").set_value("prefs")
    page.button(key="datasets_rename_go").click().run()
    assert any("'prefs' already exists" in e.value for e in page.error)


def test_the_import_page_deletes_only_once_the_name_is_typed(page: AppTest, ws: Workspace) -> None:
    """The delete button stays disabled until the dataset's name is typed."""
    page.selectbox(key="datasets_delete_name").set_value("prefs").run()
    assert page.button(key="datasets_delete_go").disabled
    page.text_input(key="datasets_delete_confirm").set_value("pref").run()
    assert page.button(key="datasets_delete_go").disabled
    page.text_input(key="datasets_delete_confirm").set_value("prefs").run()
    page.button(key="datasets_delete_go").click().run()
    assert not page.exception
    assert any("Deleted dataset 'prefs' and its 4 instances" in s.value for s in page.success)
    assert names(ws) == ["other"]


def test_the_import_page_shows_what_blocks_a_delete_and_offers_force(
    page: AppTest, ws: Workspace
) -> None:
    """References are listed; the delete needs "delete anyway" ticked as well as the name."""
    with Store.open(ws) as store:
        _job(store, {"dataset": "prefs"})
    page.run()
    page.selectbox(key="datasets_delete_name").set_value("prefs").run()
    assert any("job 1 (sweep, succeeded)" in w.value for w in page.warning)
    page.text_input(key="datasets_delete_confirm").set_value("prefs").run()
    assert page.button(key="datasets_delete_go").disabled
    page.checkbox(key="datasets_delete_force").check().run()
    page.button(key="datasets_delete_go").click().run()
    assert not page.exception
    assert names(ws) == ["other"]
