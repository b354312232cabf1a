"""Batched, length-sorted inference (``training.inference.map_by_length``), with a plain scoring
function in place of a model."""

from __future__ import annotations

import pytest

from training.inference import map_by_length

ITEMS = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11], [12], [13, 14, 15]]


def test_results_come_back_in_the_items_order():
    """Each item gets its own result at its own position, whatever order the batches ran in."""
    assert map_by_length(ITEMS, 4, lambda batch: [sum(ids) for ids in batch]) == [
        sum(ids) for ids in ITEMS
    ]


def test_batches_run_shortest_first_and_equal_lengths_keep_their_order():
    """Batches hold items of similar length, shortest first; ties stay in input order."""
    batches = []

    def run(batch):
        batches.append([ids[0] for ids in batch])
        return [None] * len(batch)

    map_by_length(ITEMS, 2, run)
    assert batches == [[4, 12], [10, 1], [13, 5]]


def test_progress_follows_each_batch():
    """``progress(done, total)`` after every batch, the last one partial."""
    seen = []
    map_by_length(ITEMS, 4, lambda b: b, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(4, 6), (6, 6)]


def test_no_items_run_nothing():
    """An empty input returns an empty list without calling the model."""
    assert map_by_length([], 8, lambda batch: pytest.fail("called on nothing")) == []


def test_a_run_that_returns_too_few_results_is_an_error():
    """A batch function must return one result per item; a short answer is a bug, not data."""
    with pytest.raises(ValueError):
        map_by_length(ITEMS, 3, lambda batch: batch[:1])
