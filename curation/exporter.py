"""Export a dataset as JSONL, Parquet or a saved HF folder, in TRL-ready shapes or losslessly.

Shapes: ``native`` (every field and label; re-imports with the ``curator`` presets),
``preference`` (TRL prompt/chosen/rejected), ``sft`` (messages), ``safety`` (WildJailbreak
columns) and ``eval`` (RewardBench columns). Rows stream from one read snapshot of the store in
batches and are written as they come, so exporting 200,000 instances keeps memory bounded.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.labels import verdict
from curation.native_format import arrow_schema, columnar_record, instance_record
from curation.records import Annotation, Instance
from curation.store import BUSY_TIMEOUT_S, Store

FORMATS = ("jsonl", "parquet", "hf")
SHAPES = ("native", "preference", "sft", "safety", "eval")
LABEL_SOURCES = ("hybrid", "human", "lm", "gold")
# The shapes each dataset kind can be written as; the first is what ``auto`` picks.
KIND_SHAPES = {
    "preference": ("preference", "native", "eval"),
    "sft": ("sft", "native"),
    "safety": ("safety", "native"),
    "eval": ("eval", "native", "preference"),
}
BATCH_SIZE = 1000


@dataclass
class ExportReport:
    """What an export wrote, and how many instances it left out and why."""

    dataset: str
    path: Path
    format: str
    shape: str
    labels: str | None = None  # where preference labels came from (pair shapes only)
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    conversational: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "path": str(self.path),
            "format": self.format,
            "shape": self.shape,
            "labels": self.labels,
            "rows": self.rows,
            "skipped": dict(self.skipped),
            "conversational": self.conversational,
        }


class _Skip(Exception):  # noqa: N818 - control flow, never escapes this module
    """An instance that the chosen shape cannot (or was asked not to) hold."""

    def __init__(self, reason: str):
        self.reason = reason


@dataclass
class _Stored:
    """One instance as the exporter reads it: the record, its label summary and flag state."""

    instance: Instance
    summary: dict[str, Any]
    flagged: bool
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Plan:
    kind: str
    shape: str
    labels: str | None
    keep_ties: bool
    conversational: bool


# ---- the public API --------------------------------------------------------------------------


def export_dataset(
    store: Store,
    dataset: str,
    fmt: str,
    out: str | os.PathLike,
    *,
    shape: str = "auto",
    labels: str = "hybrid",
    keep_ties: bool = False,
    include_flagged: bool = True,
    accepted_only: bool = False,
) -> ExportReport:
    """Write one dataset to ``out`` and report what was written and what was skipped.

    Pair shapes (preference, eval) take each instance's preferred side from ``labels``: the
    majority of human labels (``human``), of LM labels (``lm``), human where present else LM
    (``hybrid``), or the generator's ``gold`` label. Ties and unlabelled pairs are skipped and
    counted (``keep_ties`` keeps ties in preference shape, A as chosen, margin 0). With
    ``include_flagged=False`` instances with an open flag, or a flag marked exclude, are left out.
    A label a reviewer rejected never counts; ``accepted_only`` counts only people's labels a
    reviewer accepted (an instance with none is then as if unlabelled by people).
    """
    if fmt not in FORMATS:
        raise CuratorError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if shape != "auto" and shape not in SHAPES:
        raise CuratorError(f"unknown shape {shape!r}; use auto or one of {', '.join(SHAPES)}")
    if labels not in LABEL_SOURCES:
        raise CuratorError(
            f"unknown label source {labels!r}; use one of {', '.join(LABEL_SOURCES)}"
        )
    info = store.dataset(dataset)
    kind = info["kind"]
    shape = KIND_SHAPES[kind][0] if shape == "auto" else shape
    if shape not in KIND_SHAPES[kind]:
        raise CuratorError(
            f"dataset {dataset!r} holds {kind} data, which exports as "
            f"{', '.join(KIND_SHAPES[kind])}, not as {shape}"
        )
    path = Path(out).expanduser()
    _check_target(path, fmt)

    with _snapshot(store) as conn:
        conversational = shape == "preference" and _has_conversations(conn, info["id"])
        plan = _Plan(
            kind=kind,
            shape=shape,
            labels=labels if shape in ("preference", "eval") and kind == "preference" else None,
            keep_ties=keep_ties,
            conversational=conversational,
        )
        report = ExportReport(
            dataset=dataset,
            path=path,
            format=fmt,
            shape=shape,
            labels=plan.labels,
            conversational=conversational,
        )
        skipped: Counter[str] = Counter()
        schema = _schema(plan)

        def rows() -> Iterator[list[dict[str, Any]]]:
            for batch in _read(
                conn,
                info["id"],
                with_annotations=shape == "native",
                accepted_only=accepted_only and plan.labels is not None,
            ):
                out_rows = []
                for stored in batch:
                    try:
                        if not include_flagged and stored.flagged:
                            raise _Skip("flagged")
                        out_rows.append(_SHAPERS[shape](stored, plan))
                    except _Skip as skip:
                        skipped[skip.reason] += 1
                report.rows += len(out_rows)
                if out_rows:
                    yield out_rows

        columnar = columnar_record if shape == "native" else None
        with _staged(path) as partial:
            if fmt == "jsonl":
                _write_jsonl(partial, rows(), gz=path.suffix == ".gz")
            elif fmt == "parquet":
                _write_parquet(partial, schema, rows(), columnar)
            else:
                with tempfile.TemporaryDirectory(prefix="curator-export-", dir=path.parent) as tmp:
                    parquet = Path(tmp) / "data.parquet"
                    _write_parquet(parquet, schema, rows(), columnar)
                    if report.rows:
                        _parquet_to_hf(parquet, partial, cache=Path(tmp) / "cache")
            report.skipped = dict(sorted(skipped.items()))
            if report.rows == 0:
                why = (
                    ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in report.skipped.items())
                    or "it is empty"
                )
                raise CuratorError(f"nothing to export from {dataset!r} as {shape}: {why}")
    return report


def push_to_hub(
    store: Store,
    dataset: str,
    repo_id: str,
    *,
    token: str,
    shape: str = "auto",
    labels: str = "hybrid",
    private: bool = True,
) -> str:
    """Export a dataset and push it to the Hugging Face Hub; return the dataset's hub URL.

    The token is passed to the hub client only: it is never logged, stored or put in an error.
    """
    if not token or not token.strip():
        raise CuratorError("pushing to the hub needs a token (set HF_TOKEN or pass --token-env)")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo_id or ""):
        raise CuratorError(f"hub repository id {repo_id!r} is not of the form owner/name")
    with tempfile.TemporaryDirectory(prefix="curator-push-") as tmp:
        folder = Path(tmp) / "dataset"
        export_dataset(store, dataset, "hf", folder, shape=shape, labels=labels)
        from datasets import load_from_disk

        data = load_from_disk(str(folder))
        try:
            data.push_to_hub(repo_id, token=token.strip(), private=private)
        except Exception as exc:  # the hub client raises many types; none is a bug of ours
            message = str(exc).replace(token.strip(), "***")
            raise CuratorError(f"could not push {dataset!r} to {repo_id}: {message}") from None
    return f"https://huggingface.co/datasets/{repo_id}"


# ---- reading the store -----------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(store: Store) -> Iterator[sqlite3.Connection]:
    """A connection that sees one consistent version of the store for the whole export.

    Inside a caller's open write the store's own connection is used, so the export sees what
    that caller has written so far.
    """
    if store.conn.in_transaction:
        yield store.conn
        return
    conn = sqlite3.connect(str(store.path), timeout=BUSY_TIMEOUT_S)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute("BEGIN")
        yield conn
    finally:
        conn.close()


def _has_conversations(conn: sqlite3.Connection, dataset_id: int) -> bool:
    row = conn.execute(
        "SELECT EXISTS(SELECT 1 FROM instances WHERE dataset_id = ? AND messages IS NOT NULL)",
        (dataset_id,),
    ).fetchone()
    return bool(row[0])


# ``+i.dataset_id`` keeps SQLite off the (dataset_id, ...) indexes: through one of them every
# batch re-sorted all the dataset's remaining rows (a million-row export took ten minutes);
# walking the primary key from the last id reads each batch and nothing else.
_BATCH_SQL = """
SELECT i.*, s.n_human, s.human_mean, s.human_verdict, s.n_lm, s.lm_mean, s.lm_verdict,
       EXISTS(SELECT 1 FROM flags f WHERE f.instance_id = i.id
              AND (f.status = 'open' OR f.exclude = 1)) AS flagged
FROM instances i LEFT JOIN instance_summary s ON s.instance_id = i.id
WHERE +i.dataset_id = ? AND i.id > ? ORDER BY i.id LIMIT ?
"""


_SUMMARY = ("n_human", "human_mean", "human_verdict", "n_lm", "lm_mean", "lm_verdict")


# People's side of the label summary over accepted labels only (the stored summary counts every
# submitted label): the same aggregates as Store.refresh_summary.
_ACCEPTED_SQL = """
SELECT a.instance_id, count(a.overall) AS n_human, avg(a.overall) AS human_mean,
       sign(sum(sign(a.overall))) AS human_verdict
FROM annotations a
WHERE a.instance_id IN ({marks}) AND a.annotator_kind = 'human' AND a.status = 'submitted'
  AND a.review_status = 'accepted' AND a.overall IS NOT NULL
GROUP BY a.instance_id
"""


def _read(
    conn: sqlite3.Connection,
    dataset_id: int,
    *,
    with_annotations: bool,
    accepted_only: bool = False,
) -> Iterator[list[_Stored]]:
    """Instances of a dataset in id order, one batch at a time (keyset pagination); with
    ``accepted_only`` their human label summary counts reviewer-accepted labels only."""
    last = 0
    while True:
        rows = _dict_rows(conn, _BATCH_SQL, (dataset_id, last, BATCH_SIZE))
        if not rows:
            return
        batch = [
            _Stored(
                instance=Instance.from_row(row),
                summary={k: row[k] for k in _SUMMARY},
                flagged=bool(row["flagged"]),
            )
            for row in rows
        ]
        if accepted_only:
            ids = [row["id"] for row in rows]
            marks = ", ".join("?" * len(ids))
            accepted = {
                r["instance_id"]: r
                for r in _dict_rows(conn, _ACCEPTED_SQL.format(marks=marks), ids)
            }
            for iid, stored in zip(ids, batch, strict=True):
                found = accepted.get(iid, {"n_human": 0, "human_mean": None, "human_verdict": None})
                stored.summary.update(
                    {k: found[k] for k in ("n_human", "human_mean", "human_verdict")}
                )
        if with_annotations:
            ids = [row["id"] for row in rows]
            by_id = {iid: stored for iid, stored in zip(ids, batch, strict=True)}
            marks = ", ".join("?" * len(ids))
            for ann in _dict_rows(
                conn,
                f"SELECT * FROM annotations WHERE instance_id IN ({marks}) "  # noqa: S608 - only '?' marks
                "ORDER BY instance_id, annotator_kind, annotator",
                ids,
            ):
                by_id[ann["instance_id"]].annotations.append(ann)
        yield batch
        last = rows[-1]["id"]


def _dict_rows(conn: sqlite3.Connection, sql: str, params: Any) -> list[dict[str, Any]]:
    """Rows as plain dicts, built in C (``dict(sqlite3.Row)`` costs more than the query)."""
    cursor = conn.cursor()
    cursor.row_factory = None
    cursor.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


# ---- shapes: one stored instance -> one output row -------------------------------------------


def _label(stored: _Stored, plan: _Plan) -> tuple[int, str, float | None]:
    """The preferred side (-1 A, 0 tie, 1 B), where it came from, and the mean label behind it."""
    if plan.kind == "eval":
        return -1, "eval", None  # an eval pair's A is its chosen response, by definition
    s = stored.summary
    source = plan.labels
    if source == "hybrid":
        source = "human" if s["n_human"] else "lm"
    if source == "gold":
        value, mean = verdict(stored.instance.gold), stored.instance.gold
    else:
        value, mean = (
            (s[f"{source}_verdict"], s[f"{source}_mean"]) if s[f"n_{source}"] else (None, None)
        )
    if value is None:
        raise _Skip("unlabelled")
    return value, source, mean


def _pair(
    stored: _Stored, plan: _Plan, *, allow_tie: bool
) -> tuple[str, str, str | None, str | None, str, float | None]:
    inst = stored.instance
    if not inst.response_a or not inst.response_b:
        raise _Skip("no_response")
    side, source, mean = _label(stored, plan)
    if side == 0 and not allow_tie:
        raise _Skip("tie")
    # Margin: how strongly the labels favour the chosen side, 0..2 (a mean against the majority
    # verdict gives 0, not a negative margin).
    if side == 0:
        margin: float | None = 0.0
    else:
        margin = None if mean is None else max(0.0, float(mean) * side)
    if side > 0:
        return inst.response_b, inst.response_a, inst.model_b, inst.model_a, source, margin
    return inst.response_a, inst.response_b, inst.model_a, inst.model_b, source, margin


def _turns(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Messages with role before content (the store keeps their JSON keys sorted)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _preference_row(stored: _Stored, plan: _Plan) -> dict[str, Any]:
    inst = stored.instance
    chosen, rejected, _, _, source, margin = _pair(stored, plan, allow_tie=plan.keep_ties)
    if plan.conversational:
        prompt: Any = _turns(inst.messages or [{"role": "user", "content": inst.prompt}])
        chosen_out: Any = [{"role": "assistant", "content": chosen}]
        rejected_out: Any = [{"role": "assistant", "content": rejected}]
    else:
        prompt, chosen_out, rejected_out = inst.prompt, chosen, rejected
    return {
        "prompt": prompt,
        "chosen": chosen_out,
        "rejected": rejected_out,
        "id": inst.uid,
        "source": inst.source,
        "domain": inst.domain,
        "margin": margin,
        "label_source": source,
    }


def _eval_row(stored: _Stored, plan: _Plan) -> dict[str, Any]:
    inst = stored.instance
    chosen, rejected, chosen_model, rejected_model, _, _ = _pair(stored, plan, allow_tie=False)
    return {
        "prompt": inst.prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_model": chosen_model,
        "rejected_model": rejected_model,
        "subset": inst.subset or inst.domain,
        "id": inst.uid,
    }


def _sft_row(stored: _Stored, plan: _Plan) -> dict[str, Any]:
    inst = stored.instance
    if not inst.messages:
        raise _Skip("no_messages")
    return {"messages": _turns(inst.messages), "source": inst.source, "id": inst.uid}


def _safety_row(stored: _Stored, plan: _Plan) -> dict[str, Any]:
    inst = stored.instance
    meta = inst.metadata or {}
    data_type = inst.subset or meta.get("data_type")
    adversarial = data_type is not None and data_type.startswith("adversarial")
    return {
        "prompt": inst.prompt,
        "data_type": data_type,
        "vanilla": meta.get("vanilla") or (None if adversarial else inst.prompt),
        "adversarial": meta.get("adversarial") or (inst.prompt if adversarial else None),
        "completion": inst.response_a or meta.get("completion"),
        "source": inst.source,
        "id": inst.uid,
    }


def _native_row(stored: _Stored, plan: _Plan) -> dict[str, Any]:
    annotations = [Annotation.from_row(a) for a in stored.annotations]
    return instance_record(stored.instance, annotations, kind=plan.kind)


_SHAPERS: dict[str, Callable[[_Stored, _Plan], dict[str, Any]]] = {
    "native": _native_row,
    "preference": _preference_row,
    "eval": _eval_row,
    "sft": _sft_row,
    "safety": _safety_row,
}


def _schema(plan: _Plan) -> Any:
    """The Arrow schema of a shape's rows: one schema for every batch of a columnar file."""
    import pyarrow as pa

    if plan.shape == "native":
        return arrow_schema(plan.kind)
    s = pa.string()
    messages = pa.list_(pa.struct([("role", s), ("content", s)]))
    if plan.shape == "preference":
        turn = messages if plan.conversational else s
        return pa.schema(
            [
                ("prompt", turn),
                ("chosen", turn),
                ("rejected", turn),
                ("id", s),
                ("source", s),
                ("domain", s),
                ("margin", pa.float64()),
                ("label_source", s),
            ]
        )
    if plan.shape == "eval":
        names = ("prompt", "chosen", "rejected", "chosen_model", "rejected_model", "subset", "id")
        return pa.schema([(n, s) for n in names])
    if plan.shape == "sft":
        return pa.schema([("messages", messages), ("source", s), ("id", s)])
    names = ("prompt", "data_type", "vanilla", "adversarial", "completion", "source", "id")
    return pa.schema([(n, s) for n in names])


# ---- writing ---------------------------------------------------------------------------------


def _check_target(path: Path, fmt: str) -> None:
    if fmt == "hf":
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise CuratorError(f"{path} already exists and is not an empty folder")
    elif path.is_dir():
        raise CuratorError(f"{path} is a folder; a {fmt} export needs a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CuratorError(f"cannot create {path.parent}: {exc.strerror}") from exc


@contextlib.contextmanager
def _staged(path: Path) -> Iterator[Path]:
    """A hidden sibling to write into, moved onto ``path`` only when the body succeeds.

    A failed or empty export leaves nothing behind and never clobbers an earlier file.
    """
    partial = path.with_name(f".{path.name}.partial")
    _remove(partial)
    try:
        yield partial
        if path.is_dir():
            path.rmdir()  # an hf target, checked empty before writing
        os.replace(partial, path)
    except OSError as exc:
        raise CuratorError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        _remove(partial)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_jsonl(path: Path, batches: Iterator[list[dict[str, Any]]], *, gz: bool) -> None:
    opener = gzip.open if gz else open
    encode = json.JSONEncoder(ensure_ascii=False).encode  # one encoder, not one per row
    with opener(path, "wt", encoding="utf-8", newline="\n") as handle:
        for rows in batches:
            handle.write("".join(f"{encode(row)}\n" for row in rows))


def _write_parquet(
    path: Path,
    schema: Any,
    batches: Iterator[list[dict[str, Any]]],
    columnar: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for rows in batches:
            if columnar:
                rows = [columnar(r) for r in rows]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))


def _parquet_to_hf(parquet: Path, folder: Path, *, cache: Path) -> None:
    """Turn a Parquet file into a folder that ``datasets.load_from_disk`` opens."""
    import datasets

    was_quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        data = datasets.Dataset.from_parquet(str(parquet), cache_dir=str(cache))
        data.save_to_disk(str(folder))
    finally:
        if not was_quiet:
            datasets.enable_progress_bars()
