"""Saved views: named Explore filters in the text form `--where` reads, kept in the store."""

from __future__ import annotations

import pytest

from curation import datasets, saved_views, users
from curation.errors import CuratorError
from curation.records import Instance
from curation.store import InstanceFilter, Store
from curation.users import PermissionDenied


@pytest.fixture(autouse=True)
def other(prefs: Store) -> None:
    """A second dataset beside the shared ``prefs`` (tests/conftest.py)."""
    ds = prefs.create_dataset("other", "preference")
    prefs.insert_instances(
        ds["id"], [Instance(uid="u", prompt="p", response_a="a", response_b="b")]
    )


def test_a_view_is_saved_listed_for_its_dataset_and_reads_back_as_its_filter(prefs):
    flt = InstanceFilter(dataset="prefs", domains=["math"], agreement=False)
    saved_views.save_view(prefs, "math disagreements", flt)
    saved_views.save_view(prefs, "no LM yet", InstanceFilter(has_lm=False))  # any dataset
    assert [v.name for v in saved_views.list_views(prefs, "prefs")] == [
        "math disagreements",
        "no LM yet",
    ]
    assert [v.name for v in saved_views.list_views(prefs, "other")] == ["no LM yet"]
    [view] = [v for v in saved_views.list_views(prefs) if v.dataset]
    assert view.filter() == flt


def test_names_must_be_new_unless_replacing_and_printable(prefs):
    saved_views.save_view(prefs, "v", InstanceFilter(has_lm=True))
    with pytest.raises(CuratorError, match="exists already"):
        saved_views.save_view(prefs, "v", InstanceFilter(has_lm=False))
    saved_views.save_view(prefs, "v", InstanceFilter(has_lm=False), replace=True)
    assert saved_views.list_views(prefs)[0].query == "has_lm=no"
    for bad in ("", "  ", "tab\there", "x" * 81):
        with pytest.raises(CuratorError, match="printable name"):
            saved_views.save_view(prefs, bad, InstanceFilter())


def test_views_follow_a_rename_and_go_with_a_deleted_dataset(prefs):
    saved_views.save_view(prefs, "v", InstanceFilter(dataset="prefs", has_lm=True))
    datasets.rename_dataset(prefs, "prefs", "renamed")
    assert [v.dataset for v in saved_views.list_views(prefs)] == ["renamed"]
    datasets.delete_dataset(prefs, "renamed")
    assert saved_views.list_views(prefs) == []


def test_only_curators_save_or_delete_views(prefs):
    annotator = users.add_user(prefs, "ann", "annotator", "a-long-password")
    with pytest.raises(PermissionDenied):
        saved_views.save_view(prefs, "v", InstanceFilter(), user=annotator)
    saved_views.save_view(prefs, "v", InstanceFilter())
    with pytest.raises(PermissionDenied):
        saved_views.delete_view(prefs, "v", user=annotator)
    saved_views.delete_view(prefs, "v")
    with pytest.raises(CuratorError, match="no view named"):
        saved_views.delete_view(prefs, "v")
