"""Finished training runs: one row of ``runs`` per trained model, with what it was trained on, how,
its training metrics, its evaluations and where its files are.

A run is written once when its trainer finishes (:func:`record_run`); evaluations done later are
merged into it (:func:`set_evaluation`), so the compare page and ``curator runs`` always show
everything known about a model in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.store import Store
from training.storage import is_local, local_artifact

RUN_KINDS = ("reward", "sft", "dpo", "probe")

# One query for every read: each filter applies only when its parameter is not NULL.
_QUERY = (
    "SELECT r.*, d.name AS dataset, "
    "CASE WHEN m.id IS NULL THEN NULL ELSE m.name || '@' || m.version END AS mixture "
    "FROM runs r LEFT JOIN datasets d ON d.id = r.dataset_id "
    "LEFT JOIN mixtures m ON m.id = r.mixture_id "
    "WHERE (:id IS NULL OR r.id = :id) AND (:job IS NULL OR r.job_id = :job) "
    "AND (:kind IS NULL OR r.kind = :kind) AND (:dataset IS NULL OR r.dataset_id = :dataset) "
    "AND (:mixture IS NULL OR r.mixture_id = :mixture) ORDER BY r.id DESC LIMIT :limit"
)


def _select(store: Store, *, limit: int = 500, **filters: Any) -> list[Run]:
    params = {"id": None, "job": None, "kind": None, "dataset": None, "mixture": None}
    params.update(filters)
    params["limit"] = int(limit)
    return [Run.from_row(r) for r in store.conn.execute(_QUERY, params)]


@dataclass
class Run:
    """One row of ``runs``, JSON columns decoded, with its dataset's and mixture's names."""

    id: int
    kind: str
    name: str | None = None
    job_id: int | None = None
    dataset_id: int | None = None
    dataset: str | None = None
    mixture_id: int | None = None
    mixture: str | None = None
    base_model: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    artifact_path: str | None = None  # a folder, or a storage URL where a cluster job wrote it
    created_at: str | None = None

    @property
    def artifact_is_url(self) -> bool:
        """Whether the run's files are at a storage URL, read through a copy in the workspace."""
        return bool(self.artifact_path) and not is_local(self.artifact_path)

    @classmethod
    def from_row(cls, row: Any) -> Run:
        data = dict(row)
        for column in ("config", "metrics", "evaluation"):
            data[column] = json.loads(data.get(column) or "{}")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _dumps(value: dict[str, Any] | None) -> str:
    return json.dumps(value or {}, sort_keys=True, default=str)


def mixture_id(store: Store, ref: str) -> int:
    """The id of a mixture named ``name`` (its newest version) or ``name@version``."""
    from curation.mixtures import resolve_mixture

    return int(resolve_mixture(store, ref)["id"])


def record_run(
    store: Store,
    *,
    kind: str,
    name: str | None = None,
    job_id: int | None = None,
    dataset: str | None = None,
    mixture: str | None = None,
    base_model: str | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    artifact_path: str | None = None,
) -> int:
    """Write a finished run; returns its id. ``dataset`` and ``mixture`` are names (a mixture may
    be ``name@version``); unknown names are an error rather than a run that points nowhere."""
    if kind not in RUN_KINDS:
        raise CuratorError(f"a run's kind is one of {', '.join(RUN_KINDS)}, not {kind!r}")
    dataset_id = store.dataset(dataset)["id"] if dataset else None
    mix_id = mixture_id(store, mixture) if mixture else None
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO runs(job_id, kind, name, dataset_id, mixture_id, base_model, config, "
            "metrics, evaluation, artifact_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                kind,
                name,
                dataset_id,
                mix_id,
                base_model,
                _dumps(config),
                _dumps(metrics),
                _dumps(evaluation),
                artifact_path,
            ),
        )
    return int(cursor.lastrowid)


def get_run(store: Store, run_id: int) -> Run:
    found = _select(store, id=int(run_id), limit=1)
    if not found:
        raise CuratorError(f"no run {run_id} in this workspace")
    return found[0]


def list_runs(
    store: Store,
    kind: str | None = None,
    dataset: str | None = None,
    mixture: str | None = None,
    *,
    limit: int = 500,
) -> list[Run]:
    """Runs, newest first, optionally only of one kind, dataset or mixture."""
    if kind and kind not in RUN_KINDS:
        raise CuratorError(f"kind must be one of {', '.join(RUN_KINDS)}")
    dataset_id = store.dataset(dataset)["id"] if dataset else None
    mix_id = mixture_id(store, mixture) if mixture else None
    return _select(store, kind=kind or None, dataset=dataset_id, mixture=mix_id, limit=limit)


def set_evaluation(store: Store, run_id: int, evaluation: dict[str, Any]) -> Run:
    """Merge evaluation results into a run (a key evaluated again is replaced, others stay).

    Read and write happen in one write transaction, so two evaluations finishing at once both
    land instead of one overwriting the other.
    """
    with store.write():
        row = store.conn.execute("SELECT evaluation FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise CuratorError(f"no run {run_id} in this workspace")
        merged = json.loads(row[0] or "{}") | dict(evaluation)
        store.conn.execute("UPDATE runs SET evaluation = ? WHERE id = ?", (_dumps(merged), run_id))
    return get_run(store, run_id)


def run_for_job(store: Store, job_id: int) -> Run | None:
    """The run a training job produced (its latest, should it have written more than one)."""
    found = _select(store, job=int(job_id), limit=1)
    return found[0] if found else None


def local_model(store: Store, ref: str | None, *, what: str) -> Path:
    """The model folder a run or a judge records (a path or a storage URL) as a folder on this
    machine, a URL's downloaded once into the workspace's cache (``storage.local_artifact``)."""
    if not ref:
        raise CuratorError(f"{what} was not saved")
    if store.workspace is None:
        raise CuratorError("reading a model needs a workspace store (Store.open(workspace))")
    return local_artifact(store.workspace, ref, what=what)


def run_model_dir(store: Store, run: Run) -> Path:
    """Where a run's model is on this machine: what evaluation, judging and generation load."""
    return local_model(store, run.artifact_path, what=f"the model of run {run.id}")
