"""Annotation queues: assignment with overlap, blind labelling, drafts, skip, back and submit."""

from __future__ import annotations

from collections import Counter

import pytest

from curation import queues
from curation.errors import CuratorError
from curation.records import Annotation, Instance
from curation.store import InstanceFilter, Store
from curation.users import PermissionDenied, add_user

PASSWORD = "long enough password"
pytestmark = pytest.mark.usefixtures("cheap_password_hashing")


def _dataset(store: Store, n: int = 6, name: str = "prefs") -> list[int]:
    ds = store.create_dataset(name, "preference")
    return store.insert_instances(
        ds["id"],
        [
            Instance(
                uid=f"{name}-{i}",
                prompt=f"prompt {i}",
                response_a="a",
                response_b="b",
                domain=("math", "code")[i % 2],
            )
            for i in range(n)
        ],
    )


def _team(store: Store, *names: str, curator: str | None = None):
    people = [add_user(store, n, "annotator", PASSWORD) for n in names]
    if curator:
        people.append(add_user(store, curator, "curator", PASSWORD))
    return people


def _label(overall: int = -1, **kw) -> Annotation:
    # annotator fields are overwritten by the queue: a label is always the logged-in user's
    return Annotation("lm", "whoever", overall=overall, **kw)


def test_each_instance_goes_to_overlap_distinct_annotators_with_balanced_loads(store):
    """9 instances x overlap 2 over 3 people: 6 each, every instance to 2 different people."""
    ids = _dataset(store, 9)
    _team(store, "ana", "bo", "cy")
    counts = queues.assign(store, "prefs", ["ana", "bo", "cy"], overlap=2)
    assert counts == {
        "instances": 9,
        "created": 18,
        "skipped_existing": 0,
        "per_user": {"ana": 6, "bo": 6, "cy": 6},
    }
    rows = store.conn.execute("SELECT instance_id, user_id FROM assignments").fetchall()
    per_instance = Counter(r[0] for r in rows)
    assert set(per_instance) == set(ids) and set(per_instance.values()) == {2}
    assert len(set(map(tuple, rows))) == len(rows)


def test_assignment_balances_against_work_already_pending(store):
    """Someone with a full queue gets fewer new items."""
    _dataset(store, 4, "first")
    _dataset(store, 6, "second")
    _team(store, "ana", "bo")
    queues.assign(store, "first", ["ana"])
    counts = queues.assign(store, "second", ["ana", "bo"])
    assert counts["per_user"] == {"ana": 1, "bo": 5}


def test_assigning_again_never_duplicates_and_counts_what_exists(store):
    _dataset(store, 5)
    _team(store, "ana", "bo")
    queues.assign(store, "prefs", ["ana", "bo"], overlap=2)
    again = queues.assign(store, "prefs", ["ana", "bo"], overlap=2)
    assert again["created"] == 0 and again["skipped_existing"] == 10
    assert store.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] == 10


def test_assign_validates_overlap_people_and_instances(store):
    _dataset(store, 3)
    _dataset(store, 2, "other")
    _team(store, "ana")
    with pytest.raises(CuratorError, match="overlap 2"):
        queues.assign(store, "prefs", ["ana"], overlap=2)
    with pytest.raises(CuratorError, match="no user"):
        queues.assign(store, "prefs", ["ana", "ghost"])
    other_id = store.conn.execute("SELECT max(id) FROM instances").fetchone()[0]
    with pytest.raises(CuratorError, match="not in dataset"):
        queues.assign(store, "prefs", ["ana"], instance_ids=[other_id])
    assert store.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] == 0


def test_assign_by_filter_ids_and_limit(store):
    ids = _dataset(store, 6)
    (ana,) = _team(store, "ana")
    counts = queues.assign(store, "prefs", ["ana"], flt=InstanceFilter(domains=["math"]), limit=2)
    assert counts["instances"] == 2
    assert [i.instance_id for i in queues.queue(store, ana)] == [ids[0], ids[2]]
    queues.assign(store, "prefs", ["ana"], instance_ids=[ids[5], ids[1]], origin="route_plan")
    items = queues.queue(store, ana)
    assert [i.instance_id for i in items] == [ids[0], ids[2], ids[5], ids[1]]
    assert [i.position for i in items] == [0, 1, 2, 3]
    assert items[-1].origin == "route_plan"


def test_submit_marks_done_returns_the_next_item_and_counts_progress(store):
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    first = queues.next_item(store, ana)
    assert first.instance_id == ids[0] and first.status == "pending"
    nxt = queues.submit(store, ana, ids[0], _label(-2, justification="A is right"))
    assert nxt.instance_id == ids[1]
    assert queues.progress(store, ana) == (1, 3)
    assert queues.queue(store, ana)[0].status == "done"
    stored = store.annotations_for(ids[0])
    assert [(a["annotator_kind"], a["annotator"], a["overall"]) for a in stored] == [
        ("human", "ana", -2)
    ]
    summary = store.conn.execute(
        "SELECT n_human, human_verdict FROM instance_summary WHERE instance_id = ?", (ids[0],)
    ).fetchone()
    assert tuple(summary) == (1, -1)
    queues.submit(store, ana, ids[1], _label())
    assert queues.submit(store, ana, ids[2], _label()) is None
    assert queues.progress(store, ana) == (3, 3)


def test_annotator_cannot_label_an_instance_outside_their_queue(store):
    ids = _dataset(store, 2)
    ana, bo, boss = _team(store, "ana", "bo", curator="boss")
    queues.assign(store, "prefs", ["ana"], instance_ids=[ids[0]])
    with pytest.raises(PermissionDenied):
        queues.submit(store, bo, ids[0], _label())
    with pytest.raises(PermissionDenied):
        queues.save_draft(store, bo, ids[0], _label())
    assert store.annotations_for(ids[0], include_drafts=True) == []
    queues.submit(store, boss, ids[1], _label(1))  # curators may label anything
    assert store.annotations_for(ids[1])[0]["annotator"] == "boss"


def test_annotators_see_only_their_own_labels_and_curators_see_all(store):
    """Blind annotation: before and after submitting, an annotator sees no one else's label."""
    ids = _dataset(store, 1)
    ana, bo, boss = _team(store, "ana", "bo", curator="boss")
    store.add_annotations([(ids[0], Annotation("lm", "judge", overall=2))])
    queues.assign(store, "prefs", ["ana", "bo"], overlap=2)
    assert queues.visible_labels(store, bo, ids[0]) == []
    queues.submit(store, ana, ids[0], _label(-2))
    assert queues.visible_labels(store, bo, ids[0]) == []
    queues.submit(store, bo, ids[0], _label(1))
    assert [a["annotator"] for a in queues.visible_labels(store, bo, ids[0])] == ["bo"]
    assert [a["annotator"] for a in queues.visible_labels(store, ana, ids[0])] == ["ana"]
    seen = {
        (a["annotator_kind"], a["annotator"]) for a in queues.visible_labels(store, boss, ids[0])
    }
    assert seen == {("human", "ana"), ("human", "bo"), ("lm", "judge")}


def test_a_draft_survives_a_new_connection_and_stays_out_of_the_summary(store, workspace):
    """A page reload opens a new Store; the half-done label is still there."""
    ids = _dataset(store, 1)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    queues.save_draft(store, ana, ids[0], Annotation("human", "ana", justification="thinking"))
    queues.save_draft(store, ana, ids[0], _label(1, justification="B, I think"))
    with Store.open(workspace) as reopened:
        draft = queues.load_draft(reopened, ana, ids[0])
        assert draft.status == "draft" and draft.overall == 1
        assert draft.justification == "B, I think"
        assert reopened.annotations_for(ids[0]) == []
        assert queues.progress(reopened, ana) == (0, 1)


def test_a_draft_never_overwrites_a_submitted_label(store):
    ids = _dataset(store, 1)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    queues.submit(store, ana, ids[0], _label(-1))
    queues.save_draft(store, ana, ids[0], _label(2))
    kept = queues.load_draft(store, ana, ids[0])
    assert (kept.status, kept.overall) == ("submitted", -1)


def test_skipped_items_come_back_only_when_nothing_is_pending(store):
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    assert queues.skip(store, ana, ids[0]).following.instance_id == ids[1]
    assert queues.next_item(store, ana).instance_id == ids[1]
    assert queues.submit(store, ana, ids[1], _label()).instance_id == ids[2]
    back = queues.submit(store, ana, ids[2], _label())
    assert (back.instance_id, back.status) == (ids[0], "skipped")
    assert queues.submit(store, ana, ids[0], _label()) is None
    assert queues.progress(store, ana) == (3, 3)


def test_skip_changes_only_a_pending_item_and_says_whether_it_did(store):
    """Skip puts a pending item aside; on a done or already-skipped item it only moves on."""
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    queues.submit(store, ana, ids[0], _label())
    first = queues.skip(store, ana, ids[0])
    assert (first.put_aside, first.status, first.following.instance_id) == (False, "done", ids[1])
    second = queues.skip(store, ana, ids[1])
    assert (second.put_aside, second.status, second.following.instance_id) == (
        True, "skipped", ids[2]
    )  # fmt: skip
    again = queues.skip(store, ana, ids[1])
    assert (again.put_aside, again.status, again.following.instance_id) == (
        False, "skipped", ids[2]
    )  # fmt: skip
    assert [i.status for i in queues.queue(store, ana)] == ["done", "skipped", "pending"]


def test_back_and_a_jump_change_no_status(store):
    """Going back reads the previous item whatever its status, and changes nothing."""
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    queues.skip(store, ana, ids[0])
    queues.submit(store, ana, ids[1], _label())
    assert queues.previous_item(store, ana, ids[2]).status == "done"
    assert queues.previous_item(store, ana, ids[1]).status == "skipped"
    assert [i.status for i in queues.queue(store, ana)] == ["skipped", "done", "pending"]


def test_items_by_status_lists_a_persons_items_with_their_prompts(store):
    ids = _dataset(store, 4)
    ana, bo = _team(store, "ana", "bo")
    queues.assign(store, "prefs", ["ana"], instance_ids=ids[:3])
    queues.assign(store, "prefs", ["bo"], instance_ids=ids[3:])
    queues.submit(store, ana, ids[1], _label())
    queues.skip(store, ana, ids[2])
    assert queues.status_counts(store, ana) == {"pending": 1, "done": 1, "skipped": 1}
    assert queues.status_counts(store, bo) == {"pending": 1, "done": 0, "skipped": 0}
    done = queues.items_by_status(store, ana, "done", prompt_chars=6)
    assert [(item.instance_id, prompt) for item, prompt in done] == [(ids[1], "prompt")]
    assert [i.instance_id for i, _ in queues.items_by_status(store, ana, "pending")] == [ids[0]]
    with pytest.raises(CuratorError, match="not one of"):
        queues.items_by_status(store, ana, "draft")


def test_next_item_after_a_position_wraps_to_the_start(store):
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    assert queues.next_item(store, ana, after=0).instance_id == ids[1]
    assert queues.next_item(store, ana, after=2).instance_id == ids[0]


def test_going_back_and_editing_an_own_label_keeps_it_done(store):
    """Back shows the previous item; resubmitting edits the label and moves on past it."""
    ids = _dataset(store, 3)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    queues.submit(store, ana, ids[0], _label(-2))
    assert queues.previous_item(store, ana, ids[1]).instance_id == ids[0]
    assert queues.previous_item(store, ana, ids[0]) is None
    prefill = queues.load_draft(store, ana, ids[0])
    assert (prefill.status, prefill.overall) == ("submitted", -2)
    prefill.overall = 2
    assert queues.submit(store, ana, ids[0], prefill).instance_id == ids[1]
    labels = store.annotations_for(ids[0])
    assert [(a["annotator"], a["overall"]) for a in labels] == [("ana", 2)]
    assert queues.progress(store, ana) == (1, 3)


def test_an_invalid_label_is_refused_and_changes_nothing(store):
    ids = _dataset(store, 1)
    (ana,) = _team(store, "ana")
    queues.assign(store, "prefs", ["ana"])
    with pytest.raises(CuratorError, match="at least one aspect"):
        queues.submit(store, ana, ids[0], Annotation("human", "ana"))
    assert queues.progress(store, ana) == (0, 1)


def test_users_by_load_reports_each_persons_work_on_a_dataset(store):
    ids = _dataset(store, 4)
    ana, bo = _team(store, "ana", "bo")
    queues.assign(store, "prefs", ["ana", "bo"])
    queues.submit(store, ana, ids[0], _label())
    rows = {r["name"]: r for r in queues.users_by_load(store, "prefs")}
    assert (rows["ana"]["assigned"], rows["ana"]["done"]) == (2, 1)
    assert (rows["bo"]["assigned"], rows["bo"]["done"], rows["bo"]["pending"]) == (2, 0, 2)


def test_where_text_parses_into_a_filter_and_bad_keys_are_refused():
    flt = InstanceFilter.parse(
        "domain=math|code,source=x,search=prime numbers,has_human=no,agreement=disagree,"
        "human_verdict=A",
        dataset="d",
    )
    assert flt.domains == ["math", "code"] and flt.sources == ["x"]
    assert flt.search == "prime numbers" and flt.has_human is False
    assert flt.agreement is False and flt.human_verdict == -1 and flt.dataset == "d"
    with pytest.raises(CuratorError, match="unknown filter key 'colour'"):
        InstanceFilter.parse("colour=red")
    with pytest.raises(CuratorError, match="expected one of"):
        InstanceFilter.parse("has_lm=maybe")
    with pytest.raises(CuratorError, match="key=value"):
        InstanceFilter.parse("domain")


def _plan(store: Store, ids: list[int], human: dict[int, float]) -> int:
    """A route plan as the router will store it: human targets with their gains, LM for the rest."""
    with store.write():
        cur = store.conn.execute(
            "INSERT INTO route_plans(dataset_id, method, budget) "
            "SELECT dataset_id, 'topk', 0.5 FROM instances WHERE id = ?",
            (ids[0],),
        )
        plan_id = cur.lastrowid
        store.conn.executemany(
            "INSERT INTO route_plan_items(plan_id, instance_id, target, gain) VALUES (?, ?, ?, ?)",
            [(plan_id, i, "human" if i in human else "lm", human.get(i)) for i in ids],
        )
    return plan_id


def test_a_route_plan_queues_only_its_human_items_highest_gain_first(store):
    """Plan items routed to the LM stay out of the queue; the queue order follows the gain."""
    ids = _dataset(store, 6)
    (ana,) = _team(store, "ana")
    plan_id = _plan(store, ids, {ids[4]: 0.9, ids[1]: 0.2, ids[3]: 0.5})
    counts = queues.assign_plan(store, "prefs", plan_id, ["ana"])
    assert counts["created"] == 3
    assert [item.instance_id for item in queues.queue(store, ana)] == [ids[4], ids[3], ids[1]]
    assert {item.origin for item in queues.queue(store, ana)} == {"route_plan"}
    stored = store.conn.execute("SELECT DISTINCT plan_id FROM assignments").fetchall()
    assert [r[0] for r in stored] == [plan_id]


def test_a_plan_without_human_items_or_an_unknown_plan_is_a_user_error(store):
    ids = _dataset(store, 2)
    _team(store, "ana")
    with pytest.raises(CuratorError, match="no instance to humans"):
        queues.assign_plan(store, "prefs", _plan(store, ids, {}), ["ana"])
    with pytest.raises(CuratorError, match="no route plan"):
        queues.assign_plan(store, "prefs", 999, ["ana"])


def test_a_plan_made_for_another_dataset_is_refused_and_queues_nothing(store):
    """A plan's instance ids belong to its own dataset: assigning it under another is an error."""
    ids = _dataset(store, 3)
    _dataset(store, 3, name="other")
    _team(store, "ana")
    plan_id = _plan(store, ids, {ids[0]: 0.5})
    with pytest.raises(CuratorError, match=f"route plan {plan_id} was made for dataset 'prefs'"):
        queues.assign_plan(store, "other", plan_id, ["ana"])
    assert store.conn.execute("SELECT count(*) FROM assignments").fetchone()[0] == 0


def test_escalated_items_are_queued_with_their_origin(store):
    ids = _dataset(store, 4)
    (ana, bo) = _team(store, "ana", "bo")
    queues.assign_escalations(store, "prefs", [ids[2], ids[0]], ["ana", "bo"], overlap=2)
    for person in (ana, bo):
        items = queues.queue(store, person)
        assert [i.instance_id for i in items] == [ids[2], ids[0]]
        assert {i.origin for i in items} == {"escalation"}
