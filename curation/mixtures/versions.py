"""Stored versions: the one all-or-nothing write of a version (folder and ``mixtures`` row),
and finding versions by ``name`` or ``name@version``."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from curation.errors import CuratorError
from curation.mixtures.formats import DATA_FILE, HF_DIR, MANIFEST_FILE, row_bytes, save_hf
from curation.mixtures.spec import MixtureSpec
from curation.store import Store


def latest_row(store: Store, name: str) -> Any:
    """The newest version's row of a mixture (a sqlite3.Row), or None."""
    return store.conn.execute(
        "SELECT * FROM mixtures WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)
    ).fetchone()


def decode_row(row: Any) -> dict[str, Any]:
    """A ``mixtures`` row as a dict, with ``spec`` and ``manifest`` decoded and ``ref`` added."""
    out = dict(row)
    out["spec"] = json.loads(out.get("spec") or "{}")
    out["manifest"] = json.loads(out.get("manifest") or "{}")
    out["ref"] = f"{out['name']}@{out['version']}"
    return out


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``name`` (latest version) or ``name@version`` (``name@v3`` works too)."""
    name, sep, version = (ref or "").strip().partition("@")
    if not name:
        raise CuratorError("name a mixture (name or name@version)")
    if not sep:
        return name, None
    digits = version[1:] if version[:1] in ("v", "V") else version
    if not digits.isdigit():
        raise CuratorError(f"mixture {ref!r}: the version after @ must be a number")
    return name, int(digits)


def resolve_mixture(store: Store, ref: str) -> dict[str, Any]:
    """The ``mixtures`` row of ``name`` (its latest version) or ``name@version``, with ``spec``
    and ``manifest`` decoded and ``ref`` added."""
    name, version = parse_ref(ref)
    if version is None:
        row = latest_row(store, name)
    else:
        row = store.conn.execute(
            "SELECT * FROM mixtures WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
    if row is None:
        known = [
            f"{r[0]}@{r[1]}"
            for r in store.conn.execute("SELECT name, version FROM mixtures ORDER BY name, version")
        ]
        raise CuratorError(
            f"no mixture {ref!r} in this workspace (mixtures: {', '.join(known) or 'none yet'})"
        )
    return decode_row(row)


def list_mixtures(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Stored versions, newest first: name, version, kind, rows, content hash, when and where."""
    rows = store.conn.execute(
        "SELECT id, name, version, kind, content_hash, path, job_id, created_at, "
        "json_extract(manifest, '$.rows') AS rows, json_extract(manifest, '$.description') AS "
        "description FROM mixtures WHERE (? IS NULL OR name = ?) ORDER BY name, version DESC",
        (name, name),
    ).fetchall()
    return [{**dict(r), "ref": f"{r['name']}@{r['version']}"} for r in rows]


def store_version(
    store: Store,
    spec: MixtureSpec,
    rows: list[dict[str, Any]],
    manifest: dict[str, Any],
    reports: dict[str, list[dict[str, Any]]],
    *,
    job_id: int | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the version folder (staged, then renamed) and its row, as one all-or-nothing step;
    the stored row (as :func:`resolve_mixture` gives it) and the manifest with its version."""
    if store.workspace is None:
        raise CuratorError("this store has no workspace folder to write mixtures into")
    root = store.workspace.dir("mixtures")
    staging = root / f".{spec.name}.{os.getpid()}.{time.time_ns()}.partial"
    staging.mkdir(parents=True)
    try:
        with (staging / DATA_FILE).open("wb") as handle:
            for row in rows:
                handle.write(row_bytes(row))
        save_hf(spec.kind, rows, staging / HF_DIR)
        (staging / "reports").mkdir()
        for name, items in reports.items():
            with (staging / "reports" / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
                for item in items:
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")
        with store.write():
            row = store.conn.execute(
                "SELECT coalesce(max(version), 0) FROM mixtures WHERE name = ?", (spec.name,)
            ).fetchone()
            version = int(row[0]) + 1
            final = root / f"{spec.name}-v{version}"
            if final.exists():
                shutil.rmtree(final)  # a folder no stored version owns (an interrupted build)
            manifest = {"version": version, "path": str(final), **manifest}
            (staging / MANIFEST_FILE).write_text(
                json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
            os.replace(staging, final)
            try:
                store.conn.execute(
                    "INSERT INTO mixtures(name, version, kind, spec, manifest, content_hash, path, "
                    "job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        spec.name,
                        version,
                        spec.kind,
                        json.dumps(spec.to_dict(), ensure_ascii=False, sort_keys=True),
                        json.dumps(manifest, ensure_ascii=False),
                        manifest["content_hash"],
                        str(final),
                        job_id,
                    ),
                )
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolve_mixture(store, f"{spec.name}@{version}"), manifest
