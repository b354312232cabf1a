"""Routing features in shards, as a features job computes them on a Ray cluster: the same
numbers as in one pass, through a pool in this process and through real Ray tasks."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curation.demo import build_demo
from curation.embeddings import Encoder
from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from routing.features import (
    LENGTHS,
    MEASURES,
    FeatureConfig,
    PairTexts,
    compute_features,
    lexical_measures,
    shard_bounds,
    sharded_measures,
)
from training import jobs
from training.kinds import JobCancelled, JobContext
from training.routing_jobs import features_spec, run_features_job
from training.task_pool import LocalPool, RayPool, TaskPool, TaskResources

DATASET = "demo-prefs"
# 60 pairs in chunks of 8 and shards of 16: four shards, the last one short
CONFIG = FeatureConfig(chunk_pairs=8, shard_pairs=16)
# Vectors of the same pair encoded in other batches, or with other thread counts, differ in
# the last bits of float32.
VECTOR_TOLERANCE = 1e-5

Rows = dict[tuple[int, str], tuple[float, str, str]]


def _feature_rows(store: Store) -> Rows:
    """(instance, feature) -> (value, extractor, label) of every feature of the demo pairs."""
    found = store.conn.execute(
        "SELECT f.instance_id, f.name, f.value, f.extractor, f.label FROM features f "
        "JOIN instances i ON i.id = f.instance_id JOIN datasets d ON d.id = i.dataset_id "
        "WHERE d.name = ?",
        (DATASET,),
    )
    return {(r[0], r[1]): (r[2], r[3], r[4]) for r in found}


def _in_process(fn, shared, items):
    return LocalPool().map(fn, shared, items)


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory) -> tuple[Path, Rows]:
    """A demo workspace with its features computed in one pass, and those features."""
    ws = Workspace(tmp_path_factory.mktemp("feature-shards") / "ws").ensure()
    with Store.open(ws) as store:
        build_demo(store, n_pairs=60)
        compute_features(store, DATASET, CONFIG)
        return ws.root, _feature_rows(store)


@pytest.fixture
def featured(unsharded, tmp_path):
    """A copy of the featured workspace, for a test to recompute its features in."""
    root = tmp_path / "ws"
    shutil.copytree(unsharded[0], root)
    with Store.open(Workspace(root)) as opened:
        yield opened


def test_shard_pairs_below_one_is_refused_with_the_setting_named():
    with pytest.raises(CuratorError, match="shard_pairs must be at least 1, not 0"):
        FeatureConfig(shard_pairs=0).validate()
    with pytest.raises(CuratorError, match="shard_pairs must be at least 1"):
        FeatureConfig.from_dict({"shard_pairs": -3})


def test_shards_hold_whole_chunks_and_cover_every_pair_once():
    assert shard_bounds(60, 16, 8) == [(0, 16), (16, 32), (32, 48), (48, 60)]
    assert shard_bounds(60, 20, 8) == [(0, 24), (24, 48), (48, 60)]  # rounded up to chunks
    assert shard_bounds(5, 4096, 256) == [(0, 5)]


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_sharded_measures_equal_one_pass_bit_for_bit_and_vectors_within_float_noise(featured):
    """Measures exactly; vectors are asserted within a tolerance, as batching may move them."""
    texts = PairTexts.load(featured, DATASET)
    encoder = Encoder(CONFIG.encoder)
    whole, prompts, responses = lexical_measures(texts, encoder, chunk_pairs=CONFIG.chunk_pairs)
    for shard_pairs in (16, 20):  # shards of 2 and 3 chunks
        config = FeatureConfig(chunk_pairs=CONFIG.chunk_pairs, shard_pairs=shard_pairs)
        values, shard_prompts, shard_responses = sharded_measures(texts, config, _in_process)
        for name in MEASURES:
            assert np.array_equal(values[name], whole[name]), (shard_pairs, name)
        np.testing.assert_allclose(shard_prompts, prompts, atol=VECTOR_TOLERANCE)
        np.testing.assert_allclose(shard_responses, responses, atol=VECTOR_TOLERANCE)


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_sharded_features_store_the_same_rows_as_one_pass_and_count_shards_done(
    featured, unsharded
):
    done: list[tuple[str, int, int]] = []
    compute_features(featured, DATASET, CONFIG, shard_map=_in_process,
                     progress=lambda *report: done.append(report))  # fmt: skip
    assert _feature_rows(featured) == unsharded[1]
    shards = [(n, total) for stage, n, total in done if stage == "measure shards"]
    assert shards == [(1, 4), (2, 4), (3, 4), (4, 4)]


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_a_shard_map_that_stops_early_is_an_error_not_short_features(featured, unsharded):
    def first_shard_only(fn, shared, items):
        return LocalPool().map(fn, shared, items[:1])

    with pytest.raises(CuratorError, match="stopped after 1 of 4 shards"):
        compute_features(featured, DATASET, CONFIG, shard_map=first_shard_only)
    assert _feature_rows(featured) == unsharded[1]  # the earlier features are kept


class SpreadPool(LocalPool):
    """The local pool under another name: a job given it shards its work as on a cluster. It
    remembers what each map asked for."""

    name = "spread"

    def __init__(self):
        self.asked: list[tuple[TaskResources, str]] = []  # (resources, the shards' device)

    def map(self, fn, shared, items, *, resources=TaskResources(), should_stop=None):  # noqa: B008
        self.asked.append((resources, shared.encoder.device))
        return super().map(fn, shared, items, should_stop=should_stop)


@dataclass
class PoolJobContext(JobContext):
    """A job's context with the pool a Ray cluster job would get."""

    given_pool: Any = None

    @property
    def pool(self) -> TaskPool:
        return self.given_pool


def _run_job(
    store: Store, pool: TaskPool, *, cancel: bool = False, config: FeatureConfig = CONFIG,
    **spec: Any,
) -> dict[str, Any]:  # fmt: skip
    job_id = jobs.enqueue(store, "features", {**features_spec(DATASET, config), **spec})
    job = jobs.claim_next(store, "test")
    if cancel:
        jobs.request_cancel(store, job_id)
    return run_features_job(PoolJobContext(store, store.workspace, job, pool), dict(job.spec))


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_a_features_job_off_the_local_pool_runs_shards_and_says_so(featured, unsharded):
    result = _run_job(featured, SpreadPool())
    assert (result["shards"], result["pool"]) == (4, "spread")
    assert _feature_rows(featured) == unsharded[1]


@pytest.mark.parametrize(
    ("device", "num_gpus"),
    [("cpu", 1), ("auto", None)],
    ids=["cpu-with-gpus-per-task", "auto-with-none"],
)
@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_shards_that_reserve_no_gpu_encode_on_the_cpu(featured, unsharded, device, num_gpus):
    """A cpu encoder does not hold the GPUs the spec gives each task; "auto" without a GPU is
    pinned to the CPU, as Ray would leave it every GPU of the node to take."""
    pool = SpreadPool()
    config = replace(CONFIG, encoder=replace(CONFIG.encoder, device=device))
    _run_job(featured, pool, config=config, num_gpus=num_gpus)
    assert pool.asked == [(TaskResources(num_cpus=1, num_gpus=0.0), "cpu")]
    assert _feature_rows(featured) == unsharded[1]


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_a_cancelled_sharded_features_job_stops_before_writing(featured, unsharded):
    with pytest.raises(JobCancelled):
        _run_job(featured, SpreadPool(), cancel=True)
    assert _feature_rows(featured) == unsharded[1]


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of two CPUs in this machine, for this module's tests only."""
    ray = pytest.importorskip("ray", reason="ray not installed (the cluster extra: make cluster)")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # unix socket paths stay short
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
             configure_logging=False, log_to_driver=False)  # fmt: skip
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # features of a 60-pair demo with the real MiniLM
def test_a_features_job_on_ray_runs_each_shard_as_a_task_with_the_same_features(
    local_ray, featured, unsharded
):
    """Exact for the lengths; within float noise elsewhere, as a Ray task computes with its own
    thread count."""
    result = _run_job(featured, RayPool())
    assert (result["shards"], result["pool"]) == (4, "ray")
    rows, expected = _feature_rows(featured), unsharded[1]
    assert rows.keys() == expected.keys()
    for key, (value, extractor, label) in rows.items():
        want_value, want_extractor, want_label = expected[key]
        assert extractor == want_extractor
        assert value == pytest.approx(want_value, abs=VECTOR_TOLERANCE), key
        if key[1] in LENGTHS:
            assert (value, label) == (want_value, want_label), key
