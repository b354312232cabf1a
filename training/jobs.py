"""The job queue: background work (trainers, sweeps, judges) recorded in the workspace store.

A job is a row of ``jobs``: its kind, its spec (the kind's config as JSON), a status that moves
queued -> running -> succeeded | failed | cancelled, progress, a heartbeat, a log file, a
checkpoint to resume from, and a result or an error. Metrics stream into ``job_metrics``. Because
all of it lives in SQLite, any page or command re-attaches to a job after a refresh or a restart.

Every state change is one short write transaction; :func:`claim_next` runs inside ``BEGIN
IMMEDIATE``, so two workers never claim the same job. The queue also holds the registry of kinds
(name -> the function that runs it), so it refuses a kind no worker could run. Who runs a job (a
local process, a Ray cluster) is :mod:`training.worker` and :mod:`training.ray_worker`; what a
running job sees is :mod:`training.kinds`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from curation.errors import CuratorError
from curation.store import Store
from training.config import TRAINER_KINDS, config_class

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")


def _now() -> str:
    """UTC now in the store's timestamp format (the same as its column defaults)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Job:
    """One row of the job table, with its JSON columns decoded."""

    id: int
    kind: str
    spec: dict[str, Any]
    status: str
    progress: float = 0.0
    message: str | None = None
    worker: str | None = None
    pid: int | None = None
    pgid: int | None = None
    ray_job_id: str | None = None
    node: str | None = None  # the Ray node that ran it (None for a local job)
    artifact_uri: str | None = None  # where a Ray job's artefacts went: a folder or fsspec URL
    log_offset: int = 0  # characters of the Ray job's log already consumed
    attempts: int = 0
    max_retries: int = 0
    cancel_requested: bool = False
    heartbeat_at: str | None = None
    log_path: str | None = None
    checkpoint_path: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    created_by: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        data = dict(row)
        data["spec"] = json.loads(data.get("spec") or "{}")
        data["result"] = json.loads(data["result"]) if data.get("result") else None
        data["cancel_requested"] = bool(data.get("cancel_requested"))
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---- kinds --------------------------------------------------------------------------------------

PLUGINS_ENV = "CURATOR_JOB_PLUGINS"
# A kind's function: (a training.kinds.JobContext, the job's spec) -> the job's result.
JobFn = Callable[[Any, dict[str, Any]], dict[str, Any]]
_KINDS: dict[str, JobFn | str] = {
    # "module:function", imported when first run, so listing kinds loads no ML stack
    "reward": "training.reward:run_job",
    "sft": "training.sft:run_job",
    "dpo": "training.dpo:run_job",
    "features": "training.routing_jobs:run_features_job",
    "sweep": "training.routing_jobs:run_sweep_job",
    "judge": "training.judge_job:run_judge_job",
    "mix": "training.mix_job:run_build_job",
}
_plugins_loaded: set[str] = set()


def register_kind(name: str, fn: JobFn | str) -> None:
    _KINDS[name] = fn


def load_plugins() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        if module in _plugins_loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise CuratorError(f"the job plugin {module!r} ({PLUGINS_ENV}) cannot be imported: "
                               f"{exc}") from exc  # fmt: skip
        _plugins_loaded.add(module)


def kind_names() -> list[str]:
    load_plugins()
    return sorted(_KINDS)


def job_kind(name: str) -> JobFn:
    load_plugins()
    target = _KINDS.get(name)
    if target is None:
        raise CuratorError(f"unknown job kind {name!r}; known: {', '.join(sorted(_KINDS))}")
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


# ---- creating and reading ----------------------------------------------------------------------


def enqueue(
    store: Store,
    kind: str,
    spec: dict[str, Any],
    *,
    max_retries: int = 0,
    created_by: str | None = None,
    checkpoint_path: str | None = None,
) -> int:
    """Add a job to the queue; the kind must be one a worker can run."""
    if kind not in kind_names():  # unknown kinds fail here, not later in a worker
        raise CuratorError(f"unknown job kind {kind!r}; known: {', '.join(kind_names())}")
    _check_trainer_settings(kind, spec)
    if max_retries < 0:
        raise CuratorError("retries must be 0 or more")
    with store.write():
        cursor = store.conn.execute(
            "INSERT INTO jobs(kind, spec, max_retries, created_by, checkpoint_path) "
            "VALUES (?, ?, ?, ?, ?)",
            (kind, json.dumps(spec, sort_keys=True), max_retries, created_by, checkpoint_path),
        )
        job_id = int(cursor.lastrowid)
        log_dir = store.workspace.dir("logs") if store.workspace else store.path.parent
        store.conn.execute(
            "UPDATE jobs SET log_path = ? WHERE id = ?",
            (str(log_dir / f"job-{job_id}.log"), job_id),
        )
    return job_id


def _check_trainer_settings(kind: str, spec: dict[str, Any]) -> None:
    """A trainer's spec names only its config's settings. Where a run writes is never a setting
    (always ``runs/job-ID``), so a spec that says ``output_dir`` is refused here, not in a worker.
    """
    if kind not in TRAINER_KINDS:
        return
    names = {f.name for f in dataclasses.fields(config_class(kind))} | {"retry_of"}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise CuratorError(f"a {kind} job has no setting(s) {', '.join(unknown)}")


def get_job(store: Store, job_id: int) -> Job:
    row = store.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise CuratorError(f"no job {job_id} in this workspace")
    return Job.from_row(row)


def list_jobs(
    store: Store, *, status: str | None = None, kind: str | None = None, limit: int = 200
) -> list[Job]:
    """Newest first."""
    if status and status not in STATUSES:
        raise CuratorError(f"status must be one of {', '.join(STATUSES)}")
    rows = store.conn.execute(
        "SELECT * FROM jobs WHERE (:status IS NULL OR status = :status) "
        "AND (:kind IS NULL OR kind = :kind) ORDER BY id DESC LIMIT :limit",
        {"status": status or None, "kind": kind or None, "limit": limit},
    )
    return [Job.from_row(r) for r in rows]


def job_metrics(store: Store, job_id: int) -> list[dict[str, Any]]:
    """Every (step, name, value) the job logged, in step order."""
    rows = store.conn.execute(
        "SELECT step, name, value, at FROM job_metrics WHERE job_id = ? ORDER BY step, rowid",
        (job_id,),
    )
    return [dict(r) for r in rows]


def log_tail(job: Job, max_bytes: int = 8000) -> str:
    """The end of a job's log file ('' when it has none yet)."""
    if not job.log_path:
        return ""
    try:
        with open(job.log_path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


# ---- the worker's side -------------------------------------------------------------------------


def claim_next(store: Store, worker: str, *, kinds: tuple[str, ...] | None = None) -> Job | None:
    """Take the oldest queued job for ``worker``, atomically (one IMMEDIATE transaction)."""
    with store.write():
        row = store.conn.execute(
            "SELECT id FROM jobs WHERE status = 'queued' AND (:kinds IS NULL OR kind IN "
            "(SELECT value FROM json_each(:kinds))) ORDER BY id LIMIT 1",
            {"kinds": json.dumps(list(kinds)) if kinds else None},
        ).fetchone()
        if row is None:
            return None
        store.conn.execute(
            "UPDATE jobs SET status = 'running', worker = ?, attempts = attempts + 1, "
            "started_at = ?, heartbeat_at = ?, progress = 0, error = NULL, node = NULL, "
            "log_offset = 0, message = 'starting' WHERE id = ?",
            (worker, _now(), _now(), row[0]),
        )
    return get_job(store, row[0])


def mark_started(store: Store, job_id: int, *, pid: int, pgid: int | None) -> None:
    with store.write():
        store.conn.execute("UPDATE jobs SET pid = ?, pgid = ? WHERE id = ?", (pid, pgid, job_id))


def set_ray_job_id(store: Store, job_id: int, ray_job_id: str | None) -> None:
    """Record the Ray submission that runs the job. While it is set the local reaper leaves the
    row alone (the Ray worker watches it); ``None`` hands the row back to the reaper."""
    with store.write():
        store.conn.execute("UPDATE jobs SET ray_job_id = ? WHERE id = ?", (ray_job_id, job_id))


def set_ray_placement(
    store: Store, job_id: int, *, node: str | None = None, artifact_uri: str | None = None
) -> None:
    """Record where a Ray job runs (its node) and where its artefacts go; None leaves a value."""
    with store.write():
        store.conn.execute(
            "UPDATE jobs SET node = coalesce(?, node), artifact_uri = coalesce(?, artifact_uri) "
            "WHERE id = ?",
            (node, artifact_uri, job_id),
        )


def set_log_offset(store: Store, job_id: int, offset: int) -> None:
    """How much of the Ray job's log has been consumed; written in the same transaction as the
    events read from it, so a successor worker applies each event once."""
    with store.write():
        store.conn.execute("UPDATE jobs SET log_offset = ? WHERE id = ?", (int(offset), job_id))


def requeue(store: Store, job_id: int, why: str) -> bool:
    """Put a running job back in the queue (its checkpoint kept, so it resumes there) while
    retries remain, else fail it; True when it was requeued. For a Ray job whose process died
    without a verdict (its node was lost)."""
    with store.write():
        row = store.conn.execute(
            "SELECT attempts, max_retries FROM jobs WHERE id = ? AND status = 'running'",
            (job_id,),
        ).fetchone()
        if row is None:
            return False
        if row[0] <= row[1]:
            store.conn.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, pid = NULL, pgid = NULL, "
                "ray_job_id = NULL, log_offset = 0, message = ? WHERE id = ?",
                (f"requeued: {why}", job_id),
            )
            return True
    finish(store, job_id, "failed", error=why)
    return False


def adopt_stale_ray_jobs(store: Store, worker: str, *, stale_after_s: float) -> list[Job]:
    """Running jobs on Ray whose worker stopped heartbeating (it was killed): ``worker`` takes
    them over and watches the Ray jobs to their end, since they may well still be running."""
    with store.write():
        ids = [
            r[0]
            for r in store.conn.execute(
                "SELECT id FROM jobs WHERE status = 'running' AND ray_job_id IS NOT NULL "
                "AND (julianday('now') - julianday(coalesce(heartbeat_at, started_at))) * 86400 "
                "> ?",
                (stale_after_s,),
            )
        ]
        for job_id in ids:
            store.conn.execute(
                "UPDATE jobs SET worker = ?, heartbeat_at = ? WHERE id = ?",
                (worker, _now(), job_id),
            )
    return [get_job(store, job_id) for job_id in ids]


def heartbeat(store: Store, job_id: int, worker: str) -> bool:
    """Record that ``worker`` still runs the job; False when the job is no longer its to run."""
    with store.write():
        cursor = store.conn.execute(
            "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND worker = ? AND status = 'running'",
            (_now(), job_id, worker),
        )
    return cursor.rowcount == 1


def set_progress(store: Store, job_id: int, progress: float, message: str | None = None) -> None:
    progress = min(1.0, max(0.0, float(progress)))
    with store.write():
        store.conn.execute(
            "UPDATE jobs SET progress = ?, message = coalesce(?, message) WHERE id = ? "
            "AND status = 'running'",
            (progress, message, job_id),
        )


def add_metrics(store: Store, job_id: int, step: int, values: dict[str, float]) -> None:
    rows = [(job_id, int(step), name, float(v)) for name, v in values.items() if _number(v)]
    if not rows:
        return
    with store.write():
        store.conn.executemany(
            "INSERT INTO job_metrics(job_id, step, name, value) VALUES (?, ?, ?, ?)", rows
        )


def _number(value: Any) -> bool:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return value == value and abs(value) != float("inf")


def set_checkpoint(store: Store, job_id: int, path: str) -> None:
    with store.write():
        store.conn.execute("UPDATE jobs SET checkpoint_path = ? WHERE id = ?", (path, job_id))


def finish(
    store: Store,
    job_id: int,
    status: str,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """End a running job; False (and nothing written) when it already ended, so a cancel or a
    reaper's verdict is never overwritten by a late finisher."""
    if status not in FINISHED:
        raise ValueError(f"a job ends as one of {FINISHED}, not {status!r}")
    with store.write():
        cursor = store.conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, "
            "progress = CASE WHEN ? = 'succeeded' THEN 1 ELSE progress END, "
            "message = ? WHERE id = ? AND status = 'running'",
            (
                status,
                json.dumps(result, sort_keys=True, default=str) if result is not None else None,
                error,
                _now(),
                status,
                status,
                job_id,
            ),
        )
    return cursor.rowcount == 1


def cancel_requested(store: Store, job_id: int) -> bool:
    row = store.conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


# ---- the user's side ---------------------------------------------------------------------------


def request_cancel(store: Store, job_id: int) -> Job:
    """Cancel a job: a queued one at once, a running one by asking its worker, which stops the
    job's whole process group (or its Ray job) and marks it cancelled."""
    job = get_job(store, job_id)
    if job.finished:
        raise CuratorError(f"job {job_id} already ended ({job.status})")
    with store.write():
        store.conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?, message = 'cancelled' "
            "WHERE id = ? AND status = 'queued'",
            (_now(), job_id),
        )
        store.conn.execute(
            "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,)
        )
    return get_job(store, job_id)


def retry(store: Store, job_id: int, *, created_by: str | None = None) -> int:
    """Queue a finished job again as a new job with the same spec (the old one stays as history).
    A failed or cancelled job's retry resumes from its last checkpoint; a succeeded one's starts
    afresh (resuming would find nothing left to do)."""
    job = get_job(store, job_id)
    if not job.finished:
        raise CuratorError(f"job {job_id} is still {job.status}; cancel it first")
    spec = dict(job.spec) | {"retry_of": job.id}
    return enqueue(
        store,
        job.kind,
        spec,
        max_retries=job.max_retries,
        created_by=created_by or job.created_by,
        checkpoint_path=None if job.status == "succeeded" else job.checkpoint_path,
    )


def reap_stale(store: Store, *, stale_after_s: float) -> list[tuple[int, str]]:
    """Running jobs whose worker stopped heartbeating: requeued while retries remain (they resume
    from their checkpoint), failed otherwise. Returns (job id, new status) pairs."""
    changed: list[tuple[int, str]] = []
    with store.write():
        rows = store.conn.execute(
            "SELECT id, attempts, max_retries, worker, heartbeat_at FROM jobs "
            "WHERE status = 'running' AND ray_job_id IS NULL "
            "AND (julianday('now') - julianday(coalesce(heartbeat_at, started_at))) * 86400 > ?",
            (stale_after_s,),
        ).fetchall()
        for job_id, attempts, max_retries, worker, beat in rows:
            why = f"worker {worker} stopped heartbeating (last at {beat})"
            if attempts <= max_retries:
                store.conn.execute(
                    "UPDATE jobs SET status = 'queued', worker = NULL, pid = NULL, pgid = NULL, "
                    "message = ? WHERE id = ?",
                    (f"requeued: {why}", job_id),
                )
                changed.append((job_id, "queued"))
            else:
                store.conn.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, "
                    "message = 'failed' WHERE id = ?",
                    (why, _now(), job_id),
                )
                changed.append((job_id, "failed"))
    return changed
