"""A dataset as a whole: rename it, delete it, or empty it for a fresh import.

The rows of a dataset point at it by id (its instances, and through them labels, summaries,
queues, flags, features, plan items and the search index), so they follow a rename by
themselves and go with a delete through the schema's ``ON DELETE CASCADE``. Only JSON names a
dataset by its *name*: job specs, run configs, PPM provenance and mixture specs.
:func:`dataset_references` finds what refers to a dataset either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from curation.errors import CuratorError
from curation.store import Store
from curation.users import User, require_role

MAX_NAME_LENGTH = 200
# Keys under which a job spec, run config, PPM provenance or mixture spec names a dataset.
_NAME_KEYS = frozenset({"dataset", "eval_dataset", "eval_set"})
# A mixture spec's source mappings: a source's name is its dataset unless it says otherwise.
_SOURCE_MAPS = frozenset({"sources", "dataset_mixer"})
# What the search index keeps beside ``instances`` (FTS5's own tables); counted as instances.
_FTS_PREFIX = "instances_fts"
_EVAL_KEY = "rewardbench:"  # a run's evaluation is keyed by the eval set it was scored on


@dataclass(frozen=True)
class Reference:
    """Something that refers to a dataset: a job, sweep, PPM, route plan, mixture or run."""

    table: str
    id: int
    label: str  # as a curator reads it: "job 4 (sweep, running)", "mixture sft@2"
    running: bool = False  # a job running now: it looks the dataset up by name as it goes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_dataset_name(name: str) -> str:
    """A dataset name as it will be stored (trimmed), or CuratorError saying what is wrong."""
    name = (name or "").strip()
    if not name:
        raise CuratorError("a dataset needs a name")
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise CuratorError(
            f"dataset name {name[:40]!r} must be printable and at most {MAX_NAME_LENGTH} characters"
        )
    return name


def dataset_references(store: Store, name: str) -> list[Reference]:
    """Every job, sweep, PPM, route plan, mixture and run that refers to a dataset, by id or
    by name, in that order (CuratorError when there is no such dataset)."""
    dataset_id = store.dataset(name)["id"]
    q = store.conn.execute
    refs: list[Reference] = []
    for row in q("SELECT id, kind, status, spec FROM jobs ORDER BY id"):
        if _mentions(json.loads(row["spec"] or "{}"), name):
            label = f"job {row['id']} ({row['kind']}, {row['status']})"
            refs.append(Reference("jobs", row["id"], label, row["status"] == "running"))
    for row in q(
        "SELECT id, dataset_id FROM sweeps WHERE dataset_id = ? OR eval_dataset_id = ? ORDER BY id",
        (dataset_id, dataset_id),
    ):
        role = "" if row["dataset_id"] == dataset_id else " (as its eval set)"
        refs.append(Reference("sweeps", row["id"], f"sweep {row['id']}{role}"))
    for row in q("SELECT id, kind, dataset_id, provenance FROM ppms ORDER BY id"):
        if row["dataset_id"] == dataset_id or _mentions(json.loads(row["provenance"]), name):
            refs.append(Reference("ppms", row["id"], f"PPM {row['id']} ({row['kind']})"))
    for row in q("SELECT id FROM route_plans WHERE dataset_id = ? ORDER BY id", (dataset_id,)):
        refs.append(Reference("route_plans", row["id"], f"route plan {row['id']}"))
    for row in q("SELECT id, name, version, spec FROM mixtures ORDER BY name, version"):
        if _mentions(json.loads(row["spec"]), name):
            label = f"mixture {row['name']}@{row['version']}"
            refs.append(Reference("mixtures", row["id"], label))
    for row in q("SELECT id, kind, name, dataset_id, config, evaluation FROM runs ORDER BY id"):
        config, evaluation = json.loads(row["config"]), json.loads(row["evaluation"])
        if (
            row["dataset_id"] == dataset_id
            or _mentions(config, name)
            or f"{_EVAL_KEY}{name}" in evaluation
        ):
            label = f"run {row['id']} ({row['kind']}{', ' + row['name'] if row['name'] else ''})"
            refs.append(Reference("runs", row["id"], label))
    return refs


def rename_dataset(store: Store, old: str, new: str, *, user: User | None = None) -> dict[str, Any]:
    """Give a dataset a new name; returns what was renamed and which records were updated.

    Everything keyed by the dataset's id follows without a write. Job specs, run configs (and
    the eval-set keys of their evaluations) and PPM provenance name it in plain JSON fields
    that only ever hold a name, so they are rewritten in the same transaction: a retried job, a
    run's "trained on" and a PPM's evaluation keep finding the dataset. Two things refuse the
    rename instead, and say so:

    - a *running* job that names it: it read its spec when it started and looks the dataset up
      by that name as it goes; wait for it or cancel it;
    - a *mixture* that draws from it: a mixture version is a hashed record of exactly what was
      built from what (its spec hash covers the dataset names, and its manifest is also a file
      beside the data), so rewriting it would make that record lie.

    Only curators may rename (``user`` is the signed-in account; None is for the CLI and
    scripts, which act with the workspace owner's rights).
    """
    if user is not None:
        require_role(user, "curator")
    new = check_dataset_name(new)
    with store.write():
        dataset = store.dataset(old)
        if new == old:
            raise CuratorError(f"dataset {old!r} already has that name")
        if store.find_dataset(new):
            raise CuratorError(
                f"cannot rename {old!r}: a dataset named {new!r} already exists "
                "(choose another name, or delete that dataset first)"
            )
        refs = dataset_references(store, old)
        blocking = [r for r in refs if r.running or r.table == "mixtures"]
        if blocking:
            raise CuratorError(
                f"cannot rename {old!r} while {_listed(blocking)} refer to it by name: wait for "
                "or cancel a running job; a mixture keeps the names it was built from, so "
                "delete the mixture first"
            )
        store.conn.execute("UPDATE datasets SET name = ? WHERE id = ?", (new, dataset["id"]))
        updated = {
            "jobs.spec": _rewrite(store, "jobs", "spec", old, new),
            "runs.config": _rewrite(store, "runs", "config", old, new),
            "runs.evaluation": _rewrite(store, "runs", "evaluation", old, new, keys=True),
            "ppms.provenance": _rewrite(store, "ppms", "provenance", old, new),
            "saved_views.dataset": store.conn.execute(
                "UPDATE saved_views SET dataset = ? WHERE dataset = ?", (new, old)
            ).rowcount,
        }
    return {
        "renamed": old,
        "to": new,
        "id": dataset["id"],
        "updated": {k: v for k, v in updated.items() if v},
    }


def delete_dataset(
    store: Store, name: str, *, force: bool = False, user: User | None = None
) -> dict[str, Any]:
    """Delete a dataset and everything keyed to it, in one transaction; returns the rows
    deleted per table (``instances`` covers its search-index entries too), the rows that only
    lost their link to it (runs trained on it, sweeps scored on it) and the references.

    While jobs, sweeps, PPMs, route plans, mixtures or runs refer to the dataset it refuses,
    listing them, unless ``force``: sweeps, PPMs and route plans of the dataset would be
    deleted with it, and the others would name a dataset that no longer exists. A running job
    refuses the delete even with ``force`` (it would fail half-way through its writes).
    Only curators may delete (``user`` as for :func:`rename_dataset`).
    """
    if user is not None:
        require_role(user, "curator")
    with store.write():
        dataset = store.dataset(name)
        refs = dataset_references(store, name)
        running = [r for r in refs if r.running]
        if running:
            raise CuratorError(
                f"cannot delete {name!r} while {_listed(running)} use it: "
                "wait for it to finish or cancel it"
            )
        if refs and not force:
            raise CuratorError(
                f"dataset {name!r} is referred to by {_listed(refs)}; delete those first, or "
                "force the delete (sweeps, PPMs and route plans of the dataset go with it)"
            )
        unlinked = {
            "runs": _count(store, "SELECT count(*) FROM runs WHERE dataset_id = ?", dataset["id"]),
            "sweeps": _count(
                store,
                "SELECT count(*) FROM sweeps WHERE eval_dataset_id = ? AND dataset_id != ?",
                dataset["id"],
                dataset["id"],
            ),
        }
        deleted = _deleted_rows(store, lambda: _delete(store, dataset["id"]))
    return {
        "deleted": name,
        "id": dataset["id"],
        "kind": dataset["kind"],
        "rows": deleted,
        "unlinked": {k: v for k, v in unlinked.items() if v},
        "references": [r.to_dict() for r in refs],
    }


def clear_dataset_contents(store: Store, dataset_id: int) -> dict[str, int]:
    """Empty a dataset but keep its row (name, kind, description, id); returns the rows
    deleted per table. For replacing a dataset's contents (``curator import --replace``).

    Goes: its instances and everything per instance (labels, label summaries, queue
    assignments, flags, features, route-plan items, search-index entries), and its route plans
    and sweeps, which are lists of those instances' ids (a sweep's PPMs stay, unlinked from it).
    Stays: the dataset row and whatever names it (jobs, runs, mixtures, PPMs); the name still
    resolves, to the new contents.

    It writes through :meth:`Store.write`, so inside a caller's open write transaction (or
    ``bulk_load``) it is a savepoint of it: the caller's rollback undoes the clearing too.
    It checks nothing and asks no role: a caller that replaces a dataset decides that.
    """
    with store.write():
        return _deleted_rows(store, lambda: _clear(store, dataset_id))


# ---- helpers ---------------------------------------------------------------------------------


def _clear(store: Store, dataset_id: int) -> None:
    q = store.conn.execute
    # route_plan_items has no index on instance_id alone: go by plan first
    q(
        "DELETE FROM route_plan_items WHERE plan_id IN "
        "(SELECT id FROM route_plans WHERE dataset_id = ?)",
        (dataset_id,),
    )
    q("DELETE FROM route_plans WHERE dataset_id = ?", (dataset_id,))
    q("DELETE FROM sweeps WHERE dataset_id = ?", (dataset_id,))
    q("DELETE FROM instances WHERE dataset_id = ?", (dataset_id,))


def _delete(store: Store, dataset_id: int) -> None:
    _clear(store, dataset_id)
    # saved views name their dataset: a view of a deleted dataset would filter nothing
    store.conn.execute(
        "DELETE FROM saved_views WHERE dataset = (SELECT name FROM datasets WHERE id = ?)",
        (dataset_id,),
    )
    store.conn.execute("DELETE FROM datasets WHERE id = ?", (dataset_id,))


def _deleted_rows(store: Store, delete: Callable[[], None]) -> dict[str, int]:
    """Rows each table lost to ``delete()``, counted over every table, so a table added to the
    schema later is reported too (cascades included)."""
    tables = [
        r[0]
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE ? ORDER BY name",
            (f"{_FTS_PREFIX}%",),
        )
    ]

    def counts() -> dict[str, int]:
        return {t: _count(store, f'SELECT count(*) FROM "{t}"') for t in tables}  # noqa: S608

    before = counts()
    delete()
    after = counts()
    return {t: before[t] - after[t] for t in tables if before[t] != after[t]}


def _count(store: Store, sql: str, *params: Any) -> int:
    return int(store.conn.execute(sql, params).fetchone()[0])


def _listed(refs: list[Reference]) -> str:
    shown = ", ".join(r.label for r in refs[:10])
    return shown + (f" and {len(refs) - 10} more" if len(refs) > 10 else "")


def _rewrite(
    store: Store, table: str, column: str, old: str, new: str, *, keys: bool = False
) -> int:
    """Rename ``old`` to ``new`` in one JSON column of a table (the eval-set keys of a run's
    evaluation with ``keys``), skipping running jobs; returns the rows changed."""
    sql = f"SELECT id, {column} FROM {table}"  # noqa: S608 (fixed names only)
    if table == "jobs":
        sql += " WHERE status != 'running'"
    changed = 0
    for row in store.conn.execute(sql).fetchall():
        value = json.loads(row[column] or "{}")
        if keys:
            renamed = {
                (_EVAL_KEY + new if k == _EVAL_KEY + old else k): v for k, v in value.items()
            }
            renamed = _renamed(renamed, old, new)
        else:
            renamed = _renamed(value, old, new)
        if renamed != value:
            store.conn.execute(
                f"UPDATE {table} SET {column} = ? WHERE id = ?",  # noqa: S608
                (json.dumps(renamed, ensure_ascii=False), row["id"]),
            )
            changed += 1
    return changed


def _mentions(doc: Any, name: str) -> bool:
    return _renamed(doc, name, None) != doc


def _renamed(doc: Any, old: str, new: str | None) -> Any:
    """A copy of a JSON document with every place that names dataset ``old`` naming ``new``
    (None only to detect a mention): values of the name keys, a mixture's decontamination
    targets (``against``) and the names of its sources that stand for their dataset."""
    if isinstance(doc, list):
        return [_renamed(item, old, new) for item in doc]
    if not isinstance(doc, dict):
        return doc
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in _NAME_KEYS and value == old:
            out[key] = new
        elif key == "against" and isinstance(value, list | str):
            items = [value] if isinstance(value, str) else value
            out[key] = [_target_renamed(item, old, new) for item in items]
            if isinstance(value, str):
                out[key] = out[key][0]
        elif key in _SOURCE_MAPS and isinstance(value, dict):
            out[key] = {
                (new if src == old and _named_by_key(details) else src): _renamed(details, old, new)
                for src, details in value.items()
            }
        else:
            out[key] = _renamed(value, old, new)
    return out


def _named_by_key(details: Any) -> bool:
    """Whether a source's dataset is its name: a bare amount, or details without ``dataset``."""
    return not isinstance(details, dict) or "dataset" not in details


def _target_renamed(item: Any, old: str, new: str | None) -> Any:
    if item == old:
        return new
    if isinstance(item, dict) and item.get("ref") == old:
        return {**item, "ref": new}
    return item
