"""A full disk and a read-only workspace: the curator gets one clear error saying which, not
SQLite's own exception, and everything stored before is still there and intact.

A full disk is simulated in-process with ``PRAGMA max_page_count`` (SQLite then fails a write
exactly as on a full disk, with SQLITE_FULL), and for the command line with a real 1 MB tmpfs.
A read-only workspace is a chmod for ordinary users; root ignores file modes, so there it is a
read-only bind mount, as on a read-only file system. The mounts need a user namespace
(``unshare``); where there is none, those tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_import_errors import _snapshot

from curation import queues
from curation.errors import CuratorError
from curation.exporter import export_dataset
from curation.importer import ImportOptions, import_path
from curation.records import Annotation
from curation.store import Store
from curation.users import add_user, get_user

ROOT = Path(__file__).resolve().parents[2]
CURATOR = [sys.executable, "-m", "app.cli"]
FULL = "is full: nothing was saved from this operation and earlier data is intact"
READ_ONLY = "is read-only: nothing was changed"


def _pairs(path: Path, count: int, *, prefix: str, text: str = "") -> Path:
    rows = (
        {"id": f"{prefix}{i}", "prompt": f"question {i} {text}", "response_a": "a",
         "response_b": "b", "label": "A>B"}
        for i in range(count)
    )  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def labelled(store: Store, tmp_path: Path, cheap_password_hashing) -> Store:
    """Dataset ``d`` (ten labelled pairs) and an annotator with all ten in her queue."""
    import_path(store, _pairs(tmp_path / "seed.jsonl", 10, prefix="s"), ImportOptions(dataset="d"))
    add_user(store, "ann", "annotator", "long enough password")
    queues.assign(store, "d", ["ann"])
    return store


def _fill_the_disk(store: Store) -> None:
    """From now on this connection cannot grow the database file by a single page."""
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")


def test_an_import_onto_a_full_disk_fails_clearly_and_keeps_every_earlier_row(labelled, tmp_path):
    before = _snapshot(labelled)
    _fill_the_disk(labelled)
    big = _pairs(tmp_path / "more.jsonl", 3000, prefix="m", text="words " * 40)
    for dataset in ("d", "new"):
        with pytest.raises(CuratorError, match=FULL):
            mode = "append" if dataset == "d" else "new"
            import_path(labelled, big, ImportOptions(dataset=dataset, mode=mode))
        assert _snapshot(labelled) == before
    assert labelled.integrity_check() == "ok"


def test_a_label_submitted_onto_a_full_disk_is_refused_clearly_and_nothing_changes(labelled):
    user = get_user(labelled, "ann")
    item = queues.next_item(labelled, user)
    before = _snapshot(labelled)
    _fill_the_disk(labelled)
    label = Annotation("human", "ann", overall=1, justification="because " * 20_000)
    with pytest.raises(CuratorError, match=FULL):
        queues.submit(labelled, user, item.instance_id, label)
    assert _snapshot(labelled) == before
    assert queues.next_item(labelled, user).instance_id == item.instance_id  # still to do
    assert labelled.integrity_check() == "ok"


def test_a_full_store_still_exports_everything_it_holds(labelled, tmp_path):
    """Reading needs no space: what a full workspace holds can still be taken out of it."""
    _fill_the_disk(labelled)
    with pytest.raises(CuratorError, match=FULL):
        import_path(labelled, _pairs(tmp_path / "more.jsonl", 3000, prefix="m", text="x " * 99))
    out = tmp_path / "rescued.jsonl"
    report = export_dataset(labelled, "d", "jsonl", out, shape="native")
    assert report.rows == 10
    assert [json.loads(line)["uid"] for line in out.read_text().splitlines()] == [
        f"s{i}" for i in range(10)
    ]


# ---- the command line, on a real full disk and a real read-only workspace ----------------------


def _namespaces_or_skip() -> None:
    """Mounting needs a user namespace: `unshare -rm` (root inside it, nowhere else)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot mount a test file system")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not allowed here: {probe.stderr.strip()}")


def _in_namespace(script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a shell script (``$1``... are ``args``) as root of a private mount namespace."""
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip


def _stats(workspace: Path) -> dict:
    with Store.open(workspace, create=False) as store:
        assert store.integrity_check() == "ok"
        return store.stats()


def test_curator_import_onto_a_full_disk_says_so_and_keeps_the_earlier_import(tmp_path):
    _namespaces_or_skip()
    seed = _pairs(tmp_path / "seed.jsonl", 5, prefix="s")
    big = _pairs(tmp_path / "big.jsonl", 3000, prefix="b", text="words " * 100)  # 2 MB
    disk = tmp_path / "disk"
    disk.mkdir()
    python = sys.executable
    ran = _in_namespace(
        'mount -t tmpfs -o size=1m tmpfs "$1" || exit 99\n'
        'ws="$1/ws"; shift; py="$1"; shift\n'
        '"$py" -m app.cli import "$1" --workspace "$ws" --dataset d >/dev/null || exit 98\n'
        '"$py" -m app.cli import "$2" --workspace "$ws" --dataset d --append; echo "exit=$?"\n'
        '"$py" -c "import sys; from curation.store import Store; s = Store.open(sys.argv[1], '
        "create=False); print('integrity=' + s.integrity_check()); "
        "print('instances=%d' % s.stats()['instances'])\" \"$ws\"\n",
        str(disk), python, str(seed), str(big),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "exit=1" in ran.stdout
    assert "integrity=ok" in ran.stdout and "instances=5" in ran.stdout
    assert f"error: the disk holding the workspace {disk / 'ws'} {FULL}" in ran.stderr
    assert "Traceback" not in ran.stderr


def _read_only_command(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    """`curator ARGS` with the workspace read-only: its modes for a user, a read-only bind
    mount for root (whom modes do not stop)."""
    if os.geteuid() != 0:
        paths = [workspace, *workspace.iterdir()]
        modes = {p: p.stat().st_mode for p in paths}
        for p in paths:
            p.chmod(modes[p] & 0o555)
        try:
            return subprocess.run([*CURATOR, *args], capture_output=True, text=True, cwd=ROOT)
        finally:
            for p in paths:
                p.chmod(modes[p])
    _namespaces_or_skip()
    return _in_namespace(
        'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 99\nshift\n"$@"',
        str(workspace), *CURATOR, *args,
    )  # fmt: skip


def test_curator_on_a_read_only_workspace_says_so_and_loses_nothing(labelled, workspace, tmp_path):
    labelled.close()
    before = _stats(workspace.root)
    more = _pairs(tmp_path / "more.jsonl", 5, prefix="m")
    ran = _read_only_command(
        workspace.root, "import", str(more), "--workspace", str(workspace.root), "--dataset", "d"
    )
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert f"error: the workspace {workspace.root} {READ_ONLY}" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert _stats(workspace.root) == before
