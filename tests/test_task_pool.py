"""Where a job's independent steps run (training.task_pool): one by one here, or as real Ray
tasks on a local Ray started by this module."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from pool_tasks import refuse_three, scaled, slow

from curation.errors import CuratorError
from training.task_pool import LocalPool, RayPool, TaskResources, pool_for_this_process

TESTS_DIR = Path(__file__).resolve().parent
HAVE_RAY = importlib.util.find_spec("ray") is not None


def test_the_local_pool_yields_in_order_and_stops_between_items():
    calls: list[int] = []

    def record(shared, item):
        calls.append(item)
        return shared + item

    stop_after = iter([False, False, True])
    results = list(LocalPool().map(record, 10, [1, 2, 3, 4], should_stop=lambda: next(stop_after)))
    assert results == [11, 12] and calls == [1, 2]


def test_outside_a_ray_job_the_pool_is_local(monkeypatch):
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert pool_for_this_process().name == "local"


@pytest.fixture(scope="module")
def local_ray():
    if not HAVE_RAY:
        pytest.skip("ray not installed (the cluster extra: make cluster)")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(TESTS_DIR), str(TESTS_DIR.parent)])}})  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_the_ray_pool_runs_items_as_tasks_in_other_processes_and_keeps_their_order(local_ray):
    pool = RayPool(max_in_flight=3)
    assert pool.workers == 2
    results = list(pool.map(scaled, 7, range(10)))
    assert [value for value, _ in results] == [7 * k for k in range(10)]
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.slow
def test_a_task_that_refuses_ends_the_map_with_its_curator_error(local_ray):
    with pytest.raises(CuratorError, match="item 3 is refused"):
        list(RayPool().map(refuse_three, None, range(6)))


@pytest.mark.slow
def test_a_stop_ends_the_map_and_cancels_what_was_submitted(local_ray):
    pool = RayPool(max_in_flight=4)
    seen: list[int] = []
    for value in pool.map(slow, 0.2, range(50), resources=TaskResources(num_cpus=1),
                          should_stop=lambda: len(seen) >= 2):  # fmt: skip
        seen.append(value)
    assert seen == [0, 1]
    # the cancelled tasks free the CPUs: a new map runs at once
    assert [value for value, _ in pool.map(scaled, 1, [5])] == [5]
