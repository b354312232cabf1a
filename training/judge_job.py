"""LM judging as a background job (``judge``): here with one backend, or on a cluster spread over
Ray tasks, each loading the model once per worker process.

Judging is incremental (pairs a judge labelled are skipped), so a job retried here goes on where
it stopped. On a cluster's node the labels live in a snapshot store that is lost with the node,
so the job checkpoints them (:class:`NodeLabels`) and a retry restores them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from training.kinds import JobCancelled, JobContext, stopping_progress
from training.task_pool import TaskResources, node_workspace, relative_to_working_dir


def run_judge_job(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """Label a dataset's pairs with an LM judge (pairs already labelled are skipped).

    On a cluster a judge with a model of its own (not a server) spreads the pairs over tasks,
    :data:`JUDGE_TASK_PAIRS` pairs each, every task with the model loaded once per process on
    its node (on vLLM where the node has a GPU and vLLM, with ``engine`` auto); a task reserves
    the spec's ``num_gpus``."""
    from routing.judges import Judge, judge_dataset, open_backend

    spec = dict(spec)
    dataset = spec.pop("dataset", None)
    limit = spec.pop("limit", None)
    engine = spec.pop("engine", "auto")
    spec.pop("retry_of", None)
    gpus = float(spec.pop("num_gpus", None) or 0)  # for a Ray worker, not a judge setting
    if not dataset:
        raise CuratorError("a judge job needs a dataset")
    judge = Judge(**spec)
    ctx.store.dataset(dataset)
    saved = None
    if ctx.store_is_snapshot:  # on a node: its labels survive the node in the checkpoint
        saved = NodeLabels(ctx, judge.name)
        restored = saved.restore()
        if restored:
            ctx.progress(0.0, f"{restored} labels restored from the checkpoint")
    progress = stopping_progress(ctx, saved.maybe_save if saved else None)
    if ctx.pool.name == "local" or judge.backend == "openai":
        ctx.progress(0.0, f"loading {judge.model or 'the embedded model'}")
        backend = open_backend(judge, ctx.workspace, engine=engine)
        result = judge_dataset(ctx.store, dataset, judge, backend, limit=limit,
                               progress=progress)  # fmt: skip
        return result | {"engine": backend.name}
    resources = TaskResources(num_gpus=gpus)
    return _judge_on_pool(ctx, dataset, judge, engine, limit, resources, progress)


# On a node, a judge's new labels go into its checkpoint at most this often.
JUDGE_CHECKPOINT_S = 10.0


class NodeLabels:
    """A judge's labels on a node, kept in its checkpoint: a folder of JSONL parts, one per
    save, each holding the labels added since the one before (so a save writes only what is
    new). A retry after the node died restores them into its snapshot, so it judges only the
    pairs still left, and they come back to the workspace with the rest."""

    def __init__(self, ctx: JobContext, annotator: str):
        self.ctx, self.annotator = ctx, annotator
        self.folder = ctx.run_dir / "judge-labels"
        self.last_id = 0
        self.saved_at = 0.0

    def _last_id(self) -> int:
        """The newest of this judge's labels in the store now (restored ones included)."""
        return int(self.ctx.store.conn.execute(
            "SELECT coalesce(max(id), 0) FROM annotations WHERE annotator_kind = 'lm' "
            "AND annotator = ?", (self.annotator,)).fetchone()[0])  # fmt: skip

    def _rows_after(self, last_id: int) -> list[dict[str, Any]]:
        rows = self.ctx.store.conn.execute(
            "SELECT * FROM annotations WHERE annotator_kind = 'lm' AND annotator = ? AND id > ? "
            "ORDER BY id", (self.annotator, last_id)).fetchall()  # fmt: skip
        return [dict(r) for r in rows]

    def restore(self) -> int:
        """Insert the labels of the checkpoint this attempt resumes from; returns how many."""
        import shutil

        store = self.ctx.store
        source = Path(self.ctx.resume_from or "")
        if not self.ctx.resume_from or not source.is_dir():
            self.last_id = self._last_id()
            return 0
        columns = {r["name"] for r in store.conn.execute("PRAGMA table_info(annotations)")}
        columns.discard("id")
        self.folder.mkdir(parents=True, exist_ok=True)
        restored: list[int] = []
        with store.write():
            for part in sorted(source.glob("part-*.jsonl")):
                if part.resolve() != (self.folder / part.name).resolve():
                    shutil.copy2(part, self.folder / part.name)  # the next save keeps them
                for line in part.read_text().splitlines():
                    row = {k: v for k, v in json.loads(line).items() if k in columns}
                    marks = ", ".join("?" * len(row))
                    cursor = store.conn.execute(
                        f"INSERT OR IGNORE INTO annotations ({', '.join(row)}) "  # noqa: S608
                        f"VALUES ({marks})", list(row.values()))  # fmt: skip
                    if cursor.rowcount:
                        restored.append(int(row["instance_id"]))
            store.refresh_summary(sorted(set(restored)))
        self.last_id = self._last_id()
        return len(restored)

    def maybe_save(self) -> None:
        """Write the labels added since the last save as a new part, then checkpoint the
        folder; at most every :data:`JUDGE_CHECKPOINT_S` seconds."""
        import time

        if time.monotonic() - self.saved_at < JUDGE_CHECKPOINT_S:
            return
        rows = self._rows_after(self.last_id)
        if not rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        part = self.folder / f"part-{len(list(self.folder.glob('part-*.jsonl'))):05d}.jsonl"
        partial = part.with_name(f".{part.name}.partial")
        partial.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        partial.replace(part)
        self.last_id = rows[-1]["id"]
        self.ctx.checkpoint(self.folder)
        self.saved_at = time.monotonic()


# Pairs per task of a judge spread over a cluster (rounded up to whole batches, so each task's
# batches are those a one-process run makes, and so are its labels).
JUDGE_TASK_PAIRS = 256


@dataclass(frozen=True)
class JudgeTask:
    """What each task of a spread judge gets: the work (with the model named as the node finds
    it) and the engine wanted."""

    work: Any
    engine: str


_NODE_BACKEND: dict[tuple, Any] = {}


def judge_chunk(task: JudgeTask, pairs: list[Any]) -> tuple[str, list[Any]]:
    """One chunk of a spread judge run as a task: (the engine that ran, each pair's results).
    The model loads once per worker process and stays for its next chunks."""
    from routing.judges import open_backend, score_pairs

    judge = task.work.judge
    key = (judge.backend, judge.model, task.engine)
    if key not in _NODE_BACKEND:
        _NODE_BACKEND.clear()
        _NODE_BACKEND[key] = open_backend(judge, node_workspace(None), engine=task.engine)
    backend = _NODE_BACKEND[key]
    return backend.name, score_pairs(backend, task.work, pairs)


def _judge_on_pool(ctx: JobContext, dataset: str, judge: Any, engine: str, limit: Any,
                   resources: TaskResources, progress: Any) -> dict[str, Any]:  # fmt: skip
    from routing.judges import ENGINES, judge_dataset
    from routing.models import DEFAULT_MODEL, is_default

    if engine not in ENGINES:  # fail before any task starts
        raise CuratorError(f"unknown judge engine {engine!r}; choose one of {', '.join(ENGINES)}")
    model_id = DEFAULT_MODEL if is_default(judge.model) else judge.model
    engines: set[str] = set()
    chunks_done = 0

    def on_pool(work: Any, chunks: list[Any]) -> Any:
        nonlocal chunks_done
        node_judge = dataclasses.replace(
            work.judge, model=relative_to_working_dir(work.judge.model)
        )
        task = JudgeTask(dataclasses.replace(work, judge=node_judge), engine)
        for ran, results in ctx.pool.map(judge_chunk, task, chunks, resources=resources,
                                         should_stop=ctx.should_stop):  # fmt: skip
            engines.add(ran)
            chunks_done += 1
            yield results

    size = -(-JUDGE_TASK_PAIRS // judge.batch_size) * judge.batch_size
    ctx.progress(0.0, f"judging in tasks of {size} pairs on {ctx.pool.name}")
    result = judge_dataset(ctx.store, dataset, judge, None, limit=limit, model_id=model_id,
                           progress=progress, score_chunks=on_pool, chunk_pairs=size)  # fmt: skip
    if ctx.should_stop():
        raise JobCancelled
    return result | {"engine": "+".join(sorted(engines)) or None, "tasks": chunks_done,
                     "spread_over": f"{ctx.pool.name} tasks"}  # fmt: skip
