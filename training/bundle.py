"""A job's bundle: everything a job on a cluster node needs, so that it never opens the workspace.

The worker on the workspace's host builds it (:func:`build_bundle`) from the job's row: the spec,
a snapshot of the rows the job reads (its datasets with their labels, flags, features and route
plans; a mixture's rows read through :func:`curation.mixtures.iter_mixture_rows` with
``verify=True``; the judges), a small local base model, and the checkpoint a retry resumes from.
Each file's SHA-256 is in ``manifest.json``. Ray ships the folder to the node as the job's
``working_dir``.

On the node, :func:`open_bundle` checks the hashes and loads the snapshot into an in-memory store
with the workspace's schema and the same row ids, so every job kind runs unchanged against it.
What the job adds to that store (runs, sweeps, features, LM labels) is collected at the end
(:func:`collect_rows`) and written to the workspace by the worker (:func:`apply_rows`), with new
ids for the new rows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.mixtures import iter_mixture_rows
from curation.mixtures.formats import DATA_FILE, row_bytes
from curation.mixtures.versions import resolve_mixture
from curation.store import Store
from curation.workspace import Workspace
from training.jobs import Job

BUNDLE_VERSION = 1
JOB_FILE = "job.json"
MANIFEST = "manifest.json"
BASE_MODEL_DIR = "base_model"
RESUME_DIR = "resume"
# A local base model folder up to this size travels in the bundle; a bigger one, or a hub id, is
# passed by reference (the node loads it from its own cache or the hub).
BASE_MODEL_MAX_BYTES = 64 * 1024**2
# Spec keys that name the datasets a job reads.
DATASET_KEYS = ("dataset", "eval_dataset", "eval_set")
# Tables whose new rows a job's result consists of, in the order they are written back.
RESULT_TABLES = ("judges", "runs", "sweeps", "sweep_runs", "ppms", "annotations")
# What the snapshot holds, in insert order (parents first), and how each table's rows are chosen:
# ``:datasets`` is the job's dataset ids as JSON, ``:job`` its id, ``:mixture`` a mixture id.
_IN_DATASETS = (
    "(SELECT id FROM instances WHERE dataset_id IN (SELECT value FROM json_each(:datasets)))"
)
SNAPSHOT = {
    "datasets": "id IN (SELECT value FROM json_each(:datasets))",
    "instances": "dataset_id IN (SELECT value FROM json_each(:datasets))",
    "annotations": f"instance_id IN {_IN_DATASETS}",
    "instance_summary": f"instance_id IN {_IN_DATASETS}",
    "flags": f"instance_id IN {_IN_DATASETS}",
    "features": f"instance_id IN {_IN_DATASETS}",
    "route_plans": "dataset_id IN (SELECT value FROM json_each(:datasets))",
    "route_plan_items": "plan_id IN (SELECT id FROM route_plans WHERE dataset_id IN "
    "(SELECT value FROM json_each(:datasets)))",
    "judges": "1",
    "jobs": "id = :job",
    "mixtures": "id = :mixture",
}
# Columns that point at rows the snapshot does not hold.
_DETACHED = {"route_plans": ("ppm_id",), "mixtures": ("job_id",)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def base_model_key(kind: str, spec: dict[str, Any]) -> tuple[str, ...]:
    """Where a job's spec names the model it loads: ``base_model`` for the trainers, under
    ``reward`` for a sweep whose runs train reward models, ``model`` for a judge."""
    if kind == "judge":
        return ("model",)
    return ("reward", "base_model") if isinstance(spec.get("reward"), dict) else ("base_model",)


def _get(spec: dict[str, Any], key: tuple[str, ...]) -> Any:
    for part in key[:-1]:
        spec = spec.get(part) or {}
    return spec.get(key[-1])


def _set(spec: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    for part in key[:-1]:
        spec = spec.setdefault(part, {})
    spec[key[-1]] = value


def job_datasets(spec: dict[str, Any]) -> list[str]:
    return [str(spec[k]) for k in DATASET_KEYS if spec.get(k)]


# ---- on the workspace's host ---------------------------------------------------------------------


def build_bundle(
    store: Store,
    job: Job,
    folder: Path,
    *,
    storage: str,
    run: str,
    resume: Path | None = None,
    resume_uri: str | None = None,
    probe: str | None = None,
) -> dict[str, Any]:
    """Write the bundle of a claimed job to ``folder``; returns its manifest.

    ``run`` is the job's folder in the storage; ``resume`` a local checkpoint (file or folder)
    to carry, or ``resume_uri`` one the node fetches from the storage itself. ``probe`` names a
    file the worker left in a local storage folder: a node that can read it writes there itself.
    """
    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(job.spec)
    dataset_ids = [row["id"] for name in job_datasets(spec) if (row := store.find_dataset(name))]
    mixture_id = None
    if spec.get("mixture"):
        mixture = resolve_mixture(store, str(spec["mixture"]))
        mixture_id = mixture["id"]
        target = folder / "mixtures" / str(mixture_id)
        target.mkdir(parents=True)
        with (target / DATA_FILE).open("wb") as handle:
            for row in iter_mixture_rows(store, str(spec["mixture"]), verify=True):
                handle.write(row_bytes(row))
    params = {"datasets": json.dumps(dataset_ids), "job": job.id, "mixture": mixture_id}
    (folder / "tables").mkdir(exist_ok=True)
    counts: dict[str, int] = {}
    for table, where in SNAPSHOT.items():
        rows = store.conn.execute(f"SELECT * FROM {table} WHERE {where}", params)  # noqa: S608
        counts[table] = _jsonl(folder / "tables" / f"{table}.jsonl", (dict(r) for r in rows))
    base_model = None
    key = base_model_key(job.kind, spec)
    ref = str(_get(spec, key) or "").strip()
    if ref and Path(ref).expanduser().is_dir():
        local = Path(ref).expanduser().resolve()
        if _folder_bytes(local) <= BASE_MODEL_MAX_BYTES:
            shutil.copytree(local, folder / BASE_MODEL_DIR)
            base_model = {"ref": ref, "path": BASE_MODEL_DIR, "key": list(key)}
    resume_info = None
    if resume is not None:
        target = folder / RESUME_DIR / resume.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if resume.is_dir():
            shutil.copytree(resume, target)
        else:
            shutil.copy2(resume, target)
        resume_info = {"source": "bundle", "path": f"{RESUME_DIR}/{resume.name}"}
    elif resume_uri:
        resume_info = {"source": "storage", "uri": resume_uri}
    description = {
        "version": BUNDLE_VERSION,
        "job": {"id": job.id, "kind": job.kind, "spec": spec, "attempts": job.attempts},
        "storage": storage,
        "run": run,
        "probe": probe,
        "base_model": base_model,
        "resume": resume_info,
    }
    (folder / JOB_FILE).write_text(json.dumps(description, indent=2, sort_keys=True))
    files = {
        str(p.relative_to(folder)): _sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"version": BUNDLE_VERSION, "rows": counts, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


# ---- on the node -----------------------------------------------------------------------------


@dataclass
class Bundle:
    """An unpacked, checked bundle on the node that runs the job."""

    folder: Path
    description: dict[str, Any]
    manifest: dict[str, Any]
    high_water: dict[str, int] = field(default_factory=dict)
    snapshot_features: set[tuple] = field(default_factory=set)

    @property
    def job(self) -> dict[str, Any]:
        return self.description["job"]

    def spec(self) -> dict[str, Any]:
        """The job's spec as the node sees it: a carried base model by its path here."""
        spec = json.loads(json.dumps(self.job["spec"]))  # a deep copy
        carried = self.description.get("base_model")
        if carried:
            _set(spec, tuple(carried.get("key", ["base_model"])),
                 str(self.folder / carried["path"]))  # fmt: skip
        return spec

    def load_store(self, workspace: Workspace) -> Store:
        """The snapshot as an in-memory store with the workspace's schema (no file at all)."""
        store = Store(":memory:")
        store.workspace = workspace
        store.migrate()
        with store.write():
            for table in SNAPSHOT:
                columns = {r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")}
                for row in _read_jsonl(self.folder / "tables" / f"{table}.jsonl"):
                    for name in _DETACHED.get(table, ()):
                        row[name] = None
                    if table == "mixtures":
                        row["path"] = str(self.folder / "mixtures" / str(row["id"]))
                    row = {k: v for k, v in row.items() if k in columns}
                    names = ", ".join(row)
                    marks = ", ".join("?" * len(row))
                    store.conn.execute(
                        f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
                        list(row.values()),
                    )
        for table in RESULT_TABLES:
            found = store.conn.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]  # noqa: S608
            self.high_water[table] = int(found or 0)
        self.snapshot_features = set(_feature_rows(store))
        return store


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _feature_rows(store: Store) -> Iterator[tuple]:
    yield from (
        tuple(r)
        for r in store.conn.execute(
            "SELECT instance_id, name, value, extractor, label FROM features"
        )
    )


def open_bundle(folder: Path) -> Bundle:
    """Read a bundle, refusing one whose files do not match their hashes."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        description = json.loads((folder / JOB_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise CuratorError(f"no readable job bundle in {folder}: {exc}") from exc
    if manifest.get("version") != BUNDLE_VERSION:
        raise CuratorError(
            f"the bundle is version {manifest.get('version')}, this node reads {BUNDLE_VERSION}"
        )
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file() or _sha256(path) != expected:
            raise CuratorError(f"the bundle's {name} does not match its hash")
    return Bundle(folder, description, manifest)


def collect_rows(store: Store, bundle: Bundle) -> list[dict[str, Any]]:
    """What the job added to its store: new rows of the result tables, and features that are
    new or changed, as ``{"table": ..., "row": {...}}``."""
    found: list[dict[str, Any]] = []
    for table in RESULT_TABLES:
        rows = store.conn.execute(
            f"SELECT rowid AS _rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid",  # noqa: S608
            (bundle.high_water.get(table, 0),),
        )
        for row in rows:
            data = dict(row)
            data.pop("_rowid")
            found.append({"table": table, "row": data})
    for row in _feature_rows(store):
        if row not in bundle.snapshot_features:
            names = ("instance_id", "name", "value", "extractor", "label")
            found.append({"table": "features", "row": dict(zip(names, row, strict=True))})
    return found


# ---- back on the workspace's host -----------------------------------------------------------------


@dataclass
class Applied:
    """Old (node) id -> new (workspace) id, per table."""

    ids: dict[str, dict[int, int]] = field(default_factory=dict)

    def new(self, table: str, old: Any) -> Any:
        if old is None:
            return None
        return self.ids.get(table, {}).get(int(old), old)


def _insert(store: Store, table: str, row: dict[str, Any]) -> int:
    names = ", ".join(row)
    marks = ", ".join("?" * len(row))
    cursor = store.conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
        list(row.values()),
    )
    return int(cursor.lastrowid)


def apply_rows(
    store: Store,
    rows: list[dict[str, Any]],
    *,
    rewrite: dict[str, str],
    fetch_file: Any = None,
) -> Applied:
    """Write what a job on a node added to its store into the workspace's store (inside the
    caller's transaction). ``rewrite`` maps path prefixes on the node to where those files are
    now (the run folder to its storage URI); ``fetch_file(rel) -> bytes`` reads a file the job
    left beside its run (a predictor's model) for the workspace's ``models/`` folder."""
    applied = Applied()
    touched: set[int] = set()
    features: list[dict[str, Any]] = []

    def fix(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for old, new in rewrite.items():
            value = value.replace(old, new).replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
        return value

    for item in rows:
        table, row = item["table"], {k: fix(v) for k, v in item["row"].items()}
        if table == "features":
            features.append(row)
            continue
        old = row.pop("id", None)
        if table == "judges":
            existing = store.conn.execute(
                "SELECT id FROM judges WHERE name = ?", (row["name"],)
            ).fetchone()
            config = json.loads(row.get("config") or "{}")
            if "run_id" in config:
                config["run_id"] = applied.new("runs", config["run_id"])
                row["config"] = json.dumps(config, sort_keys=True)
            new = existing[0] if existing else _insert(store, table, row)
        elif table == "annotations":
            store.conn.execute(
                "DELETE FROM annotations WHERE instance_id = ? AND annotator_kind = ? "
                "AND annotator = ?",
                (row["instance_id"], row["annotator_kind"], row["annotator"]),
            )
            new = _insert(store, table, row)
            touched.add(int(row["instance_id"]))
        else:
            if table == "sweep_runs" or table == "ppms":
                row["sweep_id"] = applied.new("sweeps", row.get("sweep_id"))
            new = _insert(store, table, row)
            if table == "ppms" and row.get("path") and fetch_file is not None and store.workspace:
                name = Path(row["path"])
                local = f"ppm-{new}{''.join(name.suffixes)}"
                data = fetch_file(f"models/{name.name}")
                (store.workspace.dir("models") / local).write_bytes(data)
                store.conn.execute("UPDATE ppms SET path = ? WHERE id = ?", (local, new))
        if old is not None:
            applied.ids.setdefault(table, {})[int(old)] = new
    if features:
        store.conn.executemany(
            "DELETE FROM features WHERE instance_id = ? AND name = ?",
            [(f["instance_id"], f["name"]) for f in features],
        )
        store.conn.executemany(
            "INSERT INTO features(instance_id, name, value, extractor, label) "
            "VALUES (:instance_id, :name, :value, :extractor, :label)",
            features,
        )
    if touched:
        store.refresh_summary(sorted(touched))
    return applied


def apply_result(result: dict[str, Any], applied: Applied, rewrite: dict[str, str]) -> dict:
    """A job's result with the node's row ids and paths replaced by the workspace's."""
    text = json.dumps(result, sort_keys=True, default=str)
    for old, new in rewrite.items():
        text = text.replace(json.dumps(old)[1:-1], json.dumps(new)[1:-1])
    fixed = json.loads(text)
    for key, table in (("run_id", "runs"), ("sweep_id", "sweeps"), ("ppm_id", "ppms")):
        if fixed.get(key) is not None:
            fixed[key] = applied.new(table, fixed[key])
    return fixed
