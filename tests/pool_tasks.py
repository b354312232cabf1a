"""Module-level task functions for the task-pool tests (a Ray task imports its function by name,
so these cannot live in a test module's closure)."""

from __future__ import annotations

import os
import time

from curation.errors import CuratorError


def scaled(factor: int, item: int) -> tuple[int, int]:
    """(item * factor, the pid that computed it)."""
    return item * factor, os.getpid()


def refuse_three(_: object, item: int) -> int:
    if item == 3:
        raise CuratorError(f"item {item} is refused")
    return item


def slow(seconds: float, item: int) -> int:
    time.sleep(seconds)
    return item
