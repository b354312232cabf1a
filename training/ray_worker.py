"""A worker that runs queued jobs on a Ray cluster through the Ray Jobs API, on any node.

``curator worker --ray ADDRESS`` calls :func:`run_ray_worker`. The worker claims jobs from the
same table as a local worker. For each it builds a bundle (:mod:`training.bundle`: the spec and a
snapshot of the rows the job reads) and submits ``python -m training.remote`` with the bundle as
the job's ``working_dir`` and the project's packages as ``py_modules``, so a node needs only the
Python environment, not the workspace or the checkout. The job never opens the workspace's store.

While the job runs, the worker reads its Ray log: ordinary lines go to the job's log file, and
the events the job prints (:mod:`training.remote`: progress, metrics, checkpoints, its node, its
result) are written to the store, together with how far the log was read, so a worker that takes
over applies each event once. Files go to the storage (:mod:`training.storage`: the workspace's
``runs/`` by default, or any fsspec URL); a node that cannot see a local storage folder sends
them through the log. On a result the worker writes what the job added (a run, a sweep,
features, labels) into the store. It also beats the job's heartbeat, stops the Ray job on a
cancel, and settles the row when Ray ends a job without a result: a job whose node died (or that
never started) is requeued while it has retries left, resuming from its last checkpoint.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
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
from training.bundle import apply_result, apply_rows, build_bundle
from training.jobs import Job
from training.kinds import PLUGINS_ENV
from training.remote import PROBE_FILE, WORKSPACE_FILES, parse_event
from training.storage import Storage, default_storage, is_local, local_path
from training.worker import PROJECT_ROOT, WorkerConfig

INSTALL_HINT = "install the cluster extra: pip install 'hybrid-curator[cluster]' (or make cluster)"
ACTIVE = ("PENDING", "RUNNING")
# What a job on the cluster needs from this environment. Only these travel: a runtime_env is
# shown on the cluster's dashboard, so secrets go through ``forward_env`` on purpose only.
FORWARDED_ENV = (PLUGINS_ENV, "PYTHONPATH", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
                 "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")  # fmt: skip
# The project's packages, shipped to the nodes as py_modules (a node needs only the environment).
PACKAGES = ("assets", "curation", "routing", "training")
# Kinds whose steps spread over the cluster as Ray tasks (:mod:`training.task_pool`: feature
# shards, a reward-model sweep's runs, a judge's chunks of pairs): their GPUs go to each task (a
# ``num_gpus`` in the spec is per task), not to the job's process, which only hands out the
# work and gathers it.
SPREAD_KINDS = ("features", "sweep", "judge")
# Kinds that write the workspace itself (a mixture's folder and version) run on its host only.
LOCAL_ONLY_KINDS = ("mix",)


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
    resources: dict[str, float] = field(
        default_factory=dict,
        metadata={"help": "Custom Ray resources each job needs (JSON, e.g. {\"far\": 1}): "
                          "pins jobs to the nodes that offer them."},
    )  # fmt: skip
    storage: str | None = field(
        default=None,
        metadata={"help": "Where jobs write their artefacts: a folder or an fsspec URL "
                          "(s3://..., gs://...); default: the workspace's runs/ folder."},
    )  # fmt: skip
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
    run: str = ""  # the job's folder in the storage
    offset: int = 0  # characters of the Ray log consumed (events applied, lines copied)
    last_line: str = ""
    ends_line: bool = True
    node: str | None = None
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
        self.storage = Storage.at(self.config.storage or default_storage(self.workspace.root))
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
        """Work until stopped (or, with ``drain``, until the queue is empty and every job has
        ended; or until ``max_jobs`` jobs have ended); returns the number of jobs that ended."""
        done = 0
        idle_since = time.monotonic()
        try:
            while not self._releasing:
                claimed_nothing = False
                if not self._draining:
                    jobs.reap_stale(self.store, stale_after_s=self.config.stale_after_s)
                    self._adopt()
                    while self._may_claim(done) and not self._draining:
                        job = jobs.claim_next(self.store, self.name, kinds=self._kinds())
                        if job is None:
                            claimed_nothing = True
                            break
                        if on_job:
                            on_job(job)
                        self._submit(job)
                done += sum(1 for job_id in list(self.on_ray) if self._poll(job_id))
                if self.on_ray:
                    idle_since = time.monotonic()
                elif self._draining or (claimed_nothing and self.config.drain):
                    break
                elif self.config.max_jobs is not None and done >= self.config.max_jobs:
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

    def _may_claim(self, done: int) -> bool:
        """Room on the cluster for one more job, within ``max_jobs`` (counting those that
        ended and those still on the cluster, adopted ones included)."""
        if len(self.on_ray) >= self.config.max_concurrent:
            return False
        limit = self.config.max_jobs
        return limit is None or done + len(self.on_ray) < limit

    def _kinds(self) -> tuple[str, ...]:
        return tuple(k for k in jobs.kind_names() if k not in LOCAL_ONLY_KINDS)

    def _entrypoint(self) -> str:
        python = self.config.python or sys.executable
        return f"{shlex.quote(python)} -m training.remote"

    def _env_vars(self) -> dict[str, str]:
        env = {name: os.environ[name] for name in FORWARDED_ENV + tuple(self.config.forward_env)
               if name in os.environ}  # fmt: skip
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def _runtime_env(self, bundle: Path) -> dict[str, Any]:
        """The bundle as the job's working directory and the project's packages as modules:
        Ray uploads both through the cluster, so a node needs no shared disk."""
        return {
            "working_dir": str(bundle),
            "py_modules": [str(PROJECT_ROOT / name) for name in PACKAGES],
            "excludes": ["__pycache__", "*.pyc"],
            "env_vars": self._env_vars(),
        }

    def _resume(self, job: Job) -> tuple[Path | None, str | None]:
        """The checkpoint a retry resumes from: carried in the bundle when it is a local file,
        fetched by the node from the storage when it is a URL."""
        path = job.checkpoint_path
        if not path:
            return None, None
        if is_local(path):
            local = local_path(path)
            return (local, None) if local.exists() else (None, None)
        return None, path

    def _submit(self, job: Job) -> None:
        log_path = Path(job.log_path or self.workspace.dir("logs") / f"job-{job.id}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per attempt and per workspace: a cluster refuses a submission id it has seen.
        submission_id = f"curator-job-{job.id}-{uuid.uuid4().hex[:10]}"
        run = f"job-{job.id}"
        artifact_uri = self.storage.url(run)
        folder = Path(tempfile.mkdtemp(prefix=f"curator-bundle-{job.id}-"))
        try:
            probe = None
            if is_local(self.storage.uri):  # a node that reads this shares the folder
                probe = secrets.token_hex(8)
                target = local_path(self.storage.uri) / run
                target.mkdir(parents=True, exist_ok=True)
                (target / PROBE_FILE).write_text(probe)
            resume, resume_uri = self._resume(job)
            try:
                travelling, gpus = place_gpus(job, self.config.num_gpus)
                manifest = build_bundle(self.store, travelling, folder, storage=self.storage.uri, run=run,
                                        resume=resume, resume_uri=resume_uri, probe=probe)  # fmt: skip
            except CuratorError as exc:  # the job's inputs, not the cluster, are at fault
                jobs.finish(self.store, job.id, "failed", error=str(exc))
                return
            try:
                self.client.submit_job(
                    entrypoint=self._entrypoint(),
                    submission_id=submission_id,
                    runtime_env=self._runtime_env(folder),
                    metadata={"curator_job": str(job.id), "curator_kind": job.kind,
                              "curator_artifacts": artifact_uri},
                    entrypoint_num_cpus=self.config.num_cpus,
                    entrypoint_num_gpus=gpus,
                    entrypoint_resources=dict(self.config.resources) or None,
                )  # fmt: skip
            except (OSError, RuntimeError, ValueError) as exc:
                # The cluster, not the job, is at fault: fail this one and claim no more.
                why = f"could not submit the job to Ray at {self.address}: {exc}"
                jobs.finish(self.store, job.id, "failed", error=why)
                self._failure = why
                self._draining = True
                return
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        jobs.set_ray_job_id(self.store, job.id, submission_id)
        jobs.set_ray_placement(self.store, job.id, artifact_uri=artifact_uri)
        rows = sum(manifest["rows"].values())
        jobs.set_progress(self.store, job.id, 0.0, f"submitted to Ray as {submission_id}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"--- attempt {job.attempts} by {self.name} on Ray {self.address} as "
                      f"{submission_id}; bundle of {rows} rows; artefacts to {artifact_uri}\n")  # fmt: skip
        self.on_ray[job.id] = _OnRay(job=job, submission_id=submission_id, log_path=log_path,
                                     run=run)  # fmt: skip

    def _adopt(self) -> None:
        """Watch the Ray jobs of a worker that died: their rows end as the Ray jobs do. The
        log is read on from where the old worker's last write left it."""
        for job in jobs.adopt_stale_ray_jobs(
            self.store, self.name, stale_after_s=self.config.stale_after_s
        ):
            log_path = Path(job.log_path or self.workspace.dir("logs") / f"job-{job.id}.log")
            run = _OnRay(job=job, submission_id=job.ray_job_id or "", log_path=log_path,
                         run=f"job-{job.id}", offset=job.log_offset, node=job.node)  # fmt: skip
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
                return False  # a blip: the job runs on and its log keeps what it reports
            self._settle(run, "failed", f"lost the Ray cluster at {self.address}: {exc}")
            return True
        run.unreachable_since = None
        node = getattr(info, "driver_node_id", None)
        if node and node != run.node:
            run.node = node
            jobs.set_ray_placement(self.store, job_id, node=node)
        status = str(info.status)
        if status in ACTIVE:
            if now >= run.next_log:
                self._consume(run)
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
        self._consume(run, final=True)
        if jobs.get_job(self.store, job_id).finished:  # the job's result was applied
            self._forget(run)
        elif run.stop_sent_at is not None or jobs.cancel_requested(self.store, job_id):
            self._settle(run, "cancelled", "cancelled by request")
        elif status == "SUCCEEDED":  # a job that exits 0 has sent its result
            self._settle(run, "failed", "the job process ended without a result")
        elif status == "STOPPED":
            self._settle(run, "cancelled", f"stopped on the Ray cluster: {_first_line(info)}")
        else:  # it died without a verdict: its node was lost, it was killed, or never started
            why = f"the Ray job failed: {_first_line(info)}{_tail(run.last_line)}"
            if jobs.requeue(self.store, job_id, why):
                with open(run.log_path, "a", encoding="utf-8") as log:
                    log.write(("" if run.ends_line else "\n") + f"--- requeued: {why}\n")
                run.ends_line = True
            self._forget(run)
        return True

    def _stop_on_ray(self, run: _OnRay) -> None:
        run.stop_sent_at = time.monotonic()
        try:
            self.client.stop_job(run.submission_id)
        except (OSError, RuntimeError):
            pass  # already ended, or unreachable: the next poll tells which

    # ---- what the job sends back ----------------------------------------------------------

    def _consume(self, run: _OnRay, *, final: bool = False) -> None:
        """Read the Ray log on from ``run.offset``: ordinary lines to the job's log file, events
        to the store, with the new offset in the same transaction. Before the job has ended only
        whole lines are taken (the last one may still be being written)."""
        try:
            logs = self.client.get_job_logs(run.submission_id)
        except (OSError, RuntimeError):
            return
        new = logs[run.offset :]
        if not final:
            new = new[: new.rfind("\n") + 1]
        if not new:
            return
        plain: list[str] = []
        events: list[dict[str, Any]] = []
        for line in new.splitlines(keepends=True):
            event = parse_event(line.rstrip("\r\n"))
            if event is None:
                plain.append(line)
                if line.strip():
                    run.last_line = line.strip()
            else:
                events.append(event)
        if plain:
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write("".join(plain))
            run.ends_line = plain[-1].endswith("\n")
        results = [e for e in events if e["type"] == "result"]
        with self.store.write():
            for event in events:
                if event["type"] != "result":
                    self._apply_event(run, event)
            jobs.set_log_offset(self.store, run.job.id, run.offset + len(new))
        run.offset += len(new)
        for event in results:
            self._apply_result(run, event)

    def _apply_event(self, run: _OnRay, event: dict[str, Any]) -> None:
        job_id = run.job.id
        kind = event["type"]
        if kind == "progress":
            jobs.set_progress(self.store, job_id, event.get("fraction", 0.0), event.get("message"))
        elif kind == "metrics":
            jobs.add_metrics(self.store, job_id, event.get("step", 0), event.get("values", {}))
        elif kind == "checkpoint":
            jobs.set_checkpoint(self.store, job_id, self.storage.url(f"{run.run}/{event['path']}"))
        elif kind == "node" and not run.node:
            run.node = str(event.get("node") or event.get("host"))
            jobs.set_ray_placement(self.store, job_id, node=run.node)
        elif kind == "file":
            self._write_chunk(run, event)

    def _write_chunk(self, run: _OnRay, event: dict[str, Any]) -> None:
        """A piece of a file the job sent through its log, written at its offset (so reading
        a piece twice, after a takeover, writes the same bytes again)."""
        if not is_local(self.storage.uri):
            return  # a node writes to a URL itself; only a local folder is reached this way
        base = (local_path(self.storage.uri) / run.run).resolve()
        target = (base / event["path"]).resolve()
        if not target.is_relative_to(base):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        data = base64.b64decode(event.get("data", ""))
        offset, size = int(event.get("offset", 0)), int(event.get("size", 0))
        with open(partial, "r+b" if offset and partial.exists() else "wb") as handle:
            handle.seek(offset)
            handle.write(data)
            handle.truncate(max(offset + len(data), 0))
        if offset + len(data) >= size:
            os.replace(partial, target)

    def _apply_result(self, run: _OnRay, event: dict[str, Any]) -> None:
        """End the row as the job reported, writing what a succeeded job added, all in one
        transaction (so a worker that takes over finds it either done or not begun)."""
        status = event.get("status")
        try:
            with self.store.write():
                if jobs.get_job(self.store, run.job.id).finished:
                    return
                if status != "succeeded":
                    jobs.finish(self.store, run.job.id, "cancelled" if status == "cancelled"
                                else "failed", error=event.get("error"))  # fmt: skip
                    return
                rewrite = dict(event.get("rewrite") or {})
                text = self.storage.read_bytes(f"{run.run}/{event['rows']}").decode("utf-8")
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
                applied = apply_rows(
                    self.store, rows, rewrite=rewrite,
                    fetch_file=lambda rel: self.storage.read_bytes(
                        f"{run.run}/{WORKSPACE_FILES}/{rel}"),
                )  # fmt: skip
                result = apply_result(event.get("result") or {}, applied, rewrite)
                jobs.finish(self.store, run.job.id, "succeeded", result=result)
        except (CuratorError, OSError, ValueError, KeyError) as exc:
            jobs.finish(self.store, run.job.id, "failed",
                        error=f"the job ran, but its results could not be written: {exc}")  # fmt: skip

    # ---- ending -------------------------------------------------------------------------

    def _end_log(self, run: _OnRay) -> None:
        """Close the job's last line (Ray's logs drop the final newline), so that a retry's
        header starts a line of its own."""
        if not run.ends_line:
            with open(run.log_path, "a", encoding="utf-8") as log:
                log.write("\n")
            run.ends_line = True

    def _forget(self, run: _OnRay) -> None:
        self._end_log(run)
        del self.on_ray[run.job.id]

    def _settle(self, run: _OnRay, status: str, error: str) -> None:
        """End the row unless the job already did (``finish`` never overwrites an end)."""
        jobs.finish(self.store, run.job.id, status, error=error)
        self._forget(run)

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
                    self._consume(run, final=True)
                    self._forget(run)
                    if jobs.get_job(self.store, job_id).status == "running":
                        jobs.set_ray_job_id(self.store, job_id, None)
            time.sleep(min(self.config.poll_s, 0.5))
        for job_id in self.on_ray:  # Ray never confirmed: the job may still send its end
            jobs.set_ray_job_id(self.store, job_id, None)
        self.on_ray.clear()


def place_gpus(job: Job, default: float | None) -> tuple[Job, float | None]:
    """(the job as it travels, the GPUs its own process reserves).

    A job's ``num_gpus`` setting, else the worker's default, is reserved for its process. A
    kind that spreads its steps as tasks reserves none for its process, which only hands out the
    work: its GPUs go to each task, so the default travels in its spec where it names none."""
    wanted = job.spec.get("num_gpus")
    if job.kind in SPREAD_KINDS:
        if wanted is None and default:
            return dataclasses.replace(job, spec=job.spec | {"num_gpus": default}), None
        return job, None
    gpus = default if wanted is None else float(wanted)
    return job, gpus or None


def _first_line(info: Any) -> str:
    message = (getattr(info, "message", None) or str(info.status)).strip()
    return message.splitlines()[0][:300] if message else str(info.status)


def _tail(line: str) -> str:
    return f": {line[-300:]}" if line else ""


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
