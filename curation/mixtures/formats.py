"""How a version's rows are written: the canonical ``data.jsonl`` bytes the content hash covers,
and the same rows as Arrow (Parquet) and as a saved Hugging Face dataset."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "parquet", "hf")
DATA_FILE = "data.jsonl"
MANIFEST_FILE = "manifest.json"
HF_DIR = "hf"


def row_bytes(row: Mapping[str, Any]) -> bytes:
    """A row's canonical line in ``data.jsonl`` (the bytes the content hash covers)."""
    return (json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _arrow_schema(kind: str) -> Any:
    import pyarrow as pa

    s = pa.string()
    messages = pa.list_(pa.struct([("role", s), ("content", s)]))
    if kind == "preference":
        return pa.schema(
            [
                ("prompt", s),
                ("messages", messages),
                ("chosen", s),
                ("rejected", s),
                ("source", s),
                ("instance_id", pa.int64()),
            ]
        )
    columns = [("messages", messages), ("source", s), ("instance_id", pa.int64())]
    if kind == "safety":
        columns.append(("safety_type", s))
    return pa.schema(columns)


def arrow_table(kind: str, rows: Sequence[Mapping[str, Any]]) -> Any:
    import pyarrow as pa

    return pa.Table.from_pylist(list(rows), schema=_arrow_schema(kind))


def save_hf(kind: str, rows: Sequence[Mapping[str, Any]], folder: Path) -> None:
    import datasets
    from datasets.table import InMemoryTable

    was_quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        datasets.Dataset(InMemoryTable(arrow_table(kind, rows))).save_to_disk(str(folder))
    finally:
        if not was_quiet:
            datasets.enable_progress_bars()
