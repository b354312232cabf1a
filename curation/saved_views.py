"""Saved views: a name for an Explore filter, shared by the team.

A view is kept in the filter's text form, the same one `curator assign --where` reads, so a view
saved in the app can be typed into the command line, and a view that does not parse is never
stored. A view may name its dataset; one without applies to whichever dataset is open.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation.errors import CuratorError
from curation.store import InstanceFilter, Store
from curation.users import User, require_role

MAX_NAME = 80


@dataclass(frozen=True)
class SavedView:
    name: str
    dataset: str | None
    query: str
    created_by: str | None

    def filter(self, dataset: str | None = None) -> InstanceFilter:
        return InstanceFilter.parse(self.query, dataset=dataset or self.dataset)


def save_view(
    store: Store,
    name: str,
    flt: InstanceFilter,
    *,
    user: User | None = None,
    replace: bool = False,
) -> SavedView:
    """Save a filter under ``name`` (curators only); ``replace`` overwrites a view of that name."""
    if user is not None:
        require_role(user, "curator")
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise CuratorError(f"a view needs a printable name of 1 to {MAX_NAME} characters")
    query = flt.to_text()
    with store.write():
        exists = store.conn.execute("SELECT 1 FROM saved_views WHERE name = ?", (name,)).fetchone()
        if exists and not replace:
            raise CuratorError(f"a view named {name!r} exists already")
        store.conn.execute(
            "INSERT INTO saved_views(name, dataset, query, created_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET dataset = excluded.dataset, query = excluded.query, "
            "created_by = excluded.created_by",
            (name, flt.dataset, query, user.id if user else None),
        )
    return SavedView(name, flt.dataset, query, user.name if user else None)


def list_views(store: Store, dataset: str | None = None) -> list[SavedView]:
    """Views for a dataset (and those for any dataset), by name."""
    rows = store.conn.execute(
        "SELECT v.name, v.dataset, v.query, u.name FROM saved_views v "
        "LEFT JOIN users u ON u.id = v.created_by "
        "WHERE ? IS NULL OR v.dataset IS NULL OR v.dataset = ? ORDER BY v.name",
        (dataset, dataset),
    )
    return [SavedView(*row) for row in rows]


def delete_view(store: Store, name: str, *, user: User | None = None) -> None:
    if user is not None:
        require_role(user, "curator")
    with store.write():
        if store.conn.execute("DELETE FROM saved_views WHERE name = ?", (name,)).rowcount == 0:
            raise CuratorError(f"no view named {name!r}")
