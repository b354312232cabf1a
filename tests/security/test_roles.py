"""Who may do what: every page of the app for every role, and every command of the CLI.

The app: each entry of ``app.state.PAGES`` names the roles it serves. Opened by its URL by any
other role, a page shows one refusal and nothing else; a session nobody signed in to gets a
pointer to the sign-in page and nothing else. New pages are covered by being in ``PAGES``.

The CLI has no login, by design: it acts with the rights of whoever can open the workspace
folder (``app/cli_team.py``), so the operating system's file permissions are its access control.
An annotator is an account of the app; someone who may not manage the workspace must not be
able to open its folder, and a new workspace folder opens to its owner only (0700). Every command
in the command tree (walked, so new ones are covered) is run as a user who cannot open the
workspace: each must refuse with one clear line and leave the store as it was.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hostile_workspace as hw
import pytest
import typer.main
from streamlit import config
from typer.testing import CliRunner

from app.cli import cli
from app.state import ANNOTATOR, PAGES, REVIEWER, PageSpec, roles_phrase
from curation import flags, queues, users
from curation.records import Annotation
from curation.store import Store
from curation.users import PermissionDenied
from curation.workspace import Workspace
from training import jobs

ROOT = Path(__file__).resolve().parents[2]
# Elements that only hold others (or carry no content) in AppTest's tree.
STRUCTURE = {"main", "sidebar", "event"}


def page_id(page: PageSpec) -> str:
    return page.script.removesuffix(".py")


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Iterator[Workspace]:
    yield from hw.module_workspace(tmp_path_factory, "roles")


@pytest.fixture(scope="module")
def curator_session(ws: Workspace):
    """The curator's browser session, signed in, on the app's entry script."""
    return hw.run(hw.new_session(hw.APP / "Home.py", hw.CURATOR))


def rendered(at) -> list:
    return [e for e in hw.elements(at) if e.type not in STRUCTURE]


def shown_text(at) -> str:
    return "\n".join(str(getattr(e, "value", "")) for e in rendered(at))


# ---- pages -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_a_curator_gets_every_page(curator_session, page: PageSpec) -> None:
    """A signed-in curator opens each page from the menu and gets its content."""
    if not page.exists():
        pytest.skip(f"{page.script} is not written yet")
    at = curator_session
    at.switch_page(f"views/{page.script}")
    hw.run(at)
    assert not hw.exceptions(at)
    assert not [e.value for e in at.error if "This page is for" in e.value]
    assert at.title, f"{page.script} showed no title"
    content = [e for e in rendered(at) if e.type not in ("title", "caption")]
    assert content, f"{page.script} showed nothing but its title"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
@pytest.mark.parametrize(("name", "role"), [(hw.ANNOTATOR, ANNOTATOR), (hw.REVIEWER, REVIEWER)])
def test_an_annotator_or_reviewer_opening_a_page_by_url_gets_only_what_the_role_allows(
    ws: Workspace, page: PageSpec, name: str, role: str
) -> None:
    """A page not for the role shows one refusal: no widget, table, chart or data."""
    if not page.exists():
        pytest.skip(f"{page.script} is not written yet")
    at = hw.open_page(page.script, name)
    assert not hw.exceptions(at)
    if role in page.roles:
        assert not at.error and at.title
        return
    assert [e.value for e in at.error] == [
        f"This page is for {roles_phrase(page.roles)}; you are signed in as {name} ({role})."
    ]
    assert [e.type for e in rendered(at)] == ["error"]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_nobody_signed_in_gets_only_a_pointer_to_sign_in(ws: Workspace, page: PageSpec) -> None:
    """Accounts exist and nobody signed in: every page, annotators' too, shows one warning."""
    if not page.exists():
        pytest.skip(f"{page.script} is not written yet")
    at = hw.open_page(page.script, None)
    assert not hw.exceptions(at)
    assert [e.type for e in rendered(at)] == ["warning"]
    assert "Sign in first" in at.warning[0].value


@pytest.fixture(scope="module")
def no_accounts(tmp_path_factory) -> Workspace:
    """A workspace with data and no accounts at all."""
    ws = Workspace(tmp_path_factory.mktemp("no-accounts") / "ws").ensure()
    with Store.open(ws) as store:
        store.create_dataset("prefs", "preference")
    return ws


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_with_no_accounts_an_app_on_the_network_serves_no_page(
    no_accounts: Workspace, page: PageSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No accounts yet and the app listens on every interface: nobody is the local curator."""
    if not page.exists():
        pytest.skip(f"{page.script} is not written yet")
    monkeypatch.setenv("CURATOR_WORKSPACE", str(no_accounts.root))
    config.set_option("server.address", "")  # put back by the suite's app_listens_locally
    at = hw.open_page(page.script, None)
    assert not hw.exceptions(at)
    assert [e.type for e in rendered(at)] == ["warning"]


def test_a_session_naming_an_account_that_is_gone_is_nobody(ws: Workspace) -> None:
    """A session whose account no longer exists (or never did) gets no page."""
    at = hw.open_page("explore.py", "someone-removed")
    assert [e.type for e in rendered(at)] == ["warning"]
    assert "prompt" not in shown_text(at)


def test_the_data_layer_refuses_annotators_what_their_role_does_not_allow(ws: Workspace) -> None:
    """Functions the pages call with the signed-in user check the role themselves: an annotator
    cannot resolve a flag, nor label an instance outside their queue; the store is unchanged."""
    before = hw.content_digest(ws)
    with Store.open(ws) as store:
        ann = users.get_user(store, hw.ANNOTATOR)
        flag_id = flags.open_flags(store)[0]["id"]
        with pytest.raises(PermissionDenied):
            flags.resolve_flag(store, flag_id, "not mine to resolve", exclude=True, user=ann)
        queued = {item.instance_id for item in queues.queue(store, ann)}
        other = next(r["id"] for r in store.page_instances(limit=100) if r["id"] not in queued)
        with pytest.raises(PermissionDenied):
            queues.submit(store, ann, other, Annotation("human", ann.name, overall=2))
    assert hw.content_digest(ws) == before


# ---- the command line --------------------------------------------------------------------------

# Commands that never open a workspace.
NO_WORKSPACE = {("presets",)}
# Arguments a command needs before it opens the workspace; everything else gets "prefs" (an
# int argument gets 1). Only what is needed to reach the workspace belongs here.
NAMED_ARGS = {"to": "ann", "repo": "org/name", "role": "annotator", "resolution": "done"}
EXTRA_ARGS = {
    ("demo",): ["--no-ui"],
    ("sweep",): ["--eval", "prefs"],
    ("decontam",): ["--against", "prefs"],
    ("train", "reward"): ["--dataset", "prefs"],
    ("train", "sft"): ["--dataset", "prefs"],
    ("train", "dpo"): ["--dataset", "prefs"],
    ("users", "add"): ["--password-stdin"],
    ("users", "reset-password"): ["--password-stdin"],
}


def cli_commands() -> list[tuple[tuple[str, ...], object]]:
    """Every leaf command of `curator`, with its path (``("mix", "export")``)."""

    def walk(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from walk(command, (*path, name))
            else:
                yield (*path, name), command

    return list(walk(typer.main.get_command(cli)))


COMMANDS = cli_commands()
WORKSPACE_COMMANDS = [path for path, _ in COMMANDS if path not in NO_WORKSPACE]


def test_every_cli_command_opens_a_workspace_or_is_declared_not_to() -> None:
    """A new command either takes --workspace (and so falls under the test below) or is
    listed as touching no workspace data; the argument tables name only real commands."""
    paths = {path for path, _ in COMMANDS}
    for path, command in COMMANDS:
        has_workspace = any(p.name == "workspace" for p in command.params)
        assert has_workspace != (path in NO_WORKSPACE), (
            f"curator {' '.join(path)}: give it --workspace or list it in NO_WORKSPACE"
        )
    assert set(EXTRA_ARGS) <= paths and NO_WORKSPACE <= paths


def argv_for(path: tuple[str, ...], command, spec_file: Path, out: Path) -> list[str]:
    argv = list(path)
    for param in command.params:
        if not param.required:
            continue
        annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
        value = {"out": str(out), "spec": str(spec_file)}.get(param.name) or NAMED_ARGS.get(
            param.name, "1" if annotation is int else "prefs"
        )
        argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return argv + EXTRA_ARGS.get(path, [])


# Runs each command in turn, in one process, through `curator`'s own entry point (user errors
# become "error: ..." and exit 1; anything else is a traceback, which is a bug).
LOCKED_OUT_RUNNER = """
import contextlib, io, json, sys, traceback
from app.cli import main
plan_file, results_file = sys.argv[1], sys.argv[2]
results = {}
for key, argv in json.loads(open(plan_file).read()):
    out, err = io.StringIO(), io.StringIO()
    sys.argv, sys.stdin = ["curator", *argv], io.StringIO("a long enough password\\n")
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            code = "traceback"
            err.write(traceback.format_exc())
    results[key] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
open(results_file, "w").write(json.dumps(results))
"""

# As root, give up the capabilities that let root open any folder, then run the commands: the
# folder's permission bits then apply to root as to anyone. (They leave the bounding set, and
# the exec recomputes root's capabilities from it.) Exit status 97: this root may not do that.
DROP_FOLDER_OVERRIDE_AND_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        sys.exit(97)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
NO_CAPSET = 97


def files_of(ws: Workspace) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(ws.root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(ws.root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def locked_out(ws: Workspace, tmp_path_factory) -> dict:
    """Every workspace command, run with the workspace from $CURATOR_WORKSPACE (as a user's
    shell would have it) by a user whose permissions do not let them open the folder."""
    tmp = tmp_path_factory.mktemp("locked-out")
    spec = tmp / "spec.yaml"
    spec.write_text("name: locked\nkind: sft\nsources:\n  a: {dataset: prefs, fraction: 1}\n")
    plan = [
        (" ".join(path), argv_for(path, command, spec, tmp / "out.jsonl"))
        for path, command in COMMANDS
        if path not in NO_WORKSPACE
    ]
    plan.append(("explicit --workspace", ["stats", "--workspace", str(ws.root)]))
    (tmp / "plan.json").write_text(json.dumps(plan))
    before = (hw.content_digest(ws), files_of(ws))
    mode = ws.root.stat().st_mode
    os.chmod(ws.root, 0)
    command = ["-c", LOCKED_OUT_RUNNER, str(tmp / "plan.json"), str(tmp / "out")]
    if os.geteuid() == 0:
        command = ["-c", DROP_FOLDER_OVERRIDE_AND_EXEC, *command]
    try:
        proc = subprocess.run(
            [sys.executable, *command],
            cwd=ROOT,
            env=dict(os.environ, CURATOR_WORKSPACE=str(ws.root)),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        os.chmod(ws.root, mode)
    if proc.returncode == NO_CAPSET:
        pytest.skip("root here cannot give up its right to open any folder (no CAP_SETPCAP)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = (hw.content_digest(ws), files_of(ws))
    return {"results": json.loads((tmp / "out").read_text()), "unchanged": before == after}


@pytest.mark.parametrize("path", WORKSPACE_COMMANDS, ids=" ".join)
def test_a_cli_user_who_cannot_open_the_workspace_is_refused_with_one_clear_line(
    locked_out: dict, ws: Workspace, path: tuple[str, ...]
) -> None:
    """The command stops at the workspace: exit status 1, one `error:` line naming the folder
    and why, no traceback, and no data on stdout."""
    result = locked_out["results"][" ".join(path)]
    assert result["code"] == 1, result
    assert result["stderr"].strip() in {
        f"error: cannot open the workspace at {ws.root}: Permission denied",
        f"error: cannot create workspace at {ws.root}: Permission denied",
    }, result
    assert result["stdout"] == ""


def test_refused_cli_commands_leave_the_workspace_as_it_was(locked_out: dict) -> None:
    """No command wrote anything: every table's content and every file are as before."""
    assert locked_out["unchanged"]


def test_an_explicit_unreadable_workspace_is_refused_before_the_command_runs(
    locked_out: dict,
) -> None:
    """--workspace naming a folder that may not be read is a usage error (exit status 2)."""
    result = locked_out["results"]["explicit --workspace"]
    assert result["code"] == 2 and "is not readable" in result["stderr"], result


def test_a_new_workspace_folder_is_its_owners_alone(tmp_path: Path) -> None:
    """Since the folder's permissions are the command line's access control, a workspace the
    CLI creates opens to its owner only (0700); a folder that exists keeps the mode it has."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "q", "response_a": "a", "response_b": "b"}\n')
    result = CliRunner().invoke(cli, ["import", str(pairs), "--workspace", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o750)
    shared.chmod(0o750)
    Workspace(shared).ensure()
    assert shared.stat().st_mode & 0o777 == 0o750


def test_what_the_cli_queues_is_recorded_as_the_shell_user(tmp_path: Path) -> None:
    """The command line acts as the operating-system user who runs it and says so on the jobs
    it queues (`created_by`), the app as the signed-in account."""
    ws = Workspace(tmp_path / "ws").ensure()
    with Store.open(ws) as store:
        store.create_dataset("prefs", "preference")
        first = jobs.enqueue(store, "reward", {"dataset": "prefs"}, created_by=hw.CURATOR)
        jobs.claim_next(store, "security-tests")
        jobs.finish(store, first, "failed", error="stopped")
    result = CliRunner().invoke(cli, ["jobs", "retry", str(first), "--workspace", str(ws.root)])
    assert result.exit_code == 0, result.output
    with Store.open(ws) as store:
        retried = jobs.get_job(store, int(result.output.strip()))
        jobs.request_cancel(store, retried.id)  # nothing should run it
    assert retried.created_by == f"cli:{getpass.getuser()}"
