"""Where a job's many independent steps run: one after another here, or as Ray tasks on any node.

A job kind with a long list of independent pieces (feature shards, the runs of a reward-model
sweep) hands them to its context's pool (:attr:`training.kinds.JobContext.pool`) as
``pool.map(fn, shared, items)``, which yields ``fn(shared, item)`` for each item, in order.

- :class:`LocalPool` (a job on the workspace's host, or a job on one node) calls ``fn`` here,
  lazily, so a cancel between two results stops the rest.
- :class:`RayPool` is what a job on a Ray cluster gets (:mod:`training.remote` under the Ray Jobs
  API, where the job's process is a Ray driver). Each item becomes a task that Ray places on any
  node with the CPUs and GPUs asked for; the tasks inherit the job's runtime environment (the
  bundle as working directory, the project's packages, the forwarded variables), so they, too,
  need no shared disk. ``shared`` goes to the object store once, not once per task. Ray retries a
  task whose node dies; a task that raises ends the map with that error.

``fn`` must be a module-level function of the project's packages (it is pickled by reference
and imported on the node).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from curation.errors import CuratorError
from curation.workspace import Workspace

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

# Set by the Ray Jobs API in a job's driver process (ray/_private/runtime_env/constants.py).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


@dataclass(frozen=True)
class TaskResources:
    """What each task of a map reserves on its node."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


class TaskPool(Protocol):
    name: str
    workers: int  # how many tasks can run at once (1 here; the cluster's CPUs on Ray)

    def map(
        self,
        fn: Callable[[S, T], R],
        shared: S,
        items: Iterable[T],
        *,
        resources: TaskResources = TaskResources(),  # noqa: B008 - frozen, shared safely
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[R]: ...


class LocalPool:
    """The pieces one after another in this process."""

    name = "local"
    workers = 1

    def map(self, fn, shared, items, *, resources=TaskResources(), should_stop=None):  # noqa: B008
        for item in items:
            if should_stop and should_stop():
                return
            yield fn(shared, item)


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """The body of every Ray task (``shared`` arrives resolved from the object store)."""
    return fn(shared, item)


class RayPool:
    """The pieces as Ray tasks on the cluster this process is connected to.

    At most ``max_in_flight`` tasks are submitted ahead of the result being waited for (default:
    twice the cluster's CPUs), so a sweep of thousands of runs does not flood the scheduler.
    """

    name = "ray"

    def __init__(self, max_in_flight: int | None = None):
        import ray

        if not ray.is_initialized():
            # RAY_ADDRESS, set by the Jobs API, names this job's cluster; the job's runtime
            # environment (bundle, packages, variables) is inherited by every task.
            cwd = os.getcwd()
            ray.init(log_to_driver=True, configure_logging=False)
            if in_ray_job() and "working_dir_files" in Path(cwd).parts:
                step_into_new_working_dir(cwd)
        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(cpus, 1)
        self.max_in_flight = max_in_flight or 2 * self.workers
        self._remote = ray.remote(_call)

    def map(self, fn, shared, items, *, resources=TaskResources(), should_stop=None):  # noqa: B008
        ray = self._ray
        task = self._remote.options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)
        shared_ref = ray.put(shared)
        pending: deque = deque()
        source = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.max_in_flight:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(task.remote(fn, shared_ref, item))
                if not pending:
                    return
                if should_stop and should_stop():
                    return
                head = pending[0]
                while not ray.wait([head], timeout=1.0)[0]:
                    if should_stop and should_stop():
                        return
                pending.popleft()
                try:
                    yield ray.get(head)
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.as_instanceof_cause()
                    if isinstance(cause, CuratorError):
                        raise CuratorError(str(cause).splitlines()[-1]) from None
                    raise
        finally:
            for ref in pending:  # stopped, failed or abandoned: the rest is not wanted
                ray.cancel(ref, force=True)


def step_into_new_working_dir(path: str, wait_s: float = 5.0) -> bool:
    """Follow the job's working folder when Ray unpacks it afresh.

    When a job's driver connects, Ray 2.60 deletes the job's unpacked ``working_dir`` and
    unpacks it again at the same path, leaving the driver in a deleted folder: a later
    ``os.getcwd()`` fails, and so does importing transformers (it resolves a relative path) or
    torch (its MKL dies with "Cannot load libtorch_cpu.so"). Absolute paths into the bundle
    keep working, as the new folder holds the same files. Waits up to ``wait_s`` for the new
    folder and moves into it; True when it did."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.getcwd()  # fails once the folder this process is in was deleted
        except FileNotFoundError:
            if os.path.isdir(path):
                os.chdir(path)
                return True
        time.sleep(0.05)
    return False


def in_ray_job() -> bool:
    """Whether this process is the driver of a job that the Ray Jobs API started."""
    return RAY_JOB_ENV in os.environ


def pool_for_this_process() -> TaskPool:
    """A :class:`RayPool` inside a Ray job (with ray importable), else a :class:`LocalPool`."""
    if in_ray_job():
        try:
            return RayPool()
        except ImportError:
            pass
    return LocalPool()


def node_workspace(root: str | None) -> Workspace:
    """The workspace a task uses: the job's own where it has one, else one of the node's, only
    for models converted on first use (the embedded SmolLM2), so each node converts once."""
    return Workspace(Path(root or Path(tempfile.gettempdir()) / "curator-task-workspace")).ensure()


def relative_to_working_dir(ref: str | None) -> str | None:
    """A base model as a path relative to this job's working folder when it lies inside it (a
    job on a cluster carries its base model in its bundle, which Ray unpacks as the working
    folder of every task, at a path of its own on each node); else unchanged."""
    if ref:
        path = Path(ref)
        if path.is_absolute() and path.is_relative_to(Path.cwd()):
            return path.relative_to(Path.cwd()).as_posix()
    return ref
