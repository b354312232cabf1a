"""Job kinds for the queue's tests, loaded by workers through ``CURATOR_JOB_PLUGINS=job_kinds``.

They do real work in real processes (sleep, spawn children, crash, checkpoint), so tests of
cancel, SIGKILL and resume run the same worker and runner code a trainer does, in seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from training.kinds import JobCancelled, JobContext, register_kind


def steps(ctx: JobContext, spec: dict) -> dict:
    """``steps`` steps of ``step_s`` seconds, a metric and progress each, a checkpoint file after
    each, resuming after the last checkpointed step; stops when cancelled."""
    total = int(spec.get("steps", 5))
    start = (ctx.resumed_state() or {}).get("step", 0)
    trace = ctx.run_dir / "started_at_step.txt"
    with trace.open("a") as handle:
        handle.write(f"{start}\n")
    for step in range(start + 1, total + 1):
        if ctx.should_stop():
            raise JobCancelled
        time.sleep(float(spec.get("step_s", 0.2)))
        ctx.metrics(step, loss=1.0 / step)
        ctx.progress(step / total, f"step {step}/{total}")
        ctx.checkpoint_state("checkpoint.json", {"step": step})
        print(f"step {step}", flush=True)
    return {"steps": total, "resumed_from": start}


def spawner(ctx: JobContext, spec: dict) -> dict:
    """Start ``children`` long-sleeping child processes (each with a grandchild), write every pid
    to ``pids_file``, then wait: cancel must stop all of them."""
    procs = []
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
           "'import time; time.sleep(600)']); time.sleep(600)"  # fmt: skip
    for _ in range(int(spec.get("children", 2))):
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
    time.sleep(1.0)  # let the grandchildren start
    pids = [p.pid for p in procs]
    for p in procs:
        try:
            children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        except OSError:
            children = []
        pids.extend(int(c) for c in children)
    Path(spec["pids_file"]).write_text(json.dumps(pids))
    ctx.progress(0.5, "children started")
    time.sleep(600)
    return {}


def crasher(ctx: JobContext, spec: dict) -> dict:
    """Fail the way a bug does."""
    ctx.progress(0.3, "about to fail")
    raise RuntimeError(spec.get("message", "boom"))


register_kind("steps", steps)
register_kind("spawner", spawner)
register_kind("crasher", crasher)

if __name__ == "__main__":  # pragma: no cover
    sys.exit("a plugin module, not a script")
