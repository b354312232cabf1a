"""Review: people's labels accepted, edited or rejected, with who, when and why; a rejected label
leaves every reader of labels, and each can be asked for accepted labels only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation import review, users
from curation.agreement import load_labels
from curation.errors import CuratorError
from curation.exporter import export_dataset
from curation.records import Annotation, Instance
from curation.store import Store
from curation.users import PermissionDenied
from curation.workspace import Workspace

HOME = Path(__file__).resolve().parents[1] / "app" / "Home.py"


@pytest.fixture
def labelled(store: Store) -> Store:
    """Pairs p0..p2, each labelled A-better by ann and bob, and B-better by a judge on p0."""
    ds = store.create_dataset("d", "preference")
    ids = store.insert_instances(
        ds["id"],
        [Instance(uid=f"p{i}", prompt=f"q{i}", response_a="a", response_b="b") for i in range(3)],
    )
    labels = [(i, Annotation("human", name, overall=-2)) for i in ids for name in ("ann", "bob")]
    labels.append((ids[0], Annotation("lm", "judge", overall=2, confidence=0.9)))
    store.add_annotations(labels)
    users.add_user(store, "rita", "reviewer", "a-long-password")
    users.add_user(store, "ann", "annotator", "a-long-password")
    return store


def _id(store: Store, uid: str, annotator: str) -> int:
    return store.conn.execute(
        "SELECT a.id FROM annotations a JOIN instances i ON i.id = a.instance_id "
        "WHERE i.uid = ? AND a.annotator = ?",
        (uid, annotator),
    ).fetchone()[0]


def _summary(store: Store, uid: str) -> tuple[int, int | None]:
    return tuple(
        store.conn.execute(
            "SELECT s.n_human, s.human_verdict FROM instance_summary s "
            "JOIN instances i ON i.id = s.instance_id WHERE i.uid = ?",
            (uid,),
        ).fetchone()
    )


def test_decisions_are_recorded_with_who_when_and_why(labelled):
    rita = users.get_user(labelled, "rita")
    queue = review.review_queue(labelled, rita, dataset="d")
    assert len(queue) == 6 and {i.annotator for i in queue} == {"ann", "bob"}  # no LM labels
    review.accept(labelled, _id(labelled, "p0", "ann"), rita, "fine")
    review.reject(labelled, _id(labelled, "p0", "bob"), rita, "B is the correct one")
    row = labelled.conn.execute(
        "SELECT review_status, status, reviewed_by, reviewed_at, review_note FROM annotations "
        "WHERE id = ?",
        (_id(labelled, "p0", "bob"),),
    ).fetchone()
    assert tuple(row)[:3] == ("rejected", "rejected", "rita") and row["reviewed_at"]
    assert row["review_note"] == "B is the correct one"
    assert review.review_counts(labelled, "d") == {"unreviewed": 4, "accepted": 1, "rejected": 1}
    assert len(review.review_queue(labelled, rita, dataset="d")) == 4


def test_an_edit_corrects_the_label_accepts_it_and_keeps_the_annotators_values(labelled):
    rita = users.get_user(labelled, "rita")
    label = _id(labelled, "p1", "ann")
    review.edit(labelled, label, rita, {"overall": 1}, "A misses the question")
    review.edit(labelled, label, rita, {"overall": 2})  # a second edit keeps ann's own value
    row = labelled.conn.execute(
        "SELECT overall, review_status, review_original FROM annotations WHERE id = ?", (label,)
    ).fetchone()
    assert (row["overall"], row["review_status"]) == (2, "accepted")
    assert json.loads(row["review_original"]) == {"overall": -2}
    with pytest.raises(CuratorError, match="changes nothing"):
        review.edit(labelled, label, rita, {"overall": 2})


@pytest.mark.parametrize(
    ("who", "label", "error", "message"),
    [
        ("ann", ("p0", "bob"), PermissionDenied, "reviewer"),
        ("rita", ("p0", "judge"), CuratorError, "only people's labels"),
    ],
)
def test_who_may_review_what(labelled, who, label, error, message):
    with pytest.raises(error, match=message):
        review.accept(labelled, _id(labelled, *label), users.get_user(labelled, who))


def test_no_one_reviews_their_own_label_and_a_rejection_needs_a_reason(labelled):
    users.add_user(labelled, "bob", "reviewer", "a-long-password")
    bob = users.get_user(labelled, "bob")
    with pytest.raises(CuratorError, match="their own"):
        review.accept(labelled, _id(labelled, "p0", "bob"), bob)
    assert all(i.annotator != "bob" for i in review.review_queue(labelled, bob, dataset="d"))
    with pytest.raises(CuratorError, match="say why"):
        review.reject(labelled, _id(labelled, "p0", "ann"), bob, "  ")


def test_a_rejected_label_leaves_the_summary_agreement_and_the_export(labelled, tmp_path):
    rita = users.get_user(labelled, "rita")
    for name in ("ann", "bob"):
        review.reject(labelled, _id(labelled, "p2", name), rita, "spam")
    assert _summary(labelled, "p2") == (0, None)
    labels = load_labels(labelled, "d")
    assert len(labels[labels["annotator_kind"] == "human"]) == 4
    report = export_dataset(labelled, "d", "jsonl", tmp_path / "out.jsonl", labels="human")
    exported = [
        json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    assert exported == ["p0", "p1"] and report.skipped == {"unlabelled": 1}


def test_accepted_only_counts_just_the_accepted_labels_where_asked(labelled, tmp_path):
    rita = users.get_user(labelled, "rita")
    review.accept(labelled, _id(labelled, "p0", "ann"), rita)
    review.edit(labelled, _id(labelled, "p1", "bob"), rita, {"overall": 2})
    labels = load_labels(labelled, "d", accepted_only=True)
    people = labels[labels["annotator_kind"] == "human"]
    assert sorted(people["annotator"]) == ["ann", "bob"] and len(labels) == 3  # + the judge
    out = tmp_path / "accepted.jsonl"
    export_dataset(labelled, "d", "jsonl", out, labels="human", accepted_only=True)
    rows = {json.loads(line)["id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert set(rows) == {"p0", "p1"}
    assert rows["p1"]["chosen"] == "b"  # bob's label as edited: B clearly better


def test_a_changed_label_goes_back_to_review_and_the_same_label_keeps_its_review(labelled):
    rita = users.get_user(labelled, "rita")
    review.reject(labelled, _id(labelled, "p0", "ann"), rita, "wrong side")
    instance = labelled.conn.execute("SELECT id FROM instances WHERE uid = 'p0'").fetchone()[0]
    labelled.add_annotations([(instance, Annotation("human", "ann", overall=-2))])  # same again
    state = "SELECT status, review_status FROM annotations WHERE id = ?"
    label = _id(labelled, "p0", "ann")
    assert tuple(labelled.conn.execute(state, (label,)).fetchone()) == ("rejected", "rejected")
    labelled.add_annotations([(instance, Annotation("human", "ann", overall=1))])  # changed
    assert tuple(labelled.conn.execute(state, (label,)).fetchone()) == ("submitted", None)
    assert _summary(labelled, "p0") == (2, 0)  # ann's B and bob's A


def test_the_review_page_accepts_and_rejects_for_a_reviewer(
    labelled, workspace: Workspace, monkeypatch
):
    monkeypatch.setenv("CURATOR_WORKSPACE", str(workspace.root))
    at = AppTest.from_file(HOME, default_timeout=30)
    at.session_state["_curator_user"] = "rita"
    at.run().switch_page("views/review.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric] == ["6", "0", "0"]
    at.button(key="review_accept").click().run()
    assert any("Accepted" in s.value for s in at.success)
    at.button(key="review_reject").click().run()
    assert any("say why" in e.value for e in at.error)
    note = next(k for k in at.session_state if str(k).startswith("review_note_"))
    at.text_input(key=note).set_value("copied from A").run()
    at.button(key="review_reject").click().run()
    assert [m.value for m in at.metric] == ["4", "1", "1"]


def test_routing_labels_leave_out_rejected_ones_and_can_count_accepted_only(labelled):
    """The labels a sweep and the routing proof read (curation.pairs.SplitLabels)."""
    from curation.pairs import LabelConfig, SplitLabels

    rita = users.get_user(labelled, "rita")
    review.reject(labelled, _id(labelled, "p0", "ann"), rita, "no")
    review.reject(labelled, _id(labelled, "p0", "bob"), rita, "no")
    review.accept(labelled, _id(labelled, "p1", "ann"), rita)
    every = SplitLabels.load(labelled, "d")
    accepted = SplitLabels.load(labelled, "d", LabelConfig(accepted_only=True))
    assert every.human.tolist() == [0, -1, -1]  # p0's people were rejected
    assert accepted.human.tolist() == [0, -1, 0]  # only p1 has an accepted label
    assert every.lm.tolist() == accepted.lm.tolist() == [1, 0, 0]  # the judge is not reviewed
