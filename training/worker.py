"""A local worker: claims queued jobs and runs each in its own process group.

``curator worker`` runs :meth:`Worker.run`. Per job the worker starts ``python -m
training.runner`` as the leader of a new session, writes its heartbeat while the process lives,
and stops the whole group (SIGTERM, then SIGKILL after a grace period) when the job is cancelled.
Before each claim it reaps jobs whose worker died (no heartbeat for ``stale_after_s``). The app
calls :func:`ensure_local_worker` so that a job launched from a page always has a worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.jobs import Job

PROJECT_ROOT = Path(__file__).resolve().parent.parent
WORKER_PIDFILE = "worker.pid"
# Set (to anything) where another worker takes the jobs, e.g. `curator worker --ray`, or in tests.
NO_AUTO_WORKER_ENV = "CURATOR_NO_AUTO_WORKER"


@dataclass
class WorkerConfig:
    """How a worker polls, beats and stops jobs."""

    poll_s: float = field(default=1.0, metadata={"help": "Seconds between looks at the queue."})
    heartbeat_s: float = field(default=2.0, metadata={"help": "Seconds between heartbeats."})
    stale_after_s: float = field(
        default=60.0,
        metadata={"help": "A running job without a heartbeat this long lost its worker."},
    )
    kill_grace_s: float = field(
        default=5.0, metadata={"help": "Seconds between SIGTERM and SIGKILL on cancel."}
    )
    drain: bool = field(
        default=False, metadata={"help": "Run what is queued, then exit once it has ended."}
    )
    max_jobs: int | None = field(
        default=None, metadata={"help": "Exit once this many jobs have ended (--once: one)."}
    )
    idle_exit_s: float | None = field(
        default=None, metadata={"help": "Exit after this long with nothing to do."}
    )
    name: str | None = field(default=None, metadata={"help": "Worker name (default host:pid)."})


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, grace_s: float) -> None:
    """SIGTERM every process of the group, then SIGKILL whatever is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


class Worker:
    def __init__(
        self, workspace: Workspace | str | Path | None, config: WorkerConfig | None = None
    ):
        self.workspace = (
            workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        )
        self.config = config or WorkerConfig()
        self.name = self.config.name or f"{socket.gethostname()}:{os.getpid()}"
        self.store = Store.open(self.workspace, create=False)
        self._stopping = False

    def stop(self, *_: object) -> None:
        self._stopping = True

    def run(self, *, on_job: Callable[[Job], None] | None = None) -> int:
        """Work until stopped, or with ``drain`` until the queue is empty, or until ``max_jobs``
        jobs have ended; returns the number of jobs run."""
        done = 0
        idle_since = time.monotonic()
        limit = self.config.max_jobs
        while not self._stopping and (limit is None or done < limit):
            jobs.reap_stale(self.store, stale_after_s=self.config.stale_after_s)
            job = jobs.claim_next(self.store, self.name)
            if job is None:
                if self.config.drain:
                    break
                if (
                    self.config.idle_exit_s is not None
                    and time.monotonic() - idle_since > self.config.idle_exit_s
                ):
                    break
                time.sleep(self.config.poll_s)
                continue
            if on_job:
                on_job(job)
            self.run_job(job)
            done += 1
            idle_since = time.monotonic()
        return done

    def _command(self, job: Job) -> list[str]:
        return [
            sys.executable,
            "-m",
            "training.runner",
            "--workspace",
            str(self.workspace.root),
            "--job",
            str(job.id),
            "--watch-parent",
            str(os.getpid()),
        ]

    def run_job(self, job: Job) -> Job:
        """Run one claimed job to its end; returns its final row."""
        log_path = Path(job.log_path or self.workspace.dir("logs") / f"job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                          env.get("PYTHONPATH")]))  # fmt: skip
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        with open(log_path, "ab") as log:
            log.write(f"--- attempt {job.attempts} by {self.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self._command(job),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
                cwd=str(PROJECT_ROOT),
            )
        pgid = proc.pid  # a new session's leader leads its own group
        jobs.mark_started(self.store, job.id, pid=proc.pid, pgid=pgid)
        next_beat = 0.0
        cancelled = False
        while proc.poll() is None:
            now = time.monotonic()
            if now >= next_beat:
                jobs.heartbeat(self.store, job.id, self.name)
                next_beat = now + self.config.heartbeat_s
                if jobs.cancel_requested(self.store, job.id):
                    cancelled = True
                    kill_group(pgid, self.config.kill_grace_s)
                    break
            time.sleep(0.1)
        code = proc.wait()
        # Whatever the job started and left behind goes with it.
        kill_group(pgid, 0)
        if cancelled:
            jobs.finish(self.store, job.id, "cancelled", error="cancelled by request")
        elif code != 0:
            jobs.finish(
                self.store,
                job.id,
                "failed",
                error=_exit_reason(code) + _last_line(log_path),
            )
        else:  # a runner that exits 0 has recorded the outcome; make sure nothing stays running
            jobs.finish(
                self.store, job.id, "failed", error="the job process ended without a result"
            )
        return jobs.get_job(self.store, job.id)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"the job process was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"the job process was killed by signal {-code}"
    return f"the job process exited with code {code}"


def _last_line(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1][-300:]}" if lines else ""


# ---- one worker per workspace, started by the app -------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) no longer works
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def running_worker(workspace: Workspace) -> int | None:
    """The pid of the workspace's background worker, if one runs."""
    pidfile = workspace.dir("logs") / WORKER_PIDFILE
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


@contextlib.contextmanager
def _worker_lock(workspace: Workspace):
    """Serialise starting workers, so two app sessions opening at once start one between them."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the pidfile check alone
        yield
        return
    with open(workspace.dir("logs") / "worker.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_local_worker(workspace: Workspace, *, idle_exit_s: float = 600.0) -> int:
    """Start a background ``curator worker`` for the workspace unless one runs; returns its pid.

    The worker outlives the page that started it (its own session) and exits after
    ``idle_exit_s`` without work, so an app left open does not hold a process forever. The
    pidfile is written here, before the worker has even imported, so a second call at once
    finds it.
    """
    if not workspace.exists():
        raise CuratorError(f"no workspace at {workspace.root}")
    with _worker_lock(workspace):
        pid = running_worker(workspace)
        if pid:
            return pid
        log = workspace.dir("logs") / "worker.log"
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "app.cli", "worker", "--workspace",
                    str(workspace.root), "--idle-exit", str(idle_exit_s), "--pidfile",
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(PROJECT_ROOT),
            )  # fmt: skip
        (workspace.dir("logs") / WORKER_PIDFILE).write_text(f"{proc.pid}\n")
    return proc.pid


def auto_worker(workspace: Workspace) -> int | None:
    """What the app and ``--background`` commands call after queueing work: the running worker,
    or a newly started one, unless ``CURATOR_NO_AUTO_WORKER`` says jobs are left to another."""
    if os.environ.get(NO_AUTO_WORKER_ENV):
        return running_worker(workspace)
    return ensure_local_worker(workspace)


@contextlib.contextmanager
def pidfile(workspace: Workspace):
    """Claim the workspace's worker pidfile for this process while it works."""
    path = workspace.dir("logs") / WORKER_PIDFILE
    with _worker_lock(workspace):
        other = running_worker(workspace)
        if other and other != os.getpid():
            raise CuratorError(f"a worker already runs for this workspace (pid {other})")
        path.write_text(f"{os.getpid()}\n")
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_text().split()[0] == str(os.getpid()):
                path.unlink()
