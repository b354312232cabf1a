"""Reading a built version's rows: the one way training reads a mixture, checked against its
content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.mixtures.formats import DATA_FILE
from curation.mixtures.versions import resolve_mixture
from curation.store import Store


def data_path(mixture: Mapping[str, Any]) -> Path:
    """A built version's ``data.jsonl``, refused when the version has no folder or lost it."""
    if not mixture["path"]:
        raise CuratorError(f"mixture {mixture['ref']} has no built folder yet; build it first")
    path = Path(mixture["path"]) / DATA_FILE
    if not path.is_file():
        raise CuratorError(f"mixture {mixture['ref']}: its data file {path} is missing")
    return path


def iter_mixture_rows(
    store: Store, ref: str, *, stage: str | None = None, verify: bool = True
) -> Iterator[dict[str, Any]]:
    """The rows of a mixture version in file order (one stage's only, when named), read from
    ``data.jsonl``. With ``verify`` the file is checked against the stored content hash first,
    so a training job never trains on a file edited behind the store's back (the trainers read
    mixtures only through here)."""
    mixture = resolve_mixture(store, ref)
    path = data_path(mixture)
    if verify:
        expected = mixture["content_hash"]
        if not expected:
            raise CuratorError(
                f"mixture {mixture['ref']} has no content hash to check {path} against (rebuild it)"
            )
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        found = "sha256:" + digest.hexdigest()
        if found != expected:
            raise CuratorError(
                f"mixture {mixture['ref']}: {path} no longer matches its content hash "
                f"(expected {expected}, found {found}); it was edited after the build, rebuild "
                "the mixture"
            )
    start, end = 0, None
    if stage is not None:
        ranges = {s["name"]: s for s in mixture["manifest"].get("stages", [])}
        if stage not in ranges:
            raise CuratorError(
                f"mixture {mixture['ref']} has no stage {stage!r} (stages: {', '.join(ranges)})"
            )
        start, end = ranges[stage]["start"], ranges[stage]["end"]
    with path.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i < start:
                continue
            if end is not None and i >= end:
                break
            yield json.loads(line)


def mixture_rows(store: Store, ref: str, *, stage: str | None = None) -> list[dict[str, Any]]:
    """Every row of a mixture version (see :func:`iter_mixture_rows`)."""
    return list(iter_mixture_rows(store, ref, stage=stage))
