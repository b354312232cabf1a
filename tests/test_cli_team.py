"""`curator users`, `curator assign` and `curator flags`, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from curation.flags import flag_instance, open_flags
from curation.records import Instance
from curation.store import Store
from curation.users import add_user
from curation.workspace import Workspace

CURATOR = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "a long enough password"


def curator(*args: str, check: bool = True, stdin: str | None = None):
    result = subprocess.run(
        [*CURATOR, *args], capture_output=True, text=True, cwd=ROOT, timeout=120, input=stdin
    )
    if check and result.returncode != 0:
        raise AssertionError(f"curator {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def ws(tmp_path: Path, cheap_password_hashing) -> str:
    """A workspace with 8 pairs (4 math, 4 code) and three annotators, built in-process."""
    workspace = Workspace(tmp_path / "ws")
    with Store.open(workspace) as store:
        ds = store.create_dataset("prefs", "preference")
        store.insert_instances(
            ds["id"],
            [
                Instance(uid=f"p{i}", prompt=f"question {i}", response_a="a", response_b="b",
                         domain="math" if i % 2 else "code")
                for i in range(8)
            ],
        )  # fmt: skip
        for name in ("ana", "bo", "cy"):
            add_user(store, name, "annotator", PASSWORD)
    return str(workspace.root)


@pytest.mark.parametrize(
    "command",
    [["users"], ["users", "add"], ["users", "list"], ["users", "set-role"],
     ["users", "reset-password"], ["assign"], ["flags"], ["flags", "list"], ["flags", "resolve"]],
)  # fmt: skip
def test_every_team_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_users_add_list_and_set_role(ws):
    """The password comes from stdin and is stored only as an argon2 hash; roles change by name."""
    added = curator(
        "users", "add", "dee", "--role", "curator", "--password-stdin", "-w", ws,
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert "added curator dee" in added.stdout and PASSWORD not in added.stdout + added.stderr
    listed = json.loads(curator("users", "list", "--json", "-w", ws).stdout)
    assert [(u["name"], u["role"]) for u in listed] == [
        ("ana", "annotator"),
        ("bo", "annotator"),
        ("cy", "annotator"),
        ("dee", "curator"),
    ]
    result = curator("users", "set-role", "ana", "curator", "-w", ws)
    assert "ana is now curator" in result.stdout
    assert "ana\tcurator" in curator("users", "list", "-w", ws).stdout
    with Store.open(Workspace(Path(ws))) as store:
        stored = store.conn.execute("SELECT password_hash FROM users WHERE name = 'dee'").fetchone()
    assert stored[0].startswith("$argon2id$") and PASSWORD not in stored[0]


def test_users_add_refuses_a_short_password_and_a_duplicate(ws):
    short = curator(
        "users", "add", "dee", "--password-stdin", "-w", ws, stdin="short\n", check=False
    )
    assert short.returncode == 1 and "8 characters" in short.stderr
    dup = curator("users", "add", "ana", "--password-stdin", "-w", ws, stdin=PASSWORD, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert "Traceback" not in short.stderr + dup.stderr


def test_reset_password_from_stdin(ws):
    result = curator(
        "users", "reset-password", "bo", "--password-stdin", "-w", ws, stdin="another password\n"
    )
    assert "reset" in result.stdout


def test_assign_with_where_and_overlap(ws):
    """4 math pairs x overlap 2 over three people: 8 assignments, nobody above 3."""
    result = curator(
        "assign", "prefs", "--to", "ana", "--to", "bo,cy", "--overlap", "2",
        "--where", "domain=math,has_human=no", "--json", "-w", ws,
    )  # fmt: skip
    counts = json.loads(result.stdout)
    assert counts["instances"] == 4 and counts["created"] == 8
    assert sorted(counts["per_user"].values()) == [2, 3, 3]
    again = json.loads(
        curator(
            "assign", "prefs", "--to", "ana,bo,cy", "--overlap", "2", "--where", "domain=math",
            "--json", "-w", ws,
        ).stdout
    )  # fmt: skip
    assert again["created"] == 0 and again["skipped_existing"] == 8


def test_assign_rejects_a_bad_filter_key_and_a_too_large_overlap(ws):
    bad = curator("assign", "prefs", "--to", "ana", "--where", "colour=red", "-w", ws, check=False)
    assert bad.returncode == 1 and "unknown filter key 'colour'" in bad.stderr
    big = curator("assign", "prefs", "--to", "ana", "--overlap", "2", "-w", ws, check=False)
    assert big.returncode == 1 and "overlap 2" in big.stderr


def test_assign_from_a_route_plan_queues_its_human_items(ws):
    """`assign --plan` takes exactly the plan's human-routed instances, with the plan recorded."""
    with Store.open(Workspace(Path(ws))) as store:
        ids = [r[0] for r in store.conn.execute("SELECT id FROM instances ORDER BY id LIMIT 3")]
        with store.write():
            plan_id = store.conn.execute(
                "INSERT INTO route_plans(dataset_id, method, budget) "
                "SELECT id, 'greedy', 0.25 FROM datasets WHERE name = 'prefs'"
            ).lastrowid
            store.conn.executemany(
                "INSERT INTO route_plan_items(plan_id, instance_id, target) VALUES (?, ?, ?)",
                [(plan_id, ids[0], "human"), (plan_id, ids[1], "lm"), (plan_id, ids[2], "human")],
            )
    counts = json.loads(
        curator("assign", "prefs", "--to", "ana", "--plan", str(plan_id), "--json", "-w", ws).stdout
    )
    assert counts["created"] == 2
    with Store.open(Workspace(Path(ws))) as store:
        rows = store.conn.execute("SELECT instance_id, origin, plan_id FROM assignments").fetchall()
    assert sorted(tuple(r) for r in rows) == [
        (ids[0], "route_plan", plan_id),
        (ids[2], "route_plan", plan_id),
    ]
    mixed = curator("assign", "prefs", "--to", "ana", "--plan", str(plan_id), "--where",
                    "domain=math", "-w", ws, check=False)  # fmt: skip
    assert mixed.returncode == 1 and "--plan" in mixed.stderr
    missing = curator("assign", "prefs", "--to", "ana", "--plan", "999", "-w", ws, check=False)
    assert missing.returncode == 1 and "no route plan 999" in missing.stderr


def test_flags_list_and_resolve(ws):
    with Store.open(Workspace(Path(ws))) as store:
        instance_id = store.conn.execute("SELECT min(id) FROM instances").fetchone()[0]
        flag_id = flag_instance(store, instance_id, None, "privacy", "an email address")
    listed = json.loads(curator("flags", "list", "--json", "-w", ws).stdout)
    assert [(f["id"], f["category"], f["dataset"]) for f in listed] == [
        (flag_id, "privacy", "prefs")
    ]
    curator("flags", "resolve", str(flag_id), "--resolution", "redacted", "--exclude", "-w", ws)
    assert "no open flags" in curator("flags", "list", "-w", ws).stdout
    with Store.open(Workspace(Path(ws))) as store:
        assert open_flags(store) == []
        row = store.conn.execute("SELECT exclude, resolution FROM flags").fetchone()
    assert tuple(row) == (1, "redacted")
