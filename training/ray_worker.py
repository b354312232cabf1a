"""A worker that runs queued jobs on a Ray cluster through the Ray Jobs API.

``curator worker --ray ADDRESS`` calls :func:`run_ray_worker`. The worker claims jobs from the
same table as a local worker and submits ``python -m training.runner --workspace DIR --job ID``
for each; the runner records the outcome itself, exactly as it does locally. Meanwhile the worker
beats the job's heartbeat, appends the Ray job's new log text to the job's log file, stops the Ray
job when the job is cancelled, and settles the row when Ray ends a job the runner could not
(it never started, was killed, or was stopped from Ray's side).

The runner on the cluster opens the workspace by its path, so that path, the checkout and the
interpreter must be reachable from the node that runs the job: a cluster on this machine, or
nodes that mount them at the same paths. The store is SQLite in WAL mode, which needs every
writer on one host: a multi-node cluster must run curator jobs on the workspace's host.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.jobs import Job
from training.kinds import PLUGINS_ENV
from training.worker import PROJECT_ROOT, WorkerConfig

INSTALL_HINT = "install the cluster extra: pip install 'hybrid-curator[cluster]' (or make cluster)"
ACTIVE = ("PENDING", "RUNNING")
# What a job on the cluster needs from this environment. Only these travel: a runtime_env is
# shown on the cluster's dashboard, so secrets go through ``forward_env`` on purpose only.
FORWARDED_ENV = (PLUGINS_ENV, "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                 "TOKENIZERS_PARALLELISM")  # fmt: skip


@dataclass
class RayWorkerConfig(WorkerConfig):
    """A local worker's settings plus how jobs go to the cluster."""

    max_concurrent: int = field(
        default=4, metadata={"help": "Jobs the worker keeps on the cluster at once."}
    )
    python: str | None = field(
        default=None,
        metadata={"help": "Interpreter on the cluster nodes (default: this worker's own, which "
                          "the nodes reach through the shared filesystem)."},
    )  # fmt: skip
    num_cpus: float | None = field(
        default=None, metadata={"help": "CPUs Ray reserves for each job (default: none)."}
    )
    num_gpus: float | None = field(
        default=None, metadata={"help": "GPUs Ray reserves for each job; puts it on a GPU node."}
    )
    forward_env: tuple[str, ...] = field(
        default=(),
        metadata={"help": "More environment variables to pass to the jobs (e.g. an API key "
                          "a judge reads); their values show on the cluster's dashboard."},
    )  # fmt: skip
    log_s: float = field(
        default=2.0, metadata={"help": "Seconds between copies of a job's Ray logs."}
    )
    stop_wait_s: float = field(
        default=30.0,
        metadata={"help": "Seconds to wait for Ray to confirm that a stopped job ended."},
    )


def job_submission_client(address: str) -> Any:
    """A ``JobSubmissionClient`` for ``address`` (the dashboard URL, e.g. http://HEAD:8265).

    Ray is imported here, not at module import, so the rest of the project runs without it."""
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise CuratorError(f"running jobs on Ray needs the ray package; {INSTALL_HINT}") from exc
    try:
        return JobSubmissionClient(address)
    except (OSError, RuntimeError, ValueError) as exc:
        raise CuratorError(
            f"cannot reach the Ray Jobs API at {address!r} (the dashboard address, e.g. "
            f"http://HEAD:8265): {exc}"
        ) from exc


@dataclass
class _OnRay:
    """A claimed job while it is on the cluster."""

    job: Job
    submission_id: str
    log_path: Path
    logs: str = ""
    next_beat: float = 0.0
    next_log: float = 0.0
    stop_sent_at: float | None = None
    unreachable_since: float | None = None


class RayWorker:
    """Claims jobs and runs them on the Ray cluster at ``address``, several at a time."""

    def __init__(
        self,
        workspace: Workspace | str | Path | None,
        address: str,
        config: RayWorkerConfig | None = None,
    ):
        self.workspace = (
            workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        )
        self.address = address
        self.config = config or RayWorkerConfig()
        if self.config.max_concurrent < 1:
            raise CuratorError("max_concurrent must be 1 or more")
        self.name = self.config.name or f"{socket.gethostname()}:{os.getpid()}:ray"
        self.client = job_submission_client(address)
        self.store = Store.open(self.workspace, create=False)
        self.on_ray: dict[int, _OnRay] = {}
        self._draining = False
        self._releasing = False
        self._failure: str | None = None

    def stop(self, *_: object) -> None:
        """First call: claim nothing more and let the jobs on the cluster finish. Second call:
        stop those jobs too and hand their rows back to the reaper (as if the worker died)."""
        if self._draining:
            self._releasing = True
        self._draining = True

    # ---- the loop ------------------------------------------------------------------------------

    def run(self, *, on_job: Callable[[Job], None] | None = None) -> int:
        """Work until stopped (or, with ``once``, until the queue is empty and every job has
        ended); returns the number of jobs that ended."""
        done = 0
        idle_since = time.monotonic()
        try:
            while not self._releasing:
                claimed_nothing = False
                if not self._draining:
                    jobs.reap_stale(self.store, stale_after_s=self.config.stale_after_s)
                    self._adopt()
                    while len(self.on_ray) < self.config.max_concurrent and not self._draining:
                        job = jobs.claim_next(self.store, self.name)
                        if job is None:
                            claimed_nothing = True
                            break
                        if on_job:
                            on_job(job)
                        self._submit(job)
                done += sum(1 for job_id in list(self.on_ray) if self._poll(job_id))
                if self.on_ray:
                    idle_since = time.monotonic()
                elif self._draining or (claimed_nothing and self.config.once):
                    break
                elif (
                    self.config.idle_exit_s is not None
                    and time.monotonic() - idle_since > self.config.idle_exit_s
                ):
                    break
                time.sleep(self.config.poll_s)
        finally:
            self._release()
        if self._failure:
            raise CuratorError(self._failure)
        return done

    def _entrypoint(self, job: Job) -> str:
        python = self.config.python or sys.executable
        # The checkout as working directory, as a local worker runs it: relative paths in a
        # spec mean the same on the cluster.
        return (
            f"cd {shlex.quote(str(PROJECT_ROOT))} && {shlex.quote(python)} -m training.runner "
            f"--workspace {shlex.quote(str(self.workspace.root))} --job {job.id}"
        )

    def _env_vars(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in FORWARDED_ENV + tuple(self.config.forward_env)
               if name in os.environ}  # fmt: skip
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
        )
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def _submit(self, job: Job) -> None:
        log_path = Path(job.log_path or self.workspace.dir("logs") / f"job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per attempt and per workspace: a cluster refuses a submission id it has seen.
        submission_id = f"curator-job-{job.id}-{uuid.uuid4().hex[:10]}"
        try:
            self.client.submit_job(
                entrypoint=self._entrypoint(job),
                submission_id=submission_id,
                runtime_env={"env_vars": self._env_vars()},
                metadata={"curator_workspace": str(self.workspace.root),
                          "curator_job": str(job.id), "curator_kind": job.kind},
                entrypoint_num_cpus=self.config.num_cpus,
                entrypoint_num_gpus=self.config.num_gpus,
            )  # fmt: skip
        except (OSError, RuntimeError, ValueError) as exc:
            # The cluster, not the job, is at fault: fail this one and claim no more.
            why = f"could not submit the job to Ray at {self.address}: {exc}"
            jobs.finish(self.store, job.id, "failed", error=why)
            self._failure = why
            self._draining = True
            return
        jobs.set_ray_job_id(self.store, job.id, submission_id)
        jobs.set_progress(self.store, job.id, 0.0, f"submitted to Ray as {submission_id}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"--- attempt {job.attempts} by {self.name} on Ray {self.address} as "
                      f"{submission_id}\n")  # fmt: skip
        self.on_ray[job.id] = _OnRay(job=job, submission_id=submission_id, log_path=log_path)

    def _adopt(self) -> None:
        """Watch the Ray jobs of a worker that died: their rows end as the Ray jobs do."""
        for job in jobs.adopt_stale_ray_jobs(
            self.store, self.name, stale_after_s=self.config.stale_after_s
        ):
            log_path = Path(job.log_path or self.workspace.dir("logs") / f"job-{job.id}.log")
            run = _OnRay(job=job, submission_id=job.ray_job_id or "", log_path=log_path)
            try:  # what the old worker may already have copied is not copied again
                run.logs = self.client.get_job_logs(run.submission_id)
            except (OSError, RuntimeError):
                run.logs = ""
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(f"\n--- {self.name} took over watching {run.submission_id}\n")
            self.on_ray[job.id] = run

    def _poll(self, job_id: int) -> bool:
        """Look at one job on the cluster; True once it has ended and the row is settled."""
        run = self.on_ray[job_id]
        now = time.monotonic()
        try:
            info = self.client.get_job_info(run.submission_id)
        except (OSError, RuntimeError) as exc:
            run.unreachable_since = run.unreachable_since or now
            if now - run.unreachable_since < self.config.stale_after_s:
                return False  # a blip: the runner still records its own outcome meanwhile
            self._settle(run, "failed", f"lost the Ray cluster at {self.address}: {exc}")
            return True
        run.unreachable_since = None
        status = str(info.status)
        if status in ACTIVE:
            if now >= run.next_log:
                self._mirror_logs(run)
                run.next_log = now + self.config.log_s
            if now >= run.next_beat:
                jobs.heartbeat(self.store, job_id, self.name)
                run.next_beat = now + self.config.heartbeat_s
                if run.stop_sent_at is None and jobs.cancel_requested(self.store, job_id):
                    self._stop_on_ray(run)
            if run.stop_sent_at is not None and now - run.stop_sent_at > self.config.stop_wait_s:
                self._settle(run, "cancelled", "cancelled by request (Ray did not confirm)")
                return True
            return False
        self._mirror_logs(run)
        if run.stop_sent_at is not None or jobs.cancel_requested(self.store, job_id):
            self._settle(run, "cancelled", "cancelled by request")
        elif status == "SUCCEEDED":  # a runner that exits 0 has recorded the outcome
            self._settle(run, "failed", "the job process ended without a result")
        elif status == "STOPPED":
            self._settle(run, "cancelled", f"stopped on the Ray cluster: {_first_line(info)}")
        else:
            self._settle(run, "failed", f"the Ray job failed: {_first_line(info)}"
                                        f"{_last_line(run.logs)}")  # fmt: skip
        return True

    def _stop_on_ray(self, run: _OnRay) -> None:
        run.stop_sent_at = time.monotonic()
        try:
            self.client.stop_job(run.submission_id)
        except (OSError, RuntimeError):
            pass  # already ended, or unreachable: the next poll tells which

    def _mirror_logs(self, run: _OnRay) -> None:
        """Append the text Ray has for the job that the log file does not have yet."""
        try:
            logs = self.client.get_job_logs(run.submission_id)
        except (OSError, RuntimeError):
            return
        if not logs.startswith(run.logs):  # Ray rotated or cut them: copy what is new to us
            run.logs = ""
        new = logs[len(run.logs) :]
        if new:
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write(new)
            run.logs = logs

    def _end_log(self, run: _OnRay) -> None:
        """Close the job's last line (Ray's logs drop the final newline), so that a retry's
        header starts a line of its own."""
        if run.logs and not run.logs.endswith("\n"):
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write("\n")

    def _settle(self, run: _OnRay, status: str, error: str) -> None:
        """End the row unless the runner already did (``finish`` never overwrites an end)."""
        jobs.finish(self.store, run.job.id, status, error=error)
        self._end_log(run)
        del self.on_ray[run.job.id]

    def _release(self) -> None:
        """Stop whatever this worker still has on the cluster and hand the rows back to the
        reaper, which requeues them (resuming from a checkpoint) or fails them, as for a local
        worker that died."""
        if not self.on_ray:
            return
        for run in self.on_ray.values():
            if run.stop_sent_at is None:
                self._stop_on_ray(run)
        deadline = time.monotonic() + self.config.stop_wait_s
        while self.on_ray and time.monotonic() < deadline:
            for job_id, run in list(self.on_ray.items()):
                try:
                    ended = str(self.client.get_job_info(run.submission_id).status) not in ACTIVE
                except (OSError, RuntimeError):
                    ended = False
                if ended:
                    self._mirror_logs(run)
                    self._end_log(run)
                    del self.on_ray[job_id]
                    if jobs.get_job(self.store, job_id).status == "running":
                        jobs.set_ray_job_id(self.store, job_id, None)
            time.sleep(min(self.config.poll_s, 0.5))
        for job_id in self.on_ray:  # Ray never confirmed: the runner may still write its end
            jobs.set_ray_job_id(self.store, job_id, None)
        self.on_ray.clear()


def _first_line(info: Any) -> str:
    message = (getattr(info, "message", None) or str(info.status)).strip()
    return message.splitlines()[0][:300] if message else str(info.status)


def _last_line(logs: str) -> str:
    lines = [ln for ln in logs.splitlines() if ln.strip()]
    return f": {lines[-1][-300:]}" if lines else ""


def run_ray_worker(
    workspace: Workspace | str | Path | None, address: str, config: RayWorkerConfig | None = None
) -> int:
    """``curator worker --ray ADDRESS``: run queued jobs on the cluster until stopped; returns
    the number of jobs that ended. SIGINT/SIGTERM drain (no new claims); a second one stops the
    cluster's jobs as well."""
    worker = RayWorker(workspace, address, config)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, worker.stop)
    print(f"worker {worker.name} on {worker.workspace.root} -> Ray {address}", file=sys.stderr)
    try:
        return worker.run(
            on_job=lambda job: print(f"job {job.id} ({job.kind})", file=sys.stderr, flush=True)
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
