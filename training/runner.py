"""The process one job runs in: ``python -m training.runner --workspace DIR --job ID``.

A local worker starts it as the leader of a new process group (so cancel stops every process the
job starts) with ``--watch-parent``: should the worker die, the job's group kills itself rather
than run on unwatched, and the next worker's reaper requeues or fails the job. On Ray the job
supervisor starts it instead, without the watch.

The runner records the outcome itself: ``succeeded`` with the kind's result, or ``failed`` with
the error (a user's mistake as its message; a bug with the traceback in the log).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import traceback

from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.kinds import JobCancelled, JobContext, job_kind

PARENT_CHECK_S = 0.5


def _die_with_parent(parent: int) -> None:
    """Kill this job's whole process group once the worker that started it is gone."""
    try:  # Linux: be sent SIGTERM the moment the parent dies
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os.killpg(os.getpgid(0), signal.SIGKILL)

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _on_sigterm(signum: int, frame: object) -> None:
    # The group is being stopped (cancel, or the worker died): go at once, children too.
    os.killpg(os.getpgid(0), signal.SIGKILL)


def run(workspace: str, job_id: int) -> int:
    ws = Workspace.resolve(workspace)
    store = Store.open(ws, create=False)
    job = jobs.get_job(store, job_id)
    if job.status != "running":
        print(f"job {job_id} is {job.status}, not running; nothing to do", flush=True)
        return 0
    ctx = JobContext(store=store, workspace=ws, job=job)
    print(f"job {job.id} ({job.kind}) attempt {job.attempts} in pid {os.getpid()}", flush=True)
    if ctx.resume_from:
        print(f"resuming from {ctx.resume_from}", flush=True)
    try:
        result = job_kind(job.kind)(ctx, dict(job.spec))
    except JobCancelled:
        jobs.finish(store, job.id, "cancelled", error="cancelled while running")
        print("cancelled", flush=True)
        return 0
    except CuratorError as exc:
        jobs.finish(store, job.id, "failed", error=str(exc))
        print(f"error: {exc}", flush=True)
        return 1
    except Exception as exc:  # a bug: keep the traceback in the log
        traceback.print_exc()
        jobs.finish(store, job.id, "failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    jobs.finish(store, job.id, "succeeded", result=result or {})
    print(f"succeeded: {result}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", required=True)
    parser.add_argument("--job", type=int, required=True)
    parser.add_argument(
        "--watch-parent", type=int, default=None, help="Worker pid: die with it (local workers)."
    )
    args = parser.parse_args(argv)
    if args.watch_parent:
        signal.signal(signal.SIGTERM, _on_sigterm)
        _die_with_parent(args.watch_parent)
    return run(args.workspace, args.job)


if __name__ == "__main__":
    sys.exit(main())
