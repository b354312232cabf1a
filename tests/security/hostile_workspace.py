"""A small workspace whose data is hostile, shared by the security tests.

SQL fragments, LIKE wildcards and a NUL sit in dataset names, facet values, annotator, judge,
feature and run names, and in the texts, so every menu a page builds from the data offers them
and every search box can be checked against a literal match. Built with the data-layer API on a
real store; nothing is mocked.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation import flags, queues, users
from curation.records import Annotation, Instance
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.runs import record_run

APP = Path(__file__).resolve().parents[2] / "app"
USER_KEY = "_curator_user"  # what the sign-in form leaves in a session (app.state)
PASSWORD = "a long enough password"

# Classic injection strings, LIKE wildcards, a NUL and a very long string.
OR_TRUE = "' OR 1=1 --"
DROP = '"; DROP TABLE instances; --'
UNION = "%' UNION SELECT name, sql FROM sqlite_master --"
PAYLOADS = (
    OR_TRUE,
    DROP,
    UNION,
    "%",
    "_",
    "100%",
    "foo_bar",
    "a\x00b",
    "\x00",
    "') OR ('1'='1",
    "prompt:plain OR NEAR(plain question) *",
    "x" * 20_000,
)

HOSTILE_DATASET = "x'; DROP TABLE instances; --"
HOSTILE_DOMAIN = OR_TRUE
HOSTILE_SOURCE = DROP
HOSTILE_ANNOTATOR = "o'brien\"; DELETE FROM annotations; --"
HOSTILE_JUDGE = "judge'; DROP TABLE annotations; --"
HOSTILE_USER = "eve' OR '1'='1"
HOSTILE_FEATURE = "' OR 1=1 --"
HOSTILE_RUN = "run'; DROP TABLE runs; --"
CURATOR, ANNOTATOR, REVIEWER = "cora", "ann", "rev"

# uid -> prompt of the main dataset; the texts a literal search must find (or must not).
PROMPTS = {
    "plain-0": "plain question about gardening",
    "plain-1": "plain question about recursion",
    "or-true": f"quote {OR_TRUE} here",
    "drop": f"x {DROP} y",
    "union": f"u {UNION} v",
    "percent": "100% sure of it",
    "thousand": "1000 things to do",
    "underscore": "foo_bar baz",
    "not-underscore": "fooXbar qux",
    "nul": "a\x00b with a NUL inside",
}


def build(ws: Workspace) -> None:
    """The hostile workspace: two datasets, three accounts, labels, a queue, a flag, features,
    two runs, a failed job and a built mixture."""
    with Store.open(ws) as store:
        prefs = store.create_dataset("prefs", "preference")
        ids = store.insert_instances(
            prefs["id"],
            [
                Instance(
                    uid=uid,
                    prompt=prompt,
                    response_a=f"first reply to pair {k}",
                    response_b=f"second reply to pair {k}",
                    model_a="model-a",
                    model_b="model-b",
                    domain=HOSTILE_DOMAIN if k % 2 else "math",
                    source=HOSTILE_SOURCE if k % 3 == 0 else "unit",
                    subset="%" if k % 2 else "_",
                )
                for k, (uid, prompt) in enumerate(PROMPTS.items())
            ],
        )
        hostile = store.create_dataset(HOSTILE_DATASET, "preference")
        store.insert_instances(
            hostile["id"],
            [
                Instance(uid=f"h{i}", prompt=f"hostile {i}", response_a="yes", response_b="no")
                for i in range(3)
            ],
        )
        labels = []
        for k, iid in enumerate(ids):
            if k >= 3:  # the first three are ann's queue, still to label
                labels.append((iid, Annotation("human", ANNOTATOR, overall=-2 if k % 2 else 1)))
            labels.append((iid, Annotation("human", HOSTILE_ANNOTATOR, overall=-1, helpful=0)))
            labels.append(
                (iid, Annotation("lm", HOSTILE_JUDGE, overall=-2 if k % 3 else 2, confidence=0.8))
            )
        store.add_annotations(labels)
        with store.write():  # what routing.features writes, without running MiniLM
            store.conn.executemany(
                "INSERT INTO features(instance_id, name, value, extractor, label) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (iid, HOSTILE_FEATURE, float(k % 2), "test", ["low", "high"][k % 2])
                    for k, iid in enumerate(ids)
                ],
            )
        users.add_user(store, CURATOR, "curator", PASSWORD)
        users.add_user(store, ANNOTATOR, "annotator", PASSWORD)
        users.add_user(store, REVIEWER, "reviewer", PASSWORD)
        users.add_user(store, HOSTILE_USER, "annotator", PASSWORD)
        queues.assign(store, "prefs", [ANNOTATOR], instance_ids=ids[:3])
        flags.flag_instance(
            store, ids[2], users.get_user(store, ANNOTATOR), flags.FLAG_CATEGORIES[0], OR_TRUE
        )
        for n in range(2):
            record_run(
                store,
                kind="reward",
                name=f"{HOSTILE_RUN}{n}",
                dataset="prefs",
                config={"learning_rate": 1e-4 * (n + 1)},
                metrics={"loss": 0.5 - n / 10},
                evaluation={"rewardbench": {"overall": 0.6 + n / 10}},
            )
        job_id = jobs.enqueue(store, "reward", {"dataset": "prefs", "name": HOSTILE_RUN})
        jobs.claim_next(store, "security-tests")  # a finished job, so no page starts a worker
        jobs.finish(store, job_id, "failed", error=OR_TRUE)
        from curation.mixtures import build_mixture, parse_spec

        spec = {"name": "safe-mix", "kind": "preference", "seed": 0,
                "sources": {"unit": {"dataset": "prefs", "fraction": 1.0}}}  # fmt: skip
        build_mixture(store, parse_spec(spec))


# ---- what a test compares before and after ------------------------------------------------


def module_workspace(tmp_path_factory, name: str) -> Iterator[Workspace]:
    """A built hostile workspace that the app's pages open (``CURATOR_WORKSPACE``) for one test
    module; yield from it in a module-scoped fixture."""
    ws = Workspace(tmp_path_factory.mktemp(name) / "ws").ensure()
    build(ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURATOR_WORKSPACE", str(ws.root))
        yield ws


def schema_and_counts(ws: Workspace) -> tuple[list[tuple], dict[str, int]]:
    """Every schema object (type, name, SQL) and every table's row count, read on a fresh
    connection: an injected DROP, DELETE or UPDATE of the schema shows here."""
    conn = sqlite3.connect(ws.db_path)
    try:
        schema = conn.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        tables = [
            name for kind, name, _ in schema if kind == "table" and not name.startswith("sqlite_")
        ]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()
    return schema, counts


def content_digest(ws: Workspace) -> str:
    """A digest of every row of every table (the store's logical content)."""
    conn = sqlite3.connect(ws.db_path)
    digest = hashlib.sha256()
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        for table in tables:
            digest.update(table.encode())
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1'):
                digest.update(repr(row).encode())
    finally:
        conn.close()
    return digest.hexdigest()


# ---- driving pages -------------------------------------------------------------------------


def page_path(script: str) -> Path:
    return APP / "views" / script


_components = None  # Streamlit's component registry, found once (see new_session)


def new_session(script: Path, user: str | None = None) -> AppTest:
    """A fresh browser session on ``script``, signed in as ``user`` (None: nobody), not run yet."""
    at = AppTest.from_file(str(script), default_timeout=60)
    # Every new AppTest scans all installed packages' metadata for Streamlit components (half a
    # second each); the app ships none, so the registry the first session found serves them all.
    if _components is not None and hasattr(at, "_bidi_component_manager"):
        at._bidi_component_manager = _components
    if user is not None:
        at.session_state[USER_KEY] = user
    return at


def run(at: AppTest) -> AppTest:
    global _components
    at.run()
    if _components is None:
        _components = getattr(at, "_bidi_component_manager", None)
    return at


def open_page(script: str, user: str | None) -> AppTest:
    """A page script run on its own, as a browser asking for it by URL, in a session signed in
    as ``user`` (None: nobody signed in)."""
    return run(new_session(page_path(script), user))


def elements(at: AppTest) -> Iterator:
    """Every element the page rendered (main area and sidebar, nested blocks included)."""

    def walk(node) -> Iterator:
        for child in getattr(node, "children", {}).values():
            yield child
            yield from walk(child)

    yield from walk(at._tree)


def exceptions(at: AppTest) -> list[str]:
    return [e.value for e in at.exception]


def payload_id(value: object) -> str:
    """A short test id for a payload (the long one would make a 20,000-character id)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:24]}...({len(str(value))} chars)"


def words(text: str) -> list[str]:
    """The words of a text as the store's full-text index sees them (letters and digits)."""
    return [w.lower() for w in re.findall(r"[^\W_]+", text)]
