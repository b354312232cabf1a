"""The process a job runs in on a Ray node: ``python -m training.remote`` in the job's bundle.

It gets no workspace path and never opens the workspace's store (an audit hook refuses any file
named ``curator.db``): its inputs come from the bundle (:mod:`training.bundle`), loaded into an
in-memory store, and the job kind runs unchanged against it through :class:`RemoteJobContext`.
What the job reports goes to stdout as events, one JSON object per line after
:data:`EVENT_PREFIX` (progress, metrics, checkpoints, the node, the result), which the worker on
the workspace's host reads from Ray's job logs and writes to the store. Its files go to the
storage (:mod:`training.storage`); a local storage folder this node cannot see is reached
through the same stream (``file`` events, base64 chunks) up to :data:`SHIP_MAX_BYTES`.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.workspace import DB_NAME, Workspace
from training.bundle import Bundle, collect_rows, open_bundle
from training.jobs import Job
from training.kinds import JobCancelled, JobContext, job_kind
from training.storage import Storage, is_local, local_path
from training.task_pool import TaskPool, pool_for_this_process

EVENT_PREFIX = "@@curator-event@@ "
PROBE_FILE = ".curator-probe"
ROWS_FILE = "results/rows.jsonl"
WORKSPACE_FILES = "workspace"  # files a job leaves beside its run for the workspace (models/)
CHUNK_BYTES = 192 * 1024  # raw bytes per ``file`` event (256 KiB of base64)
# What may travel through the log stream when the node cannot reach a local storage folder.
# More than that needs a storage every node reaches (an fsspec URL, or a shared folder).
SHIP_MAX_BYTES = 256 * 1024**2


class EventStream:
    """Events as marked JSON lines on stdout; a lock keeps lines whole across threads."""

    def __init__(self, out: Any = None):
        self.out = out or sys.stdout
        self.lock = threading.Lock()

    def emit(self, kind: str, **data: Any) -> None:
        line = EVENT_PREFIX + json.dumps({"type": kind, **data}, default=str, sort_keys=True)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


def parse_event(line: str) -> dict[str, Any] | None:
    """The event a log line carries, or None for an ordinary line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    try:
        event = json.loads(line[len(EVENT_PREFIX) :])
    except ValueError:
        return None
    return event if isinstance(event, dict) and "type" in event else None


def refuse_workspace_store() -> None:
    """Make opening any ``curator.db`` an error in this process: a cluster job writes nothing to
    a workspace's store, and SQLite over a network or from two hosts would corrupt it."""

    def hook(event: str, args: tuple) -> None:
        if event in ("open", "sqlite3.connect") and args:
            target = args[0]
            if isinstance(target, bytes):
                target = target.decode(errors="replace")
            if isinstance(target, str | os.PathLike) and Path(target).name == DB_NAME:
                raise PermissionError(f"a job on a cluster node never opens a workspace store "
                                      f"({target})")  # fmt: skip

    sys.addaudithook(hook)


class Uploader:
    """Copies the job's run folder to its place in the storage, sending only what changed."""

    def __init__(self, storage: Storage, run: str, local: Path, events: EventStream, ship: bool):
        self.storage, self.run, self.local, self.events, self.ship = (
            storage, run, local, events, ship)  # fmt: skip
        self.sent: dict[str, tuple[int, int]] = {}
        self.shipped = 0

    def sync(self, *, required: bool) -> bool:
        """Send new and changed files; False when shipping them would pass the limit (then
        nothing is sent; with ``required`` that is an error)."""
        changed = []
        for path in sorted(self.local.rglob("*")):
            if not path.is_file() or path.name.endswith(".partial"):
                continue
            rel = path.relative_to(self.local).as_posix()
            stat = path.stat()
            if self.sent.get(rel) != (stat.st_size, stat.st_mtime_ns):
                changed.append((rel, path, (stat.st_size, stat.st_mtime_ns)))
        size = sum(key[0] for _, _, key in changed)
        if self.ship and self.shipped + size > SHIP_MAX_BYTES:
            message = (
                f"the job's files ({(self.shipped + size) / 1024**2:.0f} MiB) are more than "
                f"{SHIP_MAX_BYTES // 1024**2} MiB can travel back through the job's log from a "
                f"node that cannot see the storage folder {self.storage.uri}; give the worker a "
                "storage every node reaches (--storage s3://... or a shared folder)"
            )
            if required:
                raise CuratorError(message)
            print(f"note: not sent yet: {message}", flush=True)
            return False
        for rel, path, key in changed:
            if self.ship:
                self._ship(rel, path, key[0])
            else:
                self.storage.put_file(path, f"{self.run}/{rel}")
            self.sent[rel] = key
        self.shipped += size if self.ship else 0
        return True

    def _ship(self, rel: str, path: Path, size: int) -> None:
        with path.open("rb") as handle:
            offset = 0
            while True:
                data = handle.read(CHUNK_BYTES)
                self.events.emit("file", path=rel, offset=offset, size=size,
                                 data=base64.b64encode(data).decode("ascii"))  # fmt: skip
                offset += len(data)
                if offset >= size or not data:
                    break


@dataclass
class RemoteJobContext(JobContext):
    """A :class:`JobContext` whose store is the bundle's snapshot and whose reports are events."""

    events: EventStream = field(default_factory=EventStream)
    run_folder: Path = Path()
    uploader: Uploader | None = None
    resume_path: Path | None = None
    stop_flag: threading.Event = field(default_factory=threading.Event)
    _pool: TaskPool | None = None

    @property
    def run_dir(self) -> Path:
        self.run_folder.mkdir(parents=True, exist_ok=True)
        return self.run_folder

    @property
    def resume_from(self) -> str | None:
        path = self.resume_path
        return str(path) if path and path.exists() else None

    def progress(self, fraction: float, message: str | None = None) -> None:
        self.events.emit("progress", fraction=float(fraction), message=message)

    def metrics(self, step: int, **values: float) -> None:
        numbers = {}
        for name, value in values.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(number):
                numbers[name] = number
        if numbers:
            self.events.emit("metrics", step=int(step), values=numbers)

    def checkpoint(self, path: str | Path) -> None:
        """Send the run folder to the storage, then name the checkpoint: a retry resumes from
        the last checkpoint that the storage holds in full."""
        rel = Path(path).resolve().relative_to(self.run_dir.resolve()).as_posix()
        if self.uploader is None or self.uploader.sync(required=False):
            self.events.emit("checkpoint", path=rel)
        self.job.checkpoint_path = str(path)

    def should_stop(self) -> bool:
        return self.stop_flag.is_set()

    @property
    def store_is_snapshot(self) -> bool:
        return True

    @property
    def pool(self) -> TaskPool:
        """Ray tasks over the cluster when this job runs under the Ray Jobs API (made once,
        on first use: a job with nothing to spread never connects)."""
        if self._pool is None:
            self._pool = pool_for_this_process()
        return self._pool


def _reachable(storage: Storage, run: str, probe: str | None) -> bool:
    """Whether this node writes to the storage itself: any URL; a local folder only where the
    worker's probe file is readable (the node shares the folder)."""
    if not is_local(storage.uri):
        return True
    try:
        return bool(probe) and (local_path(storage.uri) / run / PROBE_FILE).read_text() == probe
    except OSError:
        return False


def _resume_path(bundle: Bundle, run_local: Path) -> Path | None:
    resume = bundle.description.get("resume")
    if not resume:
        return None
    if resume["source"] == "bundle":
        return bundle.folder / resume["path"]
    uri = resume["uri"]
    target = run_local.parent / "resume" / uri.rstrip("/").rsplit("/", 1)[-1]
    return Storage.at(uri).get_dir("", target)


def _node_name() -> str:
    return os.environ.get("RAY_NODE_ID") or socket.gethostname()


def run(folder: Path, events: EventStream | None = None) -> int:
    """Run the bundle's job; returns the exit code (0 also for a cancel)."""
    events = events or EventStream()
    bundle = open_bundle(folder)
    description = bundle.description
    job = Job(id=int(bundle.job["id"]), kind=bundle.job["kind"], spec=bundle.spec(),
              status="running", attempts=int(bundle.job.get("attempts", 1)))  # fmt: skip
    print(f"job {job.id} ({job.kind}) attempt {job.attempts} in pid {os.getpid()} "
          f"on {socket.gethostname()}", flush=True)  # fmt: skip
    events.emit("node", node=_node_name(), host=socket.gethostname())
    scratch = Path(tempfile.mkdtemp(prefix=f"curator-job-{job.id}-"))
    try:
        workspace = Workspace(scratch / "workspace").ensure()
        store = bundle.load_store(workspace)
        run_local = workspace.dir("runs") / description["run"]
        run_local.mkdir(parents=True, exist_ok=True)
        storage = Storage.at(description["storage"])
        ship = not _reachable(storage, description["run"], description.get("probe"))
        print(f"artefacts to {storage.url(description['run'])}"
              + (" (through the job's log: this node cannot see that folder)" if ship else ""),
              flush=True)  # fmt: skip
        uploader = Uploader(storage, description["run"], run_local, events, ship)
        ctx = RemoteJobContext(store=store, workspace=workspace, job=job, events=events,
                               run_folder=run_local, uploader=uploader,
                               resume_path=_resume_path(bundle, run_local))  # fmt: skip
        if ctx.resume_from:
            print(f"resuming from {ctx.resume_from}", flush=True)
        # Ray stops a job with SIGTERM, then SIGKILL a few seconds later: ask the job to stop
        # at its next step (a trainer saves a checkpoint first).
        signal.signal(signal.SIGTERM, lambda *_: ctx.stop_flag.set())
        try:
            result = job_kind(job.kind)(ctx, dict(job.spec))
        except JobCancelled:
            uploader.sync(required=False)
            events.emit("result", status="cancelled", error="cancelled while running")
            print("cancelled", flush=True)
            return 0
        except CuratorError as exc:
            events.emit("result", status="failed", error=str(exc))
            print(f"error: {exc}", flush=True)
            return 1
        except Exception as exc:  # a bug: keep the traceback in the log
            traceback.print_exc()
            sys.stderr.flush()
            events.emit("result", status="failed", error=f"{type(exc).__name__}: {exc}")
            return 1
        rows = collect_rows(store, bundle)
        for item in rows:  # a predictor's model file lives in models/, not in the run folder
            if item["table"] == "ppms" and item["row"].get("path"):
                name = Path(item["row"]["path"]).name
                target = run_local / WORKSPACE_FILES / "models" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(workspace.dir("models") / name, target)
        rows_path = run_local / ROWS_FILE
        rows_path.parent.mkdir(parents=True, exist_ok=True)
        rows_path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        try:
            uploader.sync(required=True)
        except CuratorError as exc:
            events.emit("result", status="failed", error=str(exc))
            print(f"error: {exc}", flush=True)
            return 1
        rewrite = {str(run_local): storage.url(description["run"])}
        if description.get("base_model"):
            base = description["base_model"]
            rewrite[str(bundle.folder / base["path"])] = base["ref"]
        events.emit("result", status="succeeded", result=result or {}, rows=ROWS_FILE,
                    rewrite=rewrite)  # fmt: skip
        print(f"succeeded: {result}", flush=True)
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=".", help="The bundle's folder (Ray's working_dir).")
    args = parser.parse_args(argv)
    refuse_workspace_store()
    try:
        return run(Path(args.bundle).resolve())
    except CuratorError as exc:  # a bad bundle: nothing ran
        EventStream().emit("result", status="failed", error=str(exc))
        print(f"error: {exc}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
