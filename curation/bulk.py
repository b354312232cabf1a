"""Actions on many instances at once (Explore's selection, or every row under a filter).

Each runs in one transaction, so a bulk action lands whole or not at all. Assigning goes
through :func:`curation.queues.assign`, the one place that fills queues; flagging and excluding
write the same flags a person raises on one pair, so the inbox, exports and mixtures treat a
bulk exclusion like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from curation.errors import CuratorError
from curation.flags import FLAG_CATEGORIES
from curation.store import Store, _chunks
from curation.users import User, require_role

# A selection is pages of rows or one filter's matches: more than this is a mistake to confirm
# in smaller steps (or a job for `curator assign --where`).
MAX_BULK = 50_000


def _checked(store: Store, instance_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in instance_ids))
    if not ids:
        raise CuratorError("select at least one instance")
    if len(ids) > MAX_BULK:
        raise CuratorError(
            f"{len(ids):,} instances is more than a bulk action takes ({MAX_BULK:,})"
        )
    found: set[int] = set()
    for chunk in _chunks(ids):
        marks = ", ".join("?" * len(chunk))
        found.update(
            r[0]
            for r in store.conn.execute(f"SELECT id FROM instances WHERE id IN ({marks})", chunk)  # noqa: S608
        )
    missing = [i for i in ids if i not in found]
    if missing:
        raise CuratorError(f"{len(missing)} of the selected instances no longer exist")
    return ids


def flag_many(
    store: Store, instance_ids: Sequence[int], user: User | None, category: str, note: str = ""
) -> int:
    """Raise the same open flag on every instance; returns how many were flagged."""
    if category not in FLAG_CATEGORIES:
        raise CuratorError(f"flag category {category!r} is not one of {', '.join(FLAG_CATEGORIES)}")
    ids = _checked(store, instance_ids)
    with store.write():
        store.conn.executemany(
            "INSERT INTO flags(instance_id, user_id, category, note) VALUES (?, ?, ?, ?)",
            [(i, user.id if user else None, category, (note or "").strip() or None) for i in ids],
        )
    return len(ids)


def exclude_many(
    store: Store,
    instance_ids: Sequence[int],
    user: User | None,
    reason: str,
    *,
    category: str = "other",
) -> int:
    """Leave instances out of exports and mixtures: a flag resolved as "exclude" on each, with
    the reason as its resolution. Curators only (``user`` None is the command line's owner)."""
    if user is not None:
        require_role(user, "curator")
    reason = (reason or "").strip()
    if not reason:
        raise CuratorError("say why these instances are excluded")
    if category not in FLAG_CATEGORIES:
        raise CuratorError(f"flag category {category!r} is not one of {', '.join(FLAG_CATEGORIES)}")
    ids = _checked(store, instance_ids)
    with store.write():
        store.conn.executemany(
            "INSERT INTO flags(instance_id, user_id, category, note, status, exclude, resolution, "
            "resolved_at) VALUES (?, ?, ?, ?, 'resolved', 1, ?, "
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            [(i, user.id if user else None, category, reason, reason) for i in ids],
        )
    return len(ids)
