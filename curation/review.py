"""Review: a reviewer (or a curator) accepts, edits or rejects the labels people submitted.

Every decision is recorded on the label itself, with who made it, when, and why: an edit keeps
the values it replaced (``review_original``). A rejected label gets status ``rejected``, so every
reader of submitted labels (agreement, exports, mixtures, routing, the label summary) leaves it
out without a filter of its own; asking for *accepted labels only* is an option in each of
those places (:func:`curation.store.usable_labels_sql`). Reviewing again replaces the earlier decision, and an
annotator who changes a label after review sends it back to the queue (see
:meth:`curation.store.Store.add_annotations`). Only people's labels are reviewed; an LM's labels
are calibrated instead (trust or escalate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from curation.errors import CuratorError
from curation.labels import ASPECTS, SCALE
from curation.store import Store
from curation.users import User, require_role

REVIEWERS = ("curator", "reviewer")
DECISIONS = ("accepted", "rejected")
QUEUE_STATES = ("unreviewed", "accepted", "rejected")


@dataclass(frozen=True)
class ReviewItem:
    """One person's label as a reviewer sees it."""

    annotation_id: int
    instance_id: int
    dataset: str
    annotator: str
    labels: dict[str, int | None]
    justification: str | None
    state: str  # unreviewed, accepted or rejected
    reviewed_by: str | None
    review_note: str | None


def review_queue(
    store: Store,
    reviewer: User | None,
    *,
    dataset: str | None = None,
    state: str = "unreviewed",
    annotator: str | None = None,
    limit: int = 200,
) -> list[ReviewItem]:
    """People's labels in one review state, oldest first; a reviewer never sees their own."""
    if state not in QUEUE_STATES:
        raise CuratorError(f"review state {state!r} is not one of {', '.join(QUEUE_STATES)}")
    clauses = ["a.annotator_kind = 'human'"]
    params: list[Any] = []
    if state == "unreviewed":
        clauses.append("a.status = 'submitted' AND a.review_status IS NULL")
    else:
        clauses.append("a.review_status = ?")
        params.append(state)
    if dataset is not None:
        clauses.append("i.dataset_id = ?")
        params.append(store.dataset(dataset)["id"])
    if annotator:
        clauses.append("a.annotator = ?")
        params.append(annotator)
    if reviewer is not None:
        clauses.append("a.annotator <> ?")
        params.append(reviewer.name)
    # the clauses are fixed text above; every value is a bound parameter
    sql = (
        "SELECT a.*, d.name AS dataset FROM annotations a "  # noqa: S608
        "JOIN instances i ON i.id = a.instance_id JOIN datasets d ON d.id = i.dataset_id "
        f"WHERE {' AND '.join(clauses)} ORDER BY a.updated_at, a.id LIMIT ?"
    )
    rows = store.conn.execute(sql, [*params, int(limit)]).fetchall()
    return [_item(r) for r in rows]


def review_counts(store: Store, dataset: str | None = None) -> dict[str, int]:
    """People's labels per review state (drafts aside)."""
    where, params = "a.annotator_kind = 'human' AND a.status <> 'draft'", []
    if dataset is not None:
        where += " AND i.dataset_id = ?"
        params.append(store.dataset(dataset)["id"])
    sql = (
        "SELECT coalesce(a.review_status, 'unreviewed'), count(*) FROM annotations a "  # noqa: S608
        f"JOIN instances i ON i.id = a.instance_id WHERE {where} GROUP BY 1"
    )
    rows = store.conn.execute(sql, params)
    counts = dict.fromkeys(QUEUE_STATES, 0)
    counts.update(dict(rows.fetchall()))
    return counts


def accept(store: Store, annotation_id: int, reviewer: User | None, note: str = "") -> None:
    """Accept a label as it is."""
    _decide(store, annotation_id, reviewer, "accepted", note)


def reject(store: Store, annotation_id: int, reviewer: User | None, note: str) -> None:
    """Reject a label, saying why: it leaves agreement, exports, mixtures and routing."""
    if not (note or "").strip():
        raise CuratorError("say why the label is rejected (the annotator reads it)")
    _decide(store, annotation_id, reviewer, "rejected", note)


def edit(
    store: Store,
    annotation_id: int,
    reviewer: User | None,
    changes: dict[str, int | None],
    note: str = "",
) -> None:
    """Correct some aspects of a label and accept it; the values replaced are kept."""
    unknown = set(changes) - set(ASPECTS)
    if unknown:
        raise CuratorError(f"not aspects: {', '.join(sorted(unknown))}")
    for aspect, value in changes.items():
        if value is not None and value not in SCALE:
            raise CuratorError(f"{aspect}={value!r} is not on the -2..2 scale")
    with store.write():
        row = _label(store, annotation_id, reviewer)
        before = {a: row[a] for a in changes if row[a] != changes[a]}
        if not before:
            raise CuratorError("the edit changes nothing: accept the label instead")
        if changes.get("overall", row["overall"]) is None and all(
            changes.get(a, row[a]) is None for a in ASPECTS
        ):
            raise CuratorError("an edited label still needs at least one aspect")
        earlier = json.loads(row["review_original"]) if row["review_original"] else {}
        original = {**before, **earlier}  # the annotator's own values, however many edits
        assignments = ", ".join(f"{a} = ?" for a in changes)
        store.conn.execute(
            f"UPDATE annotations SET {assignments}, review_original = ? WHERE id = ?",  # noqa: S608
            [*changes.values(), json.dumps(original, sort_keys=True), annotation_id],
        )
        _record(store, row, reviewer, "accepted", note)


def _decide(
    store: Store, annotation_id: int, reviewer: User | None, decision: str, note: str
) -> None:
    with store.write():
        row = _label(store, annotation_id, reviewer)
        _record(store, row, reviewer, decision, note)


def _label(store: Store, annotation_id: int, reviewer: User | None) -> Any:
    if reviewer is not None:
        require_role(reviewer, *REVIEWERS)
    row = store.conn.execute("SELECT * FROM annotations WHERE id = ?", (annotation_id,)).fetchone()
    if row is None:
        raise CuratorError(f"no label with id {annotation_id}")
    if row["annotator_kind"] != "human":
        raise CuratorError("only people's labels are reviewed (an LM's are calibrated)")
    if row["status"] == "draft":
        raise CuratorError("this label is a draft: it has not been submitted yet")
    if reviewer is not None and row["annotator"] == reviewer.name:
        raise CuratorError("a reviewer does not review their own labels")
    return row


def _record(store: Store, row: Any, reviewer: User | None, decision: str, note: str) -> None:
    store.conn.execute(
        "UPDATE annotations SET review_status = ?, status = ?, reviewed_by = ?, "
        "reviewed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), review_note = ? WHERE id = ?",
        (
            decision,
            "rejected" if decision == "rejected" else "submitted",
            reviewer.name if reviewer else "cli",
            (note or "").strip() or None,
            row["id"],
        ),
    )
    store.refresh_summary([row["instance_id"]])


def _item(row: Any) -> ReviewItem:
    return ReviewItem(
        annotation_id=row["id"],
        instance_id=row["instance_id"],
        dataset=row["dataset"],
        annotator=row["annotator"],
        labels={a: row[a] for a in ASPECTS},
        justification=row["justification"],
        state=row["review_status"] or "unreviewed",
        reviewed_by=row["reviewed_by"],
        review_note=row["review_note"],
    )
