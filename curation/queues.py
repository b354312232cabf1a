"""Annotation queues: who labels what, in which order, and the save/submit/skip of one item.

A curator assigns instances to annotators (each instance to ``overlap`` distinct people, balanced
by their pending load); each annotator works through their own queue, blind to others' labels.
Submitting a label and marking its assignment done is one transaction.

Drafts: the store keeps one label per (instance, person), so a draft and a submitted label cannot
live side by side. A draft saved over an already-submitted label is ignored: the submitted label
stays as it is until the person submits again. Submitting replaces the draft.

Moving through a queue. Each item is ``pending``, ``done`` (the person submitted a label) or
``skipped`` (put aside). Only submitting and skipping a pending item change a status:

- **submit** stores the label, marks the item done, and returns the next item to label;
- **skip** on a *pending* item marks it skipped (it comes back once nothing else is pending); on
  a skipped or done item it changes nothing and just moves on (:func:`skip` says which);
- **back** (:func:`previous_item`) and a jump to any item (:func:`items_by_status`) only move:
  no status changes, and a draft stays saved;
- "the next item to label" (:func:`next_item`) is the first pending item after the current
  position, wrapping to the start, else the first skipped one the same way; done items only
  come back by going back or jumping to them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace
from typing import Any

from curation.errors import CuratorError
from curation.labels import ASPECTS
from curation.pairs import plan_instances
from curation.records import Annotation
from curation.store import InstanceFilter, Store, _chunks
from curation.users import PermissionDenied, User, get_user

QUEUE_STATUSES = ("pending", "done", "skipped")
ORIGINS = ("filter", "route_plan", "escalation")


@dataclass
class QueueItem:
    instance_id: int
    position: int
    status: str  # pending, done or skipped
    origin: str  # filter, route_plan or escalation


_ITEM_COLUMNS = "instance_id, position, status, origin"


def _item(row: Any) -> QueueItem | None:
    return QueueItem(*row) if row else None


# ---- assigning ---------------------------------------------------------------------------------


def _instances_to_assign(
    store: Store,
    dataset_id: int,
    dataset: str,
    flt: InstanceFilter | None,
    instance_ids: list[int] | None,
    limit: int | None,
) -> list[int]:
    """The instances an assignment covers, in queue order: the ids as given, else by id."""
    in_filter: list[int] | None = None
    if flt is not None or instance_ids is None:
        scoped = replace(flt, dataset=dataset) if flt is not None else InstanceFilter(dataset)
        where, params = scoped.where(store)
        in_filter = [
            r[0]
            for r in store.conn.execute(
                f"SELECT i.id {store._FROM} WHERE {where} ORDER BY i.id",  # noqa: S608
                params,
            )
        ]
    if instance_ids is None:
        ids = in_filter or []
    else:
        ids = list(dict.fromkeys(int(i) for i in instance_ids))
        in_dataset: set[int] = set()
        for chunk in _chunks(ids):
            in_dataset.update(
                r[0]
                for r in store.conn.execute(
                    f"SELECT id FROM instances WHERE dataset_id = ? AND id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                    (dataset_id, *chunk),
                )
            )
        stray = [i for i in ids if i not in in_dataset]
        if stray:
            raise CuratorError(
                f"{len(stray)} instance ids are not in dataset {dataset!r} (e.g. {stray[0]})"
            )
        if in_filter is not None:
            keep = set(in_filter)
            ids = [i for i in ids if i in keep]
    if limit is not None:
        if limit < 0:
            raise CuratorError("limit cannot be negative")
        ids = ids[:limit]
    return ids


def assign(
    store: Store,
    dataset: str,
    annotators: list[str],
    *,
    overlap: int = 1,
    flt: InstanceFilter | None = None,
    instance_ids: list[int] | None = None,
    origin: str = "filter",
    plan_id: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Put instances of a dataset into annotators' queues, each into ``overlap`` distinct queues.

    The instances are those matching ``flt`` (all of the dataset when neither ``flt`` nor
    ``instance_ids`` is given), or ``instance_ids`` in their given order (intersected with ``flt``
    when both are given), the first ``limit`` of them. Each goes to the people with the fewest
    pending items (ties: the order of ``annotators``), so the result is deterministic. An
    instance already assigned to some of these people counts toward its overlap and is never
    assigned to them twice, so running the same assignment again adds nothing.

    Returns counts: ``instances`` (covered), ``created`` (new assignments), ``skipped_existing``
    (assignments already there) and ``per_user`` (name -> new assignments).
    """
    names = list(dict.fromkeys(n.strip() for n in annotators if n and n.strip()))
    if not names:
        raise CuratorError("name at least one annotator to assign to")
    if overlap < 1:
        raise CuratorError("overlap must be at least 1")
    if overlap > len(names):
        raise CuratorError(
            f"overlap {overlap} needs at least {overlap} annotators, got {len(names)}"
        )
    if origin not in ORIGINS:
        raise CuratorError(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    ds = store.dataset(dataset)
    people = [get_user(store, n) for n in names]
    ids = _instances_to_assign(store, ds["id"], dataset, flt, instance_ids, limit)
    user_ids = [p.id for p in people]
    marks = ", ".join("?" * len(user_ids))
    created: dict[str, int] = {p.name: 0 for p in people}
    skipped = 0
    with store.write():
        q = store.conn.execute
        stats = {
            r[0]: (r[1], r[2])
            for r in q(
                f"SELECT user_id, coalesce(sum(status = 'pending'), 0), max(position) "  # noqa: S608
                f"FROM assignments WHERE user_id IN ({marks}) GROUP BY user_id",
                user_ids,
            )
        }
        existing: set[tuple[int, int]] = set()
        for chunk in _chunks(ids, 800):
            existing.update(
                (r[0], r[1])
                for r in q(
                    f"SELECT instance_id, user_id FROM assignments "  # noqa: S608
                    f"WHERE user_id IN ({marks}) AND instance_id IN ({', '.join('?' * len(chunk))})",
                    (*user_ids, *chunk),
                )
            )
        pending = {u: stats[u][0] if u in stats else 0 for u in user_ids}
        # New items go after everything already in a queue.
        next_position = [stats[u][1] + 1 if u in stats else 0 for u in user_ids]
        heap = [(pending[u], index) for index, u in enumerate(user_ids)]
        heapq.heapify(heap)
        rows = []
        for instance_id in ids:
            have = sum((instance_id, u) in existing for u in user_ids)
            skipped += have
            picked: list[tuple[int, int]] = []
            held: list[tuple[int, int]] = []
            while len(picked) < overlap - have and heap:
                load, index = heapq.heappop(heap)
                (held if (instance_id, user_ids[index]) in existing else picked).append(
                    (load, index)
                )
            for load, index in picked:
                rows.append((instance_id, user_ids[index], origin, plan_id, next_position[index]))
                next_position[index] += 1
                created[people[index].name] += 1
                heapq.heappush(heap, (load + 1, index))
            for entry in held:
                heapq.heappush(heap, entry)
        store.conn.executemany(
            "INSERT INTO assignments(instance_id, user_id, origin, plan_id, position) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return {
        "instances": len(ids),
        "created": len(rows),
        "skipped_existing": skipped,
        "per_user": created,
    }


def assign_plan(
    store: Store, dataset: str, plan_id: int, annotators: list[str], *, overlap: int = 1
) -> dict[str, Any]:
    """Queue the instances a route plan of ``dataset`` sends to humans (its ``target = 'human'``
    items); a plan made for another dataset is refused.

    The plan's items are taken by descending gain (the instances that benefit most from a
    person come first), and the assignments remember the plan they came from.
    """
    ids = plan_instances(store, plan_id, dataset, "human")
    if not ids:
        raise CuratorError(f"route plan {plan_id} sends no instance to humans")
    return assign(
        store,
        dataset,
        annotators,
        overlap=overlap,
        instance_ids=ids,
        origin="route_plan",
        plan_id=plan_id,
    )


def assign_escalations(
    store: Store, dataset: str, instance_ids: list[int], annotators: list[str], *, overlap: int = 1
) -> dict[str, Any]:
    """Queue the instances LM judges abstained on (trust-or-escalate sends them to people)."""
    return assign(
        store, dataset, annotators, overlap=overlap, instance_ids=instance_ids, origin="escalation"
    )


def users_by_load(store: Store, dataset: str) -> list[dict[str, Any]]:
    """Every user with their assignments in a dataset (assigned, done, pending, skipped),
    most pending first."""
    dataset_id = store.dataset(dataset)["id"]
    rows = store.conn.execute(
        """
        SELECT u.name, u.role, count(a.id) AS assigned,
               coalesce(sum(a.status = 'done'), 0) AS done,
               coalesce(sum(a.status = 'pending'), 0) AS pending,
               coalesce(sum(a.status = 'skipped'), 0) AS skipped
        FROM users u
        LEFT JOIN assignments a ON a.user_id = u.id
             AND a.instance_id IN (SELECT id FROM instances WHERE dataset_id = ?)
        GROUP BY u.id ORDER BY pending DESC, u.name
        """,
        (dataset_id,),
    ).fetchall()
    return [dict(r) for r in rows]


# ---- working through a queue -------------------------------------------------------------------


def queue(store: Store, user: User) -> list[QueueItem]:
    """A user's whole queue in position order."""
    rows = store.conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM assignments WHERE user_id = ? ORDER BY position, id",  # noqa: S608
        (user.id,),
    ).fetchall()
    return [QueueItem(*r) for r in rows]


def progress(store: Store, user: User) -> tuple[int, int]:
    """(done, assigned) over the user's whole queue."""
    row = store.conn.execute(
        "SELECT coalesce(sum(status = 'done'), 0), count(*) FROM assignments WHERE user_id = ?",
        (user.id,),
    ).fetchone()
    return int(row[0]), int(row[1])


def status_counts(store: Store, user: User) -> dict[str, int]:
    """How many of the user's items are pending, done and skipped (every status, 0 when none)."""
    rows = store.conn.execute(
        "SELECT status, count(*) FROM assignments WHERE user_id = ? GROUP BY status", (user.id,)
    ).fetchall()
    counts = dict.fromkeys(QUEUE_STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def items_by_status(
    store: Store, user: User, status: str, *, prompt_chars: int = 80
) -> list[tuple[QueueItem, str]]:
    """The user's items with one status, in queue order, each with the opening of its prompt
    (to pick one to jump to)."""
    if status not in QUEUE_STATUSES:
        raise CuratorError(f"status {status!r} is not one of {', '.join(QUEUE_STATUSES)}")
    rows = store.conn.execute(
        "SELECT a.instance_id, a.position, a.status, a.origin, substr(i.prompt, 1, ?) "
        "FROM assignments a JOIN instances i ON i.id = a.instance_id "
        "WHERE a.user_id = ? AND a.status = ? ORDER BY a.position, a.id",
        (prompt_chars, user.id, status),
    ).fetchall()
    return [(QueueItem(*row[:4]), row[4] or "") for row in rows]


def queue_item(store: Store, user: User, instance_id: int) -> QueueItem | None:
    """The user's queue entry for an instance, if it is in their queue."""
    return _item(
        store.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM assignments WHERE user_id = ? AND instance_id = ?",  # noqa: S608
            (user.id, instance_id),
        ).fetchone()
    )


def next_item(store: Store, user: User, *, after: int | None = None) -> QueueItem | None:
    """The next item to label: the first pending one after position ``after`` (wrapping to the
    start), or, when nothing is pending, the first skipped one the same way; None when done."""
    q = store.conn.execute
    for status in ("pending", "skipped"):
        if after is not None:
            row = q(
                f"SELECT {_ITEM_COLUMNS} FROM assignments WHERE user_id = ? AND status = ? "  # noqa: S608
                "AND position > ? ORDER BY position LIMIT 1",
                (user.id, status, after),
            ).fetchone()
            if row:
                return QueueItem(*row)
        row = q(
            f"SELECT {_ITEM_COLUMNS} FROM assignments WHERE user_id = ? AND status = ? "  # noqa: S608
            "ORDER BY position LIMIT 1",
            (user.id, status),
        ).fetchone()
        if row:
            return QueueItem(*row)
    return None


def previous_item(store: Store, user: User, instance_id: int) -> QueueItem | None:
    """The item before this one in the user's queue, whatever its status (for "go back")."""
    current = queue_item(store, user, instance_id)
    if current is None:
        return None
    return _item(
        store.conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM assignments WHERE user_id = ? AND position < ? "  # noqa: S608
            "ORDER BY position DESC LIMIT 1",
            (user.id, current.position),
        ).fetchone()
    )


def _require_assigned(store: Store, user: User, instance_id: int) -> QueueItem | None:
    """The user's queue entry; curators may also label instances outside their queue."""
    item = queue_item(store, user, instance_id)
    if item is not None:
        return item
    if not user.is_curator:
        raise PermissionDenied(f"instance {instance_id} is not in {user.name}'s queue")
    if not store.conn.execute("SELECT 1 FROM instances WHERE id = ?", (instance_id,)).fetchone():
        raise CuratorError(f"no instance with id {instance_id}")
    return None


def _own_label(annotation: Annotation, user: User, status: str) -> Annotation:
    return replace(annotation, annotator_kind="human", annotator=user.name, status=status)


def _own_row(store: Store, user: User, instance_id: int) -> Any:
    return store.conn.execute(
        "SELECT * FROM annotations WHERE instance_id = ? AND annotator_kind = 'human' "
        "AND annotator = ?",
        (instance_id, user.name),
    ).fetchone()


def save_draft(store: Store, user: User, instance_id: int, annotation: Annotation) -> None:
    """Keep a half-done label (it survives a page reload or a new session).

    A draft may have no aspect chosen yet. A draft over an already-submitted label changes
    nothing: the submitted label stands until the user submits again.
    """
    draft = _own_label(annotation, user, "draft")
    check = (
        draft if any(getattr(draft, a) is not None for a in ASPECTS) else replace(draft, overall=0)
    )
    try:
        check.validate()
    except ValueError as exc:
        raise CuratorError(f"cannot save the draft: {exc}") from exc
    row = draft.to_row(instance_id)
    columns = [c for c in row if c != "created_at"]
    updates = ", ".join(
        f"{c} = excluded.{c}"
        for c in columns
        if c not in ("instance_id", "annotator_kind", "annotator")
    )
    with store.write():
        _require_assigned(store, user, instance_id)
        store.conn.execute(
            f"INSERT INTO annotations({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "  # noqa: S608
            f"ON CONFLICT(instance_id, annotator_kind, annotator) DO UPDATE SET {updates}, "
            "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
            "WHERE annotations.status = 'draft'",
            [row[c] for c in columns],
        )


def load_draft(store: Store, user: User, instance_id: int) -> Annotation | None:
    """The user's own label on an instance, draft or submitted, to prefill the form."""
    row = _own_row(store, user, instance_id)
    return Annotation.from_row(dict(row)) if row else None


def submit(store: Store, user: User, instance_id: int, annotation: Annotation) -> QueueItem | None:
    """Store the user's label, mark the assignment done, and return the next item to label.

    Label, summary and assignment change in one transaction. Submitting again edits the label.
    Annotators may only label instances in their queue (PermissionDenied otherwise).
    """
    label = _own_label(annotation, user, "submitted")
    try:
        label.validate()
    except ValueError as exc:
        raise CuratorError(f"cannot submit the label: {exc}") from exc
    with store.write():
        item = _require_assigned(store, user, instance_id)
        store.add_annotations([(instance_id, label)])
        if item is not None and item.status != "done":
            store.conn.execute(
                "UPDATE assignments SET status = 'done' WHERE user_id = ? AND instance_id = ?",
                (user.id, instance_id),
            )
    return next_item(store, user, after=item.position if item else None)


@dataclass
class Skipped:
    """What a skip did: ``put_aside`` is True only when a pending item became skipped (a done or
    already-skipped item keeps its status); ``status`` is the item's status now (None for an
    instance outside the queue); ``following`` is the next item to label."""

    put_aside: bool
    status: str | None
    following: QueueItem | None


def skip(store: Store, user: User, instance_id: int) -> Skipped:
    """Move on from an item: a pending one is put aside (it comes back when nothing else is
    pending); a done or already-skipped one keeps its status."""
    with store.write():
        item = _require_assigned(store, user, instance_id)
        put_aside = item is not None and item.status == "pending"
        if put_aside:
            store.conn.execute(
                "UPDATE assignments SET status = 'skipped' WHERE user_id = ? AND instance_id = ?",
                (user.id, instance_id),
            )
    status = "skipped" if put_aside else (item.status if item else None)
    return Skipped(put_aside, status, next_item(store, user, after=item.position if item else None))


def visible_labels(store: Store, user: User, instance_id: int) -> list[dict[str, Any]]:
    """The submitted labels this user may see: all of them for curators, only their own for
    annotators (annotation is blind: annotators never see anyone else's labels)."""
    labels = store.annotations_for(instance_id)
    if user.is_curator:
        return labels
    return [a for a in labels if a["annotator_kind"] == "human" and a["annotator"] == user.name]
