"""The store: schema and migrations, the transactional write path, label summaries, queries."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

import pytest

from curation.errors import CuratorError
from curation.records import Annotation, Instance
from curation.schema import SCHEMA_VERSION
from curation.store import InstanceFilter, Store, fts_query
from curation.workspace import Workspace


def _pairs(store: Store, n: int = 3, dataset: str = "d") -> list[int]:
    ds = store.create_dataset(dataset, "preference", exist_ok=True)
    return store.insert_instances(
        ds["id"],
        [
            Instance(
                uid=f"u{i}",
                prompt=f"prompt {i} about topic{i % 2}",
                response_a="a",
                response_b="b",
                domain=("math", "code")[i % 2],
            )
            for i in range(n)
        ],
    )


def test_new_store_is_migrated_to_the_latest_schema_in_wal_mode(store):
    """A fresh workspace gets every table, WAL journaling and foreign keys."""
    assert store.schema_version() == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    tables = set(store.db.table_names())
    for table in (
        "datasets",
        "instances",
        "annotations",
        "users",
        "features",
        "route_plans",
        "jobs",
        "job_metrics",
        "runs",
        "mixtures",
        "flags",
        "assignments",
        "sweep_runs",
    ):
        assert table in tables


def test_reopening_does_not_reapply_migrations(workspace):
    """Opening an existing workspace keeps its data and version."""
    with Store.open(workspace) as s:
        s.create_dataset("keep", "sft")
    with Store.open(workspace) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.find_dataset("keep")["kind"] == "sft"


def test_a_store_newer_than_the_code_is_refused(workspace):
    """Downgrading the app must not silently write into a newer schema."""
    with Store.open(workspace) as s:
        with s.write():
            s.conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
            )
    with pytest.raises(CuratorError, match="newer"):
        Store.open(workspace)


def test_missing_workspace_is_an_error_when_not_creating(tmp_path):
    with pytest.raises(CuratorError, match="no workspace"):
        Store.open(tmp_path / "absent", create=False)


def test_a_failing_write_leaves_nothing_behind(store):
    """An exception inside write() rolls back everything the body did."""
    with pytest.raises(RuntimeError):
        with store.write():
            _pairs(store, 5)
            raise RuntimeError("boom")
    assert store.stats()["instances"] == 0
    assert store.find_dataset("d") is None


def test_nested_writes_roll_back_only_the_inner_part_when_it_is_caught(store):
    """A nested write is a savepoint: catching its failure keeps the outer work."""
    with store.write():
        ds = store.create_dataset("outer", "preference")
        try:
            with store.write():
                store.insert_instances(
                    ds["id"], [Instance(uid="x", prompt="p", response_a="a", response_b="b")]
                )
                raise ValueError("inner")
        except ValueError:
            pass
    assert store.find_dataset("outer") is not None
    assert store.stats()["instances"] == 0


def test_duplicate_dataset_and_kind_mismatch_are_user_errors(store):
    store.create_dataset("d", "preference")
    with pytest.raises(CuratorError, match="already exists"):
        store.create_dataset("d", "preference")
    with pytest.raises(CuratorError, match="holds preference data"):
        store.create_dataset("d", "sft", exist_ok=True)
    with pytest.raises(CuratorError, match="kind"):
        store.create_dataset("e", "nonsense")


def test_unknown_dataset_error_lists_the_known_ones(store):
    store.create_dataset("alpha", "preference")
    with pytest.raises(CuratorError, match="alpha"):
        store.dataset("beta")


def test_schema_rejects_labels_off_the_scale(store):
    """The CHECK constraints hold even for code that bypasses the dataclasses."""
    (iid,) = _pairs(store, 1)
    with pytest.raises(sqlite3.IntegrityError):
        with store.write():
            store.conn.execute(
                "INSERT INTO annotations(instance_id, annotator_kind, annotator, overall) VALUES (?, 'human', 'x', 3)",
                (iid,),
            )


def test_annotation_validation_names_the_broken_field():
    with pytest.raises(ValueError, match="overall"):
        Annotation("human", "ann", overall=5).validate()
    with pytest.raises(ValueError, match="confidence"):
        Annotation("lm", "judge", overall=1, confidence=1.5).validate()
    with pytest.raises(ValueError, match="at least one aspect"):
        Annotation("human", "ann").validate()


def test_relabelling_replaces_the_annotators_earlier_label(store):
    """One label per annotator and instance: a second submit edits, never duplicates."""
    (iid,) = _pairs(store, 1)
    store.add_annotations([(iid, Annotation("human", "ann", overall=-2))])
    store.add_annotations([(iid, Annotation("human", "ann", overall=1))])
    labels = store.annotations_for(iid)
    assert [(a["annotator"], a["overall"]) for a in labels] == [("ann", 1)]


def test_summary_tracks_majority_lm_verdict_and_agreement(store):
    a, b, c = _pairs(store, 3)
    store.add_annotations(
        [
            (a, Annotation("human", "h1", overall=-2)),
            (a, Annotation("human", "h2", overall=-1)),
            (a, Annotation("human", "h3", overall=2)),
            (a, Annotation("lm", "judge", overall=-1, confidence=0.8)),
            (b, Annotation("human", "h1", overall=1)),
            (b, Annotation("lm", "judge", overall=-2, confidence=0.9)),
            (c, Annotation("lm", "judge", overall=0, confidence=0.5)),
        ]
    )
    rows = {r["id"]: r for r in store.page_instances(InstanceFilter(dataset="d"))}
    assert (
        rows[a]["n_human"],
        rows[a]["human_verdict"],
        rows[a]["lm_verdict"],
        rows[a]["agreement"],
    ) == (3, -1, -1, 1)
    assert (rows[b]["human_verdict"], rows[b]["lm_verdict"], rows[b]["agreement"]) == (1, -1, 0)
    assert (rows[c]["n_human"], rows[c]["human_verdict"], rows[c]["agreement"]) == (0, None, None)
    assert store.count_instances(InstanceFilter(dataset="d", agreement=False)) == 1
    assert store.count_instances(InstanceFilter(dataset="d", has_human=False)) == 1


def test_drafts_do_not_count_as_labels(store):
    (iid,) = _pairs(store, 1)
    store.add_annotations([(iid, Annotation("human", "h1", overall=2, status="draft"))])
    assert store.stats()["annotations"]["human"] == 0
    assert store.annotations_for(iid) == []
    assert len(store.annotations_for(iid, include_drafts=True)) == 1


def test_filters_combine_and_paginate(store):
    _pairs(store, 25)
    flt = InstanceFilter(dataset="d", domains=["math"])
    assert store.count_instances(flt) == 13
    first = store.page_instances(flt, limit=10, offset=0)
    second = store.page_instances(flt, limit=10, offset=10)
    assert len(first) == 10 and len(second) == 3
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    assert store.facet_counts("domain", InstanceFilter(dataset="d")) == {"math": 13, "code": 12}


def test_full_text_search_matches_words_and_treats_syntax_as_text(store):
    _pairs(store, 4)
    assert store.count_instances(InstanceFilter(dataset="d", search="topic1")) == 2
    # FTS operators and quotes typed by a user are searched for, not executed
    for hostile in ['"', "topic1 OR", "prompt:topic1", "'; DROP TABLE instances; --", "NEAR(a b)"]:
        store.count_instances(InstanceFilter(dataset="d", search=hostile))
    assert store.stats()["instances"] == 4
    assert fts_query("  ") is None


def test_search_index_follows_edits_and_deletes(store):
    (iid,) = _pairs(store, 1)
    with store.write():
        store.conn.execute("UPDATE instances SET prompt = 'zebra crossing' WHERE id = ?", (iid,))
    assert store.count_instances(InstanceFilter(search="zebra")) == 1
    store.delete_dataset("d")
    assert store.count_instances(InstanceFilter(search="zebra")) == 0


def test_deleting_a_dataset_cascades_to_its_labels(store):
    (iid,) = _pairs(store, 1)
    store.add_annotations([(iid, Annotation("human", "h", overall=1))])
    store.delete_dataset("d")
    assert store.conn.execute("SELECT count(*) FROM annotations").fetchone()[0] == 0
    assert store.conn.execute("SELECT count(*) FROM instance_summary").fetchone()[0] == 0
    assert store.integrity_check() == "ok"


def test_iter_instances_streams_every_row_in_order(store):
    ids = _pairs(store, 7)
    seen = [i for i, _ in store.iter_instances("d", batch_size=3)]
    assert seen == ids


def _writer(path: str, worker: int, n: int) -> None:
    store = Store.open(path)
    (ds_id,) = [store.dataset("shared")["id"]]
    for k in range(n):
        store.insert_instances(
            ds_id, [Instance(uid=f"w{worker}-{k}", prompt="p", response_a="a", response_b="b")]
        )
    store.close()


def _opener(path: str) -> None:
    Store.open(path).close()


def test_processes_opening_a_fresh_workspace_at_once_migrate_it_once(tmp_path):
    """The app's pages and a CLI command may open a brand-new workspace at the same moment."""
    root = str(tmp_path / "fresh")
    Workspace(root).ensure()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_opener, args=(root,)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 6
    with Store.open(root) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.integrity_check() == "ok"


def test_concurrent_writers_from_processes_lose_nothing(workspace):
    """Several processes writing through write() at once queue on the lock; none fails."""
    with Store.open(workspace) as s:
        s.create_dataset("shared", "preference")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(workspace.root), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store.open(workspace) as s:
        assert s.stats()["instances"] == 160
        assert s.integrity_check() == "ok"


@pytest.mark.parametrize(
    "flt",
    [
        InstanceFilter(),
        InstanceFilter(domains=["math", "code"], human_verdict=-1, agreement=False),
        InstanceFilter(lm_verdict=0, has_human=True, has_lm=False, empty_response=True),
        InstanceFilter(sources=["a b"], subsets=["x"], search="prime numbers"),
    ],
)
def test_a_filters_text_form_reads_back_to_the_same_filter(flt):
    assert InstanceFilter.parse(flt.to_text()) == flt


def test_a_filter_value_the_text_form_cannot_hold_is_refused():
    with pytest.raises(CuratorError, match="cannot"):
        InstanceFilter(domains=["a,b"]).to_text()


def test_the_review_migration_rebuilds_users_and_labels_and_keeps_every_row_and_reference(
    tmp_path,
):
    """A workspace made before review (schema 3) comes up to date with its accounts, queues,
    sessions and labels intact, and the new role and label state accepted by the schema."""
    import sqlite3

    from curation import schema
    from curation.store import _split_sql

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    for version, script in schema.MIGRATIONS:
        if version > 3:
            break
        for statement in _split_sql(script):
            conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', '3')")
    conn.execute("INSERT INTO datasets(name, kind) VALUES ('d', 'preference')")
    conn.execute(
        "INSERT INTO instances(dataset_id, uid, prompt, response_a, response_b) "
        "VALUES (1, 'u', 'p', 'a', 'b')"
    )
    conn.execute("INSERT INTO users(name, role) VALUES ('ann', 'annotator')")
    conn.execute("INSERT INTO assignments(instance_id, user_id) VALUES (1, 1)")
    conn.execute(
        "INSERT INTO sessions(user_id, token_hash, created_at, expires_at) VALUES (1, 'h', 'x', 'y')"
    )
    conn.execute(
        "INSERT INTO annotations(instance_id, annotator_kind, annotator, overall, justification) "
        "VALUES (1, 'human', 'ann', -2, 'A is right')"
    )
    conn.commit()
    conn.close()

    store = Store(path)
    try:
        assert store.migrate() == SCHEMA_VERSION
        q = store.conn.execute
        assert q("SELECT count(*) FROM assignments").fetchone()[0] == 1
        assert q("SELECT count(*) FROM sessions").fetchone()[0] == 1
        label = q(
            "SELECT overall, justification, status, review_status FROM annotations"
        ).fetchone()
        assert tuple(label) == (-2, "A is right", "submitted", None)
        assert q("PRAGMA foreign_keys").fetchone()[0] == 1
        assert q("PRAGMA foreign_key_check").fetchall() == []
        q("UPDATE users SET role = 'reviewer'")  # the new role fits the rebuilt table
        q("DELETE FROM users")  # and the references still cascade
        assert q("SELECT count(*) FROM assignments").fetchone()[0] == 0
    finally:
        store.close()
