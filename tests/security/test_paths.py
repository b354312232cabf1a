"""Where files are read and written: the workspace, unless the user names a path explicitly.

The rule (``curation.workspace.Workspace.confine``): a path typed into a page's box comes from
someone who may not own the machine, so it is confined. Relative paths land in the page's folder
(``exports/``, ``imports/``); what a page writes stays inside ``exports/`` (never over the store,
the logs or another folder's files); what a page reads stays inside the workspace; ``..``,
absolute paths elsewhere, symbolic links leading out and names with a NUL are refused. A path on
the command line (``--out``, the file to import) is explicit: the shell user chose it, and it is
used as given. What the CLI writes without being given a path (mixture versions, job runs) stays
in the workspace whatever the names in the spec say.
"""

from __future__ import annotations

import json
from pathlib import Path

import hostile_workspace as hw
import pytest
from typer.testing import CliRunner

from app.cli import cli
from curation.errors import CuratorError
from curation.store import InstanceFilter, Store
from curation.workspace import Workspace
from training import jobs
from training.config import TRAINER_KINDS, config_class, config_fields
from training.kinds import JobContext

PAIRS = [{"prompt": f"q{i}", "response_a": "a", "response_b": "b"} for i in range(3)]


def write_pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The hostile workspace, an outside folder (with a victim file and a pairs file), and
    symbolic links inside the workspace that lead out of it."""
    base = tmp_path_factory.mktemp("paths")
    ws = Workspace(base / "ws").ensure()
    hw.build(ws)
    outside = base / "outside"
    outside.mkdir()
    victim = outside / "victim.jsonl"
    victim.write_text("do not overwrite\n")
    write_pairs(outside / "secret.jsonl")
    (ws.root / "exports" / "escape").symlink_to(outside, target_is_directory=True)
    (ws.root / "exports" / "victim.jsonl").symlink_to(victim)
    (ws.root / "imports" / "leak.jsonl").symlink_to(outside / "secret.jsonl")
    write_pairs(ws.root / "imports" / "good.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURATOR_WORKSPACE", str(ws.root))
        yield ws, outside


def outside_files(outside: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(outside.iterdir())}


# ---- the rule ----------------------------------------------------------------------------------


def test_confine_refuses_every_way_out(env) -> None:
    """`..`, absolute paths elsewhere, `~`, links leading out and NUL are refused; paths that
    stay inside resolve inside."""
    ws, outside = env
    for path in ["../../x.jsonl", str(outside / "x.jsonl"), "~/x.jsonl", "escape/x.jsonl",
                 "victim.jsonl", "a\x00b.jsonl", "../../imports/../../x"]:  # fmt: skip
        with pytest.raises(CuratorError):
            ws.confine(path, base="exports")
    assert ws.confine("a.jsonl") == ws.root.resolve() / "exports" / "a.jsonl"
    assert ws.confine("sub/../b.jsonl") == ws.root.resolve() / "exports" / "b.jsonl"
    assert ws.confine(ws.root / "imports" / "good.jsonl", base="imports").is_file()


def test_what_a_page_writes_stays_in_its_folder(env) -> None:
    """Writes stay in exports/: not over the store, the logs, or the exports folder itself."""
    ws, _ = env
    for path in ["../curator.db", "../logs/worker.pid", "../imports/good.jsonl", "", "."]:
        with pytest.raises(CuratorError):
            ws.confine(path, base="exports", within_base=True)
    assert ws.confine("a/b.jsonl", within_base=True) == ws.root.resolve() / "exports/a/b.jsonl"


# ---- pages -------------------------------------------------------------------------------------

# Typed into a page's output box: each must be refused.
ESCAPES = [
    "../../escape.jsonl",
    "{outside}/written.jsonl",
    "escape/through-a-link.jsonl",
    "victim.jsonl",
    "bad\x00name.jsonl",
    "../curator.db",
    "../logs/written.jsonl",
]


def typed(path: str, outside: Path) -> str:
    return path.format(outside=outside)


def refused(at) -> bool:
    """The page said why it refused the path (and raised no exception)."""
    assert not hw.exceptions(at)
    return any("outside the workspace" in e.value or "NUL" in e.value for e in at.error)


@pytest.fixture(scope="module")
def curator_session(env):
    return hw.run(hw.new_session(hw.APP / "Home.py", hw.CURATOR))


def on_page(session, script: str):
    session.switch_page(f"views/{script}")
    at = hw.run(session)
    assert not hw.exceptions(at)
    return at


@pytest.mark.parametrize("path", ESCAPES, ids=repr)
def test_the_export_page_refuses_paths_out_of_exports(env, curator_session, path: str) -> None:
    """An escaping output path shows an error; nothing is written outside, the victim behind a
    link is untouched and the store is intact."""
    ws, outside = env
    before, store_before = outside_files(outside), hw.content_digest(ws)
    at = on_page(curator_session, "export.py")
    at.selectbox(key="export_dataset").set_value("prefs")
    at.text_input(key="export_out_prefs_jsonl").set_value(typed(path, outside))
    hw.run(at.button(key="export_go").click())
    assert refused(at) and not at.success
    assert outside_files(outside) == before
    assert hw.content_digest(ws) == store_before


def test_the_export_page_writes_a_relative_path_into_exports(env, curator_session) -> None:
    ws, _ = env
    at = on_page(curator_session, "export.py")
    at.selectbox(key="export_dataset").set_value("prefs")
    at.text_input(key="export_out_prefs_jsonl").set_value("sub/prefs-out.jsonl")
    hw.run(at.button(key="export_go").click())
    assert not at.error, [e.value for e in at.error]
    assert (ws.root / "exports" / "sub" / "prefs-out.jsonl").is_file()


@pytest.mark.parametrize(
    "path", ["../../escape.jsonl", "escape/through-a-link.jsonl", "../curator.db"], ids=repr
)
def test_the_mix_page_export_refuses_paths_out_of_exports(env, curator_session, path) -> None:
    """The same rule on the Mix page's export form (a slow page: three of the escapes)."""
    ws, outside = env
    before = outside_files(outside)
    at = on_page(curator_session, "mix.py")
    at.text_input(key="mix_export_out").set_value(typed(path, outside))
    hw.run(at.button(key="mix_export_go").click())
    assert refused(at) and not at.success
    assert outside_files(outside) == before


def test_the_mix_page_exports_a_relative_path_into_exports(env, curator_session) -> None:
    ws, _ = env
    at = on_page(curator_session, "mix.py")
    at.text_input(key="mix_export_out").set_value("safe-mix.jsonl")
    hw.run(at.button(key="mix_export_go").click())
    assert not at.error, [e.value for e in at.error]
    assert (ws.root / "exports" / "safe-mix.jsonl").is_file()


def import_page(session, source: str):
    at = on_page(session, "import_data.py")
    at.radio(key="import_kind").set_value(source)
    return hw.run(at)


@pytest.mark.parametrize(
    "path",
    ["../../outside/secret.jsonl", "{outside}/secret.jsonl", "leak.jsonl", "bad\x00.jsonl"],
    ids=repr,
)
def test_the_import_page_reads_no_file_outside_the_workspace(env, curator_session, path) -> None:
    """A path typed into the Import page's box, or a link in imports/ leading out: refused
    before any row is read or a dataset made."""
    ws, outside = env
    with Store.open(ws) as store:
        datasets = [d["name"] for d in store.list_datasets()]
    at = import_page(curator_session, "A file in the workspace")
    at.text_input(key="import_path").set_value(typed(path, outside))
    hw.run(at)
    assert refused(at)
    assert "import_go" not in [b.key for b in at.button] and not at.dataframe
    with Store.open(ws) as store:
        assert [d["name"] for d in store.list_datasets()] == datasets


def test_the_import_page_imports_a_file_in_the_workspace(env, curator_session) -> None:
    ws, _ = env
    at = import_page(curator_session, "A file in the workspace")
    at.text_input(key="import_path").set_value("good.jsonl")
    hw.run(at)
    hw.run(at.button(key="import_go").click())
    assert not hw.exceptions(at) and not at.error
    with Store.open(ws) as store:
        assert store.count_instances(InstanceFilter(dataset="good")) == len(PAIRS)


@pytest.mark.parametrize("path", ["{outside}/secret.jsonl", "tests/conftest.py"], ids=repr)
def test_the_hub_id_box_takes_no_local_path(env, curator_session, path) -> None:
    """`datasets` loads local files by path too: a path typed as a hub id is refused, so the
    hub box is no way round the path box's confinement."""
    ws, outside = env
    at = import_page(curator_session, "A Hugging Face hub id")
    at.text_input(key="import_hub").set_value(typed(path, outside))
    hw.run(at)
    assert not hw.exceptions(at)
    assert any("is not a hub id" in e.value for e in at.error)
    assert "import_go" not in [b.key for b in at.button]  # nothing to press: the page stopped
    with Store.open(ws) as store:
        assert store.find_dataset("secret") is None


def test_an_upload_is_saved_in_imports_whatever_its_name(env, curator_session) -> None:
    """The browser names an upload; only its last component is kept, inside imports/."""
    ws, outside = env
    before = outside_files(outside)
    at = import_page(curator_session, "Upload a file")
    data = "".join(json.dumps(r) + "\n" for r in PAIRS).encode()
    at.get("file_uploader")[0].upload("../../../uploaded.jsonl", data, "application/jsonl")
    hw.run(at)
    assert not hw.exceptions(at)
    assert (ws.root / "imports" / "uploaded.jsonl").read_bytes() == data
    assert outside_files(outside) == before
    assert not (ws.root.parent / "uploaded.jsonl").exists()


# ---- models and eval files named on a page ------------------------------------------------------


def test_a_source_typed_in_the_app_is_a_hub_id_or_a_file_in_the_workspace(env, monkeypatch):
    """Hub ids and bare model names pass as typed; local paths resolve inside the workspace;
    a path elsewhere, a link leading out, or a name the server's working folder holds (a loader
    would read it from there) is refused, unless the server's owner listed its folder."""
    ws, outside = env
    monkeypatch.delenv("CURATOR_MODEL_ROOTS", raising=False)
    (ws.root / "models" / "mine").mkdir(exist_ok=True)
    (ws.root / "models" / "out").unlink(missing_ok=True)
    (ws.root / "models" / "out").symlink_to(outside, target_is_directory=True)
    assert ws.confine_source("HuggingFaceTB/SmolLM2-135M-Instruct") == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert ws.confine_source("smollm2") == "smollm2"
    assert ws.confine_source("models/mine") == str((ws.root / "models" / "mine").resolve())
    assert ws.confine_source(str(ws.root / "models" / "mine")).endswith("models/mine")
    for ref in [str(outside), "../outside", "models/out", "~", "tests/conftest.py", "a\x00b", ""]:
        with pytest.raises(CuratorError):
            ws.confine_source(ref)
    # where a file is wanted, a name is a path in the workspace (a missing file fails later)
    assert ws.confine_source("org/name", hub=False) == str((ws.root / "org" / "name").resolve())
    monkeypatch.setenv("CURATOR_MODEL_ROOTS", str(outside))
    assert ws.confine_source(str(outside / "secret.jsonl")) == str(outside / "secret.jsonl")


def jobs_form(session, kind: str = "reward"):
    at = on_page(session, "jobs.py")
    at.selectbox(key="jobs_kind").set_value(kind)
    return hw.run(at)


@pytest.mark.parametrize(
    "field, value",
    [
        ("base_model", "{outside}"),
        ("base_model", "../outside"),
        ("base_model", "tests"),
        ("eval_sets", "gsm8k:{outside}/secret.jsonl"),
        ("eval_sets", "xstest:../../outside/secret.jsonl"),
    ],
    ids=repr,
)
def test_the_jobs_page_loads_no_model_or_eval_file_outside_the_workspace(
    env, curator_session, field, value
) -> None:
    """A base model or an eval file typed into the Jobs form, outside the workspace: refused
    before the job is queued, so no worker ever reads it."""
    ws, outside = env
    with Store.open(ws) as store:
        queued = len(jobs.list_jobs(store))
    at = jobs_form(curator_session, "sft")
    box = at.text_area if field == "eval_sets" else at.text_input
    box(key=f"jobs_sft_{field}").set_value(typed(value, outside))
    hw.run(at.button(key="jobs_launch").click())
    assert refused(at), [e.value for e in at.error]
    with Store.open(ws) as store:
        assert len(jobs.list_jobs(store)) == queued


def test_the_jobs_page_queues_a_model_in_the_workspace_by_its_resolved_path(
    env, curator_session, monkeypatch
) -> None:
    from training.worker import NO_AUTO_WORKER_ENV

    monkeypatch.setenv(NO_AUTO_WORKER_ENV, "1")
    ws, _ = env
    (ws.root / "models" / "mine").mkdir(exist_ok=True)
    at = jobs_form(curator_session, "reward")
    at.selectbox(key="jobs_reward_dataset").set_value("prefs")
    at.text_input(key="jobs_reward_base_model").set_value("models/mine")
    hw.run(at.button(key="jobs_launch").click())
    assert not hw.exceptions(at) and not at.error, [e.value for e in at.error]
    with Store.open(ws) as store:
        job = jobs.list_jobs(store)[0]
    assert job.spec["base_model"] == str((ws.root / "models" / "mine").resolve())


@pytest.mark.parametrize("model", ["{outside}", "../outside", "tests"], ids=repr)
def test_the_judge_page_loads_no_model_outside_the_workspace(env, curator_session, model) -> None:
    """A local judge model typed on the Judge page, outside the workspace: refused before
    anything is loaded or a label written."""
    ws, outside = env
    before = hw.content_digest(ws)
    at = on_page(curator_session, "judge.py")
    next(t for t in at.text_input if t.label == "Model").set_value(typed(model, outside))
    hw.run(at.button(key="run_judge_submit").click())
    assert refused(at), [e.value for e in at.error]
    assert hw.content_digest(ws) == before


# ---- the command line --------------------------------------------------------------------------


def curator(ws: Workspace, *args: str):
    return CliRunner().invoke(cli, [*args, "--workspace", str(ws.root)])


def test_cli_paths_are_explicit_and_used_as_given(env, tmp_path: Path) -> None:
    """--out and the file to import are the shell user's choice: outside the workspace is fine."""
    ws, _ = env
    elsewhere = tmp_path / "elsewhere"
    result = curator(ws, "export", "prefs", "--out", str(elsewhere / "prefs.jsonl"), "--shape",
                     "native")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (elsewhere / "prefs.jsonl").is_file()
    result = curator(ws, "mix", "export", "safe-mix", "--out", str(elsewhere / "mix.jsonl"))
    assert result.exit_code == 0, result.output
    assert (elsewhere / "mix.jsonl").is_file()
    result = curator(ws, "agreement", "prefs", "--out", str(elsewhere / "agreement.json"))
    assert result.exit_code == 0, result.output
    assert (elsewhere / "agreement.json").is_file()
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    result = curator(ws, "import", str(pairs), "--dataset", "from-elsewhere")
    assert result.exit_code == 0, result.output


def test_a_mixture_name_cannot_lead_out_of_the_workspace(env, tmp_path: Path) -> None:
    """A mixture version's folder comes from its name: a name with `..` or `/` is refused."""
    ws, _ = env
    for name in ["../../evil", "a/b", "..", "x\x00y"]:
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps({"name": name, "kind": "preference",
                                    "sources": {"s": {"dataset": "prefs", "fraction": 1}}}))  # fmt: skip
        result = curator(ws, "mix", "build", str(spec))
        assert isinstance(result.exception, CuratorError), result.output
    assert not (ws.root.parent / "evil-v1").exists() and not (ws.root / "evil-v1").exists()


def test_a_job_spec_cannot_choose_where_its_run_writes(env) -> None:
    """No trainer setting is a path to write to; a spec that says output_dir is refused when it
    is queued, and a job's folder is always runs/job-ID."""
    ws, _ = env
    for kind in TRAINER_KINDS:
        names = {f.name for f in config_fields(config_class(kind))}
        assert not names & {"output_dir", "out", "run_dir", "save_dir", "logging_dir"}
    with Store.open(ws) as store:
        with pytest.raises(CuratorError, match="output_dir"):
            jobs.enqueue(store, "reward", {"dataset": "prefs", "output_dir": "../../etc"})
        assert all(j.spec.get("output_dir") is None for j in jobs.list_jobs(store))
        job = jobs.list_jobs(store)[0]
        run_dir = JobContext(store=store, workspace=ws, job=job).run_dir
    assert run_dir == ws.root / "runs" / f"job-{job.id}"
    result = curator(ws, "train", "reward", "--dataset", "prefs", "--output-dir", "../../etc")
    assert result.exit_code == 2 and "No such option" in result.output
