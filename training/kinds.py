"""What a running job sees and may tell the store (:class:`JobContext`), and how it says it
stopped on a cancel (:class:`JobCancelled`).

A kind is a function ``run(ctx, spec) -> result`` registered under a name. The built-in kinds
are the trainers (``reward``, ``sft``, ``dpo``), routing features (``features``), reward-model
sweeps (``sweep``), LM judging (``judge``) and mixture builds (``mix``). Modules named in
``CURATOR_JOB_PLUGINS`` (comma-separated, importable) may register more with
:func:`register_kind`; the runner imports them before it looks a kind up, so a team's own job
types run under the same queue, cancel and heartbeat rules. The registry itself lives with the
queue (:mod:`training.jobs`), which refuses unknown kinds at enqueue time; it is re-exported
here, where plugins and the runner find it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.jobs import PLUGINS_ENV, Job, job_kind, kind_names, load_plugins, register_kind
from training.task_pool import LocalPool, TaskPool

__all__ = [
    "PLUGINS_ENV",
    "JobCancelled",
    "JobContext",
    "JobFn",
    "stopping_progress",
    "job_kind",
    "kind_names",
    "load_plugins",
    "register_kind",
]


class JobCancelled(Exception):
    """Raised inside a job that noticed it was cancelled and stopped cleanly."""


@dataclass
class JobContext:
    """What a running job sees: its store, its folder, and ways to report back."""

    store: Store
    workspace: Workspace
    job: Job

    @property
    def run_dir(self) -> Path:
        """The job's own folder under ``runs/`` (checkpoints, model, card)."""
        path = self.workspace.dir("runs") / f"job-{self.job.id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def resume_from(self) -> str | None:
        """The checkpoint a requeued or retried job continues from, if it still exists."""
        path = self.job.checkpoint_path
        return path if path and Path(path).exists() else None

    def progress(self, fraction: float, message: str | None = None) -> None:
        jobs.set_progress(self.store, self.job.id, fraction, message)

    def metrics(self, step: int, **values: float) -> None:
        jobs.add_metrics(self.store, self.job.id, step, values)

    def checkpoint(self, path: str | Path) -> None:
        """Record a checkpoint the job has finished writing; a retry resumes from it."""
        jobs.set_checkpoint(self.store, self.job.id, str(path))
        self.job.checkpoint_path = str(path)

    def checkpoint_state(self, name: str, state: dict[str, Any]) -> Path:
        """Write a small JSON checkpoint atomically and record it.

        A job's process group can be SIGKILLed at any instant (its worker died, or a cancel ran
        out of grace). Rewriting the recorded file in place could then leave it empty, and the
        retry that should resume from it would fail; a renamed temporary file is either the old
        state or the new one.
        """
        path = self.run_dir / name
        partial = path.with_name(f".{path.name}.partial")
        try:
            with partial.open("w") as handle:
                json.dump(state, handle, sort_keys=True)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self.checkpoint(path)
        return path

    def resumed_state(self) -> dict[str, Any] | None:
        """The state last saved with :meth:`checkpoint_state`, when this run is a resumption."""
        path = self.resume_from
        return json.loads(Path(path).read_text()) if path else None

    def should_stop(self) -> bool:
        """Whether someone asked to cancel; long loops check it between steps."""
        return jobs.cancel_requested(self.store, self.job.id)

    @property
    def store_is_snapshot(self) -> bool:
        """Whether ``store`` is a copy made for this attempt (a job on a cluster's node), so
        that what a checkpoint points at in it is gone when the job is retried."""
        return False

    @property
    def pool(self) -> TaskPool:
        """Where the job's independent steps run (:mod:`training.task_pool`): here, one after
        another; a job on a Ray cluster spreads them as tasks over its nodes."""
        return LocalPool()


JobFn = Callable[[JobContext, dict[str, Any]], dict[str, Any]]


def stopping_progress(ctx: JobContext, after: Callable[[], None] | None = None):
    """A progress callback that reports, calls ``after`` (a checkpoint), and stops the job
    when it was cancelled."""

    def progress(done: int, total: int) -> None:
        ctx.progress(done / total if total else 1.0, f"{done}/{total}")
        if after is not None:
            after()
        if ctx.should_stop():
            raise JobCancelled

    return progress
