"""The workspace store: one SQLite file (WAL, foreign keys on) behind sqlite-utils.

Every write goes through :meth:`Store.write`, which holds ``BEGIN IMMEDIATE`` for its whole body:
writers queue on SQLite's lock (with a generous busy timeout) instead of failing half-way, and a
body that raises leaves the store exactly as it was. Reads can happen anywhere, any time.
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from curation.errors import CuratorError
from curation.labels import ASPECTS
from curation.records import DATASET_KINDS, Annotation, Instance
from curation.schema import MIGRATIONS, REBUILDS, SCHEMA_VERSION
from curation.workspace import Workspace

# SQL text here is built only from fixed fragments, allow-listed column names and ``?``
# placeholders (the ``noqa: S608`` lines); every value a user supplies is a bound parameter.
BUSY_TIMEOUT_S = 60.0
_SQLITE_MAX_VARS = 900  # stay under SQLite's bound-parameter limit in IN (...) lists
_FTS_INSERT_TRIGGER = "instances_fts_ai"


def _chunks(items: Sequence[Any], size: int = _SQLITE_MAX_VARS) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store_error(path: Path, exc: sqlite3.Error) -> CuratorError | None:
    """A SQLite error that the user's machine caused, as a message a curator can act on.

    A full disk and a read-only workspace are not bugs: they are said in plain words, with
    what to do. Any other SQLite error returns None and stays what it is (a bug, with its
    traceback).
    """
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc).lower()
    folder = path.parent
    if primary == sqlite3.SQLITE_FULL or "disk is full" in text:
        return CuratorError(
            f"the disk holding the workspace {folder} is full: nothing was saved from this "
            "operation and earlier data is intact. Free some disk space and try again."
        )
    read_only = primary == sqlite3.SQLITE_READONLY or "readonly database" in text
    if read_only or (primary == sqlite3.SQLITE_CANTOPEN and not _writable(folder)):
        return CuratorError(
            f"the workspace {folder} is read-only: nothing was changed. Its store (curator.db "
            "and the journal SQLite keeps beside it) must be writable, even to read it; make the "
            "folder and its files writable, or copy the workspace somewhere that is."
        )
    return None


def _writable(folder: Path) -> bool:
    """Whether this process may create files in a folder (False on a read-only file system,
    even for root, whom file permissions do not stop)."""
    return os.access(folder, os.W_OK)


def fts_query(text: str) -> str | None:
    """Turn what a user typed into a safe FTS5 query: every word a quoted term, all required.

    Users type prose, not FTS syntax; quoting each term means quotes, operators and column
    filters in their text are searched for, never interpreted. A NUL separates words too: FTS5
    reads its query as a C string, so a NUL inside a term would cut the query short.
    """
    terms = [t for t in text.replace("\x00", " ").split() if t.strip('"')]
    if not terms:
        return None
    return " ".join('"' + t.replace('"', '""') + '"' for t in terms)


def usable_labels_sql(alias: str = "a", *, accepted_only: bool = False) -> str:
    """The SQL condition for the labels a reader should count: submitted ones, and with
    ``accepted_only`` only the people's labels a reviewer accepted (an LM's count as they are).

    ``alias`` names the annotations table in the caller's query; it is code, never user input.
    """
    if not alias.isidentifier():
        raise ValueError(f"not a table alias: {alias!r}")
    condition = f"{alias}.status = 'submitted'"
    if accepted_only:
        condition += f" AND ({alias}.annotator_kind = 'lm' OR {alias}.review_status = 'accepted')"
    return condition


@dataclass
class InstanceFilter:
    """What the Explore page (and the CLI) can narrow a dataset down to."""

    dataset: str | None = None
    domains: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)
    human_verdict: int | None = None  # -1 A, 0 tie, 1 B (majority of human labels)
    lm_verdict: int | None = None
    agreement: bool | None = None  # human majority == LM verdict
    has_human: bool | None = None
    has_lm: bool | None = None
    empty_response: bool | None = None  # either response empty or only whitespace
    search: str = ""
    ids: list[int] | None = None  # only these instances (a search by meaning's hits)

    def where(self, store: Store) -> tuple[str, list[Any]]:
        """SQL WHERE clause (over ``i`` instances and ``s`` summary) and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.dataset:
            clauses.append("i.dataset_id = ?")
            params.append(store.dataset(self.dataset)["id"])
        for column, values in (
            ("domain", self.domains),
            ("source", self.sources),
            ("subset", self.subsets),
        ):
            if values:
                clauses.append(f"i.{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        for column, value in (
            ("human_verdict", self.human_verdict),
            ("lm_verdict", self.lm_verdict),
        ):
            if value is not None:
                clauses.append(f"s.{column} = ?")
                params.append(int(value))
        if self.agreement is not None:
            clauses.append("s.agreement = ?")
            params.append(int(self.agreement))
        if self.has_human is not None:
            clauses.append(
                "coalesce(s.n_human, 0) > 0" if self.has_human else "coalesce(s.n_human, 0) = 0"
            )
        if self.has_lm is not None:
            clauses.append("coalesce(s.n_lm, 0) > 0" if self.has_lm else "coalesce(s.n_lm, 0) = 0")
        if self.empty_response is not None:
            # trim() of SQLite strips spaces only; newlines and tabs are whitespace too
            blank = "trim({0}, ' ' || char(9, 10, 13)) = ''"
            either = f"({blank.format('i.response_a')} OR {blank.format('i.response_b')})"
            clauses.append(either if self.empty_response else f"NOT {either}")
        if self.ids is not None:
            # a search's hits: a bounded list, bound as parameters like every other value
            clauses.append(f"i.id IN ({', '.join('?' * len(self.ids))})" if self.ids else "0")
            params.extend(int(i) for i in self.ids)
        query = fts_query(self.search) if self.search else None
        if query:
            clauses.append("i.id IN (SELECT rowid FROM instances_fts WHERE instances_fts MATCH ?)")
            params.append(query)
        return (" AND ".join(clauses) or "1"), params

    # The text form scripts and the CLI use (`--where`): key -> (field, kind of value).
    TEXT_KEYS = {
        "domain": ("domains", "list"),
        "source": ("sources", "list"),
        "subset": ("subsets", "list"),
        "human_verdict": ("human_verdict", "verdict"),
        "lm_verdict": ("lm_verdict", "verdict"),
        "agreement": ("agreement", "agreement"),
        "has_human": ("has_human", "bool"),
        "has_lm": ("has_lm", "bool"),
        "empty_response": ("empty_response", "bool"),
        "search": ("search", "text"),
    }
    TEXT_HELP = (
        "Comma-separated key=value pairs, all of which must hold: domain, source, subset "
        "(alternatives with |, e.g. domain=math|coding), human_verdict and lm_verdict "
        "(A, tie or B), agreement (agree or disagree: human majority vs LM), has_human and "
        "has_lm (yes or no), empty_response (yes or no: a response is empty or blank), "
        "search (words that must all appear). "
        "Example: domain=math,has_human=no,search=prime numbers"
    )

    def to_text(self) -> str:
        """The text form of this filter (what :meth:`parse` reads back to an equal filter).

        The dataset and a search by meaning's hits (``ids``) are not part of it.
        """
        verdicts = {-1: "A", 0: "tie", 1: "B"}
        parts = []
        for key, (name, kind) in self.TEXT_KEYS.items():
            value = getattr(self, name)
            if value is None or value == "" or value == []:
                continue
            if kind == "list":
                shown = "|".join(value)
            elif kind == "verdict":
                shown = verdicts[value]
            elif kind == "agreement":
                shown = "agree" if value else "disagree"
            elif kind == "bool":
                shown = "yes" if value else "no"
            else:
                shown = value
            if any(c in str(shown) for c in ",="):
                raise CuratorError(
                    f"{key} value {shown!r} holds ',' or '=', which the text form cannot"
                )
            parts.append(f"{key}={shown}")
        return ",".join(parts)

    @classmethod
    def parse(cls, text: str, *, dataset: str | None = None) -> InstanceFilter:
        """A filter from its text form (see ``TEXT_HELP``); CuratorError on a bad key or value."""
        flt = cls(dataset=dataset)
        verdicts = {"a": -1, "-1": -1, "tie": 0, "0": 0, "b": 1, "1": 1}
        truths = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
        agreements = {**truths, "agree": True, "disagree": False}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                raise CuratorError(f"filter part {part.strip()!r} is not key=value")
            if key not in cls.TEXT_KEYS:
                raise CuratorError(
                    f"unknown filter key {key!r}; known keys: {', '.join(cls.TEXT_KEYS)}"
                )
            name, kind = cls.TEXT_KEYS[key]
            if kind == "list":
                getattr(flt, name).extend(v.strip() for v in value.split("|") if v.strip())
                continue
            if kind == "text":
                flt.search = f"{flt.search} {value}".strip()
                continue
            table = {"verdict": verdicts, "bool": truths, "agreement": agreements}[kind]
            if value.lower() not in table:
                raise CuratorError(
                    f"filter {key}={value!r}: expected one of {', '.join(dict.fromkeys(table))}"
                )
            setattr(flt, name, table[value.lower()])
        return flt


class Store:
    """The workspace's SQLite database. Open with :meth:`open`; close when done."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) or CuratorError(
                f"cannot open the store at {self.path}: {exc}"
            ) from exc
        self.conn = conn
        self.conn.row_factory = sqlite3.Row
        self.db = sqlite_utils.Database(conn, execute_plugins=False)
        self._depth = 0
        self._bulk = False
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        try:
            self.conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            conn.close()
            raise store_error(self.path, exc) or CuratorError(
                f"cannot use the store at {self.path}: {exc}"
            ) from exc
        self.conn.execute("PRAGMA synchronous = NORMAL")

    # ---- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, workspace: Workspace | str | Path | None = None, *, create: bool = True) -> Store:
        """Open (and migrate) the store of a workspace; create the workspace if asked to."""
        ws = workspace if isinstance(workspace, Workspace) else Workspace.resolve(workspace)
        if not ws.exists():
            if not create:
                raise CuratorError(
                    f"no workspace at {ws.root} (create one with `curator demo` or `curator import`)"
                )
            ws.ensure()
        store = cls(ws.db_path)
        store.workspace = ws
        store.migrate()
        return store

    workspace: Workspace | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Store]:
        """The one path for writes: an IMMEDIATE transaction, committed on success, else rolled back.

        Nested calls join the outer transaction (as a savepoint), so a helper that writes can be
        used alone or as part of a bigger all-or-nothing operation such as an import. A full
        disk or a read-only workspace comes out as a CuratorError saying so, after the rollback.
        """
        if self._depth:
            name = f"sp{self._depth}"
            self.conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield self
            except BaseException as exc:
                # SQLite may already have rolled the whole transaction back (a full disk does).
                if self.conn.in_transaction:
                    self.conn.execute(f"ROLLBACK TO {name}")
                    self.conn.execute(f"RELEASE {name}")
                self._raise_clear(exc)
                raise
            else:
                self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._raise_clear(exc)
            raise CuratorError(f"the store at {self.path} cannot be written: {exc}") from exc
        self._depth = 1
        try:
            yield self
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self._raise_clear(exc)
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                self._raise_clear(exc)
                raise CuratorError(f"the store at {self.path} could not save: {exc}") from exc
        finally:
            self._depth = 0

    def _raise_clear(self, exc: BaseException) -> None:
        """Re-raise a SQLite error the user can fix (full disk, read-only) as a CuratorError."""
        if isinstance(exc, sqlite3.Error):
            clear = store_error(self.path, exc)
            if clear is not None:
                raise clear from exc

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[Store]:
        """A write transaction for loading many instances at once (an import of a large file).

        The search index is normally kept by a trigger, one row at a time; in here
        :meth:`insert_instances` indexes each batch with one statement instead, which is four
        times faster. The trigger is dropped and restored inside the same transaction, so no
        other connection ever sees it missing, and a rollback restores it.
        """
        with self.write():
            row = self.conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
                (_FTS_INSERT_TRIGGER,),
            ).fetchone()
            if self._bulk or row is None:
                yield self
                return
            self.conn.execute(f"DROP TRIGGER {_FTS_INSERT_TRIGGER}")
            self._bulk = True
            try:
                yield self
            finally:
                self._bulk = False
            self.conn.execute(row[0])

    def schema_version(self) -> int:
        if not self.db["meta"].exists():
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> int:
        """Bring the schema up to date; each migration is its own transaction.

        Safe when several processes open a fresh workspace at once: the version is read again
        under the write lock, so only the first one applies each migration.
        """
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise CuratorError(
                f"the workspace store is schema version {current}, newer than this "
                f"Hybrid Curator ({SCHEMA_VERSION}); upgrade the app"
            )
        for version, script in MIGRATIONS:
            if version <= current:
                continue
            rebuild = version in REBUILDS
            if rebuild:  # a no-op inside a transaction, so set here, before it opens
                self.conn.execute("PRAGMA foreign_keys = OFF")
            try:
                with self.write():
                    # Another process may have migrated while we waited for the write lock.
                    if self.schema_version() >= version:
                        continue
                    for statement in _split_sql(script):
                        self.conn.execute(statement)
                    if rebuild and self.conn.execute("PRAGMA foreign_key_check").fetchone():
                        raise CuratorError(
                            f"migration {version} would break a reference between tables; "
                            "the store is left as it was"
                        )
                    self.conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(version),),
                    )
            finally:
                if rebuild:
                    self.conn.execute("PRAGMA foreign_keys = ON")
        return self.schema_version()

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]

    # ---- datasets --------------------------------------------------------------------------

    def create_dataset(
        self,
        name: str,
        kind: str,
        *,
        source: str | None = None,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        """Create a dataset (or return it when ``exist_ok`` and it has the same kind)."""
        name = (name or "").strip()
        if not name:
            raise CuratorError("a dataset needs a name")
        if kind not in DATASET_KINDS:
            raise CuratorError(f"dataset kind {kind!r} is not one of {', '.join(DATASET_KINDS)}")
        existing = self.find_dataset(name)
        if existing:
            if not exist_ok:
                raise CuratorError(f"dataset {name!r} already exists")
            if existing["kind"] != kind:
                raise CuratorError(
                    f"dataset {name!r} holds {existing['kind']} data, not {kind} data"
                )
            return existing
        with self.write():
            self.conn.execute(
                "INSERT INTO datasets(name, kind, source, description, metadata) VALUES (?, ?, ?, ?, ?)",
                (name, kind, source, description, json.dumps(metadata or {}, sort_keys=True)),
            )
        return self.dataset(name)

    def find_dataset(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM datasets WHERE name = ?", (name,)).fetchone()
        return dict(row) if row else None

    def dataset(self, name: str) -> dict[str, Any]:
        found = self.find_dataset(name)
        if not found:
            known = ", ".join(d["name"] for d in self.list_datasets()) or "none yet"
            raise CuratorError(f"no dataset named {name!r} (datasets: {known})")
        return found

    def list_datasets(self) -> list[dict[str, Any]]:
        """Datasets with their instance and annotation counts."""
        rows = self.conn.execute(
            """
            SELECT d.*,
                   (SELECT count(*) FROM instances i WHERE i.dataset_id = d.id) AS instances,
                   (SELECT coalesce(sum(s.n_human), 0) FROM instance_summary s
                      JOIN instances i ON i.id = s.instance_id WHERE i.dataset_id = d.id) AS human_labels,
                   (SELECT coalesce(sum(s.n_lm), 0) FROM instance_summary s
                      JOIN instances i ON i.id = s.instance_id WHERE i.dataset_id = d.id) AS lm_labels
            FROM datasets d ORDER BY d.id
            """
        ).fetchall()
        return [dict(r) for r in rows]

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset's row; the schema's cascades take everything keyed to it.

        Unchecked: :func:`curation.datasets.delete_dataset` is the delete curators use, which
        refuses while jobs, mixtures and the like refer to the dataset and reports what went.
        """
        dataset = self.dataset(name)
        with self.write():
            self.conn.execute("DELETE FROM datasets WHERE id = ?", (dataset["id"],))

    # ---- instances -------------------------------------------------------------------------

    def instance_ids(self, dataset_id: int, uids: Sequence[str]) -> dict[str, int]:
        """The ids of those of ``uids`` already in a dataset (absent uids are left out)."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(uids)):
            rows = self.conn.execute(
                f"SELECT uid, id FROM instances WHERE dataset_id = ? AND uid IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                (dataset_id, *chunk),
            )
            found.update((r[0], r[1]) for r in rows)
        return found

    def insert_instances(self, dataset_id: int, instances: Sequence[Instance]) -> list[int]:
        """Insert instances (each with a ``uid`` unique in the dataset); return their ids in order."""
        if not instances:
            return []
        rows = [inst.to_row(dataset_id) for inst in instances]
        uids = list(map(operator.itemgetter("uid"), rows))
        if not all(uids):
            raise ValueError("every instance needs a uid before it is stored")
        columns = _columns_in_use(rows)
        sql = (
            f"INSERT INTO instances({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608
        )
        with self.write():
            # Under the write lock every row past the current last id is one of these, and
            # SQLite numbers new rows from the last id up, so they are usually last+1, last+2...
            last = self._last_instance_id()
            self.conn.executemany(sql, map(operator.itemgetter(*columns), rows))
            if self._bulk:
                self.conn.execute(
                    "INSERT INTO instances_fts(rowid, prompt, response_a, response_b) "
                    "SELECT id, prompt, response_a, response_b FROM instances WHERE id > ?",
                    (last,),
                )
            if self._last_instance_id() == last + len(rows):
                return list(range(last + 1, last + len(rows) + 1))
            by_uid = dict(self.conn.execute("SELECT uid, id FROM instances WHERE id > ?", (last,)))
        return [by_uid[uid] for uid in uids]

    def _last_instance_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM instances").fetchone()[0]

    def instance(self, instance_id: int) -> dict[str, Any]:
        """One instance row (JSON columns decoded), with its dataset's name."""
        row = self.conn.execute(
            "SELECT i.*, d.name AS dataset FROM instances i JOIN datasets d ON d.id = i.dataset_id "
            "WHERE i.id = ?",
            (instance_id,),
        ).fetchone()
        if not row:
            raise CuratorError(f"no instance with id {instance_id}")
        out = dict(row)
        out["messages"] = json.loads(out["messages"]) if out["messages"] else None
        out["metadata"] = json.loads(out["metadata"] or "{}")
        return out

    def iter_instances(
        self, dataset: str, *, batch_size: int = 1000
    ) -> Iterator[tuple[int, Instance]]:
        """Every instance of a dataset, in id order, streamed in batches.

        ``+dataset_id`` makes each batch a walk along the primary key from the last id; through
        a (dataset_id, ...) index every batch would sort all the remaining rows again.
        """
        dataset_id = self.dataset(dataset)["id"]
        last = 0
        while True:
            rows = self.conn.execute(
                "SELECT * FROM instances WHERE +dataset_id = ? AND id > ? ORDER BY id LIMIT ?",
                (dataset_id, last, batch_size),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield row["id"], Instance.from_row(dict(row))
            last = rows[-1]["id"]

    # ---- annotations -----------------------------------------------------------------------

    def add_annotations(self, labelled: Iterable[tuple[int, Annotation]]) -> int:
        """Store labels (replacing an annotator's earlier label on the same instance).

        Returns the number written. The per-instance summary is refreshed in the same
        transaction, so readers never see labels and summary disagree.
        """
        rows = []
        for instance_id, annotation in labelled:
            annotation.validate()
            rows.append(annotation.to_row(instance_id))
        if not rows:
            return 0
        columns = [c for c in rows[0] if c != "created_at"]
        updates = ", ".join(
            f"{c} = excluded.{c}"
            for c in columns
            if c not in ("instance_id", "annotator_kind", "annotator", "status")
        )
        # A review holds for the values it saw: the same label written again (an import run
        # twice) keeps its review, and a rejected one stays rejected; changed values go back
        # to the review queue (curation.review).
        same = " AND ".join(f"excluded.{a} IS annotations.{a}" for a in ASPECTS)
        kept = ", ".join(
            f"{c} = CASE WHEN {same} THEN annotations.{c} ELSE NULL END"
            for c in (
                "review_status",
                "reviewed_by",
                "reviewed_at",
                "review_note",
                "review_original",
            )
        )
        sql = (
            f"INSERT INTO annotations({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "  # noqa: S608
            f"ON CONFLICT(instance_id, annotator_kind, annotator) DO UPDATE SET {updates}, "
            f"status = CASE WHEN {same} AND annotations.status = 'rejected' "
            "AND excluded.status = 'submitted' THEN 'rejected' ELSE excluded.status END, "
            f"{kept}, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        )
        with self.write():
            self.conn.executemany(sql, [tuple(r[c] for c in columns) for r in rows])
            self.refresh_summary(sorted({r["instance_id"] for r in rows}))
        return len(rows)

    def existing_annotations(
        self, keys: Iterable[tuple[int, str, str]]
    ) -> set[tuple[int, str, str]]:
        """Which of these (instance id, annotator kind, annotator) already hold a label."""
        wanted = set(keys)
        found: set[tuple[int, str, str]] = set()
        for chunk in _chunks(sorted({k[0] for k in wanted})):
            marks = ", ".join("?" * len(chunk))
            sql = f"SELECT instance_id, annotator_kind, annotator FROM annotations WHERE instance_id IN ({marks})"  # noqa: S608
            rows = self.conn.execute(sql, tuple(chunk))
            found.update(tuple(r) for r in rows)
        return found & wanted

    def annotations_for(
        self, instance_id: int, *, include_drafts: bool = False
    ) -> list[dict[str, Any]]:
        """Every label on an instance (people first, then LMs), JSON columns decoded."""
        sql = "SELECT * FROM annotations WHERE instance_id = ?"
        if not include_drafts:
            sql += " AND status = 'submitted'"
        sql += " ORDER BY annotator_kind, annotator"
        out = []
        for row in self.conn.execute(sql, (instance_id,)):
            item = dict(row)
            item["reasons"] = json.loads(item["reasons"] or "{}")
            item["probs"] = json.loads(item["probs"]) if item["probs"] else None
            out.append(item)
        return out

    def refresh_summary(self, instance_ids: Sequence[int]) -> None:
        """Recompute the label summary of some instances from their submitted labels."""
        with self.write():
            for chunk in _chunks(list(instance_ids)):
                marks = ", ".join("?" * len(chunk))
                self.conn.execute(
                    f"""
                    INSERT OR REPLACE INTO instance_summary
                        (instance_id, n_human, human_mean, human_verdict, n_lm, lm_mean, lm_verdict, agreement)
                    SELECT id, n_human, human_mean, human_verdict, n_lm, lm_mean, lm_verdict,
                           CASE WHEN human_verdict IS NULL OR lm_verdict IS NULL THEN NULL
                                ELSE human_verdict = lm_verdict END
                    FROM (
                        SELECT i.id,
                            count(CASE WHEN a.annotator_kind = 'human' THEN a.overall END) AS n_human,
                            avg(CASE WHEN a.annotator_kind = 'human' THEN a.overall END) AS human_mean,
                            sign(sum(CASE WHEN a.annotator_kind = 'human' THEN sign(a.overall) END)) AS human_verdict,
                            count(CASE WHEN a.annotator_kind = 'lm' THEN a.overall END) AS n_lm,
                            avg(CASE WHEN a.annotator_kind = 'lm' THEN a.overall END) AS lm_mean,
                            sign(sum(CASE WHEN a.annotator_kind = 'lm' THEN sign(a.overall) END)) AS lm_verdict
                        FROM instances i
                        LEFT JOIN annotations a ON a.instance_id = i.id AND a.status = 'submitted'
                        WHERE i.id IN ({marks})
                        GROUP BY i.id
                    )
                    """,  # noqa: S608
                    chunk,
                )

    def refresh_dataset_summary(self, dataset: str) -> None:
        dataset_id = self.dataset(dataset)["id"]
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM instances WHERE dataset_id = ?", (dataset_id,)
            )
        ]
        self.refresh_summary(ids)

    # ---- queries for the app and CLI -------------------------------------------------------

    _FROM = "FROM instances i LEFT JOIN instance_summary s ON s.instance_id = i.id"

    def count_instances(self, flt: InstanceFilter | None = None) -> int:
        where, params = (flt or InstanceFilter()).where(self)
        return self.conn.execute(f"SELECT count(*) {self._FROM} WHERE {where}", params).fetchone()[
            0
        ]

    def page_instances(
        self, flt: InstanceFilter | None = None, *, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """One page of instances (short columns only) with their label summary, newest id last."""
        where, params = (flt or InstanceFilter()).where(self)
        rows = self.conn.execute(
            f"""
            SELECT i.id, i.uid, substr(i.prompt, 1, 200) AS prompt, i.domain, i.source, i.subset,
                   i.model_a, i.model_b, coalesce(s.n_human, 0) AS n_human, s.human_verdict,
                   coalesce(s.n_lm, 0) AS n_lm, s.lm_verdict, s.agreement
            {self._FROM} WHERE {where} ORDER BY i.id LIMIT ? OFFSET ?
            """,
            [*params, int(limit), int(offset)],
        ).fetchall()
        return [dict(r) for r in rows]

    def matching_ids(self, flt: InstanceFilter, *, limit: int | None = None) -> list[int]:
        """The ids of every instance under a filter, in id order (the first ``limit``)."""
        where, params = flt.where(self)
        sql = f"SELECT i.id {self._FROM} WHERE {where} ORDER BY i.id"  # noqa: S608
        if limit is not None:
            sql += " LIMIT ?"
            params = [*params, int(limit)]
        return [r[0] for r in self.conn.execute(sql, params)]

    def facet_counts(self, column: str, flt: InstanceFilter | None = None) -> dict[Any, int]:
        """Counts per value of one column (instance column or summary column) under a filter."""
        allowed = {
            "domain": "i.domain",
            "source": "i.source",
            "subset": "i.subset",
            "human_verdict": "s.human_verdict",
            "lm_verdict": "s.lm_verdict",
            "agreement": "s.agreement",
        }
        if column not in allowed:
            raise ValueError(f"no facet {column!r}")
        where, params = (flt or InstanceFilter()).where(self)
        expr = allowed[column]
        rows = self.conn.execute(
            f"SELECT {expr} AS value, count(*) AS n {self._FROM} WHERE {where} GROUP BY {expr} ORDER BY n DESC",
            params,
        )
        return {r["value"]: r["n"] for r in rows}

    def label_counts(self, flt: InstanceFilter | None = None) -> list[dict[str, Any]]:
        """Label distribution per annotator kind and aspect: rows of (kind, aspect, value, n)."""
        where, params = (flt or InstanceFilter()).where(self)
        out: list[dict[str, Any]] = []
        for aspect in ASPECTS:
            rows = self.conn.execute(
                f"""
                SELECT a.annotator_kind AS kind, a.{aspect} AS value, count(*) AS n
                FROM annotations a JOIN instances i ON i.id = a.instance_id
                LEFT JOIN instance_summary s ON s.instance_id = i.id
                WHERE a.status = 'submitted' AND a.{aspect} IS NOT NULL AND {where}
                GROUP BY a.annotator_kind, a.{aspect}
                """,  # noqa: S608
                params,
            )
            out.extend({"aspect": aspect, **dict(r)} for r in rows)
        return out

    def stats(self) -> dict[str, Any]:
        """The workspace in numbers (the contract of `curator stats --json`)."""
        q = self.conn.execute
        by_kind = dict(
            q(
                "SELECT annotator_kind, count(*) FROM annotations WHERE status = 'submitted' GROUP BY annotator_kind"
            ).fetchall()
        )
        kinds = dict(q("SELECT kind, count(*) FROM datasets GROUP BY kind").fetchall())
        return {
            "workspace": str(self.path.parent),
            "schema_version": self.schema_version(),
            "datasets": q("SELECT count(*) FROM datasets").fetchone()[0],
            "datasets_by_kind": kinds,
            "instances": q("SELECT count(*) FROM instances").fetchone()[0],
            "annotations": {"human": by_kind.get("human", 0), "lm": by_kind.get("lm", 0)},
            "users": q("SELECT count(*) FROM users").fetchone()[0],
            "jobs": q("SELECT count(*) FROM jobs").fetchone()[0],
            "runs": q("SELECT count(*) FROM runs").fetchone()[0],
            "mixtures": q("SELECT count(*) FROM mixtures").fetchone()[0],
        }


def _columns_in_use(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The columns that some row gives a value; the others keep their default, NULL.

    Most imported rows leave most columns empty (models, domain, gold...); not binding those
    columns at all makes a bulk INSERT about a third faster.
    """
    return [c for c in rows[0] if list(map(operator.itemgetter(c), rows)).count(None) < len(rows)]


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements, keeping trigger bodies whole."""
    statements, buffer = [], []
    for line in script.splitlines():
        if line.strip().startswith("--") or not line.strip():
            continue
        buffer.append(line)
        candidate = "\n".join(buffer)
        if sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buffer = []
    if buffer and "".join(buffer).strip():
        raise ValueError("migration script ends mid-statement")
    return statements
