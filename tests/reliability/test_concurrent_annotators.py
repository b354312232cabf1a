"""Twenty annotators submitting at once on one workspace: no lost, doubled or failed labels."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
import traceback

import pytest

from curation import queues
from curation.records import Annotation, Instance
from curation.store import Store
from curation.users import add_user, get_user

ANNOTATORS = 20
PER_ANNOTATOR = 500
OVERLAP = 10
INSTANCES = ANNOTATORS * PER_ANNOTATOR // OVERLAP


def _annotate(root: str, name: str, start, results) -> None:
    """One annotator's session: submit until the queue is empty, report count and any error."""
    done, error = 0, None
    try:
        store = Store.open(root, create=False)
        user = get_user(store, name)
        start.wait(timeout=120)
        item = queues.next_item(store, user)
        while item is not None:
            overall = (-2, -1, 0, 1, 2)[(item.instance_id + user.id) % 5]
            label = Annotation("human", name, overall=overall, confidence_level="medium")
            item = queues.submit(store, user, item.instance_id, label)
            done += 1
        store.close()
    except BaseException:  # report everything, "database is locked" above all
        error = traceback.format_exc()
    results.put((name, done, error))


def _reports(results, procs, timeout_s: float = 300.0) -> list:
    """One report per process; fails at once, with the exit codes, when one died without
    reporting (it never got to run its session) instead of waiting out the whole timeout."""
    reports, deadline = [], time.monotonic() + timeout_s
    while len(reports) < len(procs):
        try:
            reports.append(results.get(timeout=1.0))
        except queue.Empty:
            died = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            assert not died, f"annotator processes died without reporting: exit codes {died}"
            assert time.monotonic() < deadline, "the annotators did not finish in time"
    return reports


@pytest.mark.slow
@pytest.mark.usefixtures("cheap_password_hashing")
def test_twenty_annotators_submit_ten_thousand_labels_concurrently(store, workspace):
    ds = store.create_dataset("prefs", "preference")
    store.insert_instances(
        ds["id"],
        [
            Instance(uid=f"p{i}", prompt=f"question {i}", response_a="a", response_b="b")
            for i in range(INSTANCES)
        ],
    )
    names = [f"annotator-{k:02d}" for k in range(ANNOTATORS)]
    for name in names:
        add_user(store, name, "annotator", "long enough password")
    counts = queues.assign(store, "prefs", names, overlap=OVERLAP)
    assert set(counts["per_user"].values()) == {PER_ANNOTATOR}

    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_annotate, args=(str(workspace.root), name, start, results))
        for name in names
    ]
    for p in procs:
        p.start()
    start.set()
    reports = _reports(results, procs)
    for p in procs:
        p.join(timeout=60)

    errors = [f"{name}:\n{error}" for name, _, error in reports if error]
    assert not errors, "\n".join(errors)
    assert sorted(done for _, done, _ in reports) == [PER_ANNOTATOR] * ANNOTATORS
    q = store.conn.execute
    assert q("SELECT count(*) FROM annotations WHERE status = 'submitted'").fetchone()[0] == 10_000
    assert (
        q("SELECT count(DISTINCT instance_id || '/' || annotator) FROM annotations").fetchone()[0]
        == 10_000
    )
    assert q("SELECT count(*) FROM assignments WHERE status != 'done'").fetchone()[0] == 0
    assert q("SELECT count(*) FROM assignments").fetchone()[0] == 10_000
    # every label write refreshed its instance's summary: none was lost to a race
    spread = q("SELECT min(n_human), max(n_human), count(*) FROM instance_summary").fetchone()
    assert tuple(spread) == (OVERLAP, OVERLAP, INSTANCES)
    assert store.integrity_check() == "ok"
