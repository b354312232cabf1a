"""Exporting a version as JSONL (its own bytes), Parquet or a Hugging Face dataset folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.mixtures.formats import FORMATS, HF_DIR, arrow_table, save_hf
from curation.mixtures.read import data_path, mixture_rows
from curation.mixtures.versions import resolve_mixture
from curation.store import Store


def export_mixture(store: Store, ref: str, fmt: str, out: str | os.PathLike) -> dict[str, Any]:
    """Write a mixture version as JSONL (its ``data.jsonl`` bytes), Parquet or an HF folder."""
    if fmt not in FORMATS:
        raise CuratorError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    mixture = resolve_mixture(store, ref)
    source = data_path(mixture)
    target = Path(out).expanduser()
    if fmt == "hf":
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CuratorError(f"{target} already exists and is not an empty folder")
    elif target.is_dir():
        raise CuratorError(f"{target} is a folder; a {fmt} export needs a file name")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "jsonl":
            shutil.copyfile(source, target)
        elif fmt == "parquet":
            import pyarrow.parquet as pq

            rows = mixture_rows(store, ref)
            pq.write_table(arrow_table(mixture["kind"], rows), target, compression="zstd")
        else:
            hf = Path(mixture["path"]) / HF_DIR
            if target.exists():
                target.rmdir()
            if hf.is_dir():
                shutil.copytree(hf, target)
            else:
                save_hf(mixture["kind"], mixture_rows(store, ref), target)
    except OSError as exc:
        raise CuratorError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return {
        "mixture": mixture["ref"],
        "format": fmt,
        "path": str(target),
        "rows": mixture["manifest"].get("rows"),
        "content_hash": mixture["content_hash"],
    }
