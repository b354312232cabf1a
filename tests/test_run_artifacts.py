"""Runs whose files are at a storage URL (what a job on a Ray cluster records): evaluation, the
reward-model judge, the Compare page and `curator runs` read them through one local copy in the
workspace's cache. The URLs are real fsspec ones (``memory://`` in this process, ``local://``
across processes) holding a real tiny model; nothing about loading is mocked."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from curation.errors import CuratorError
from curation.records import Instance
from curation.store import Store
from curation.workspace import Workspace
from training.evaluate import evaluate_generative, evaluate_reward_run
from training.reward_judge import label_with_reward_model, register_reward_judge
from training.runs import get_run, record_run, run_model_dir
from training.storage import ARTIFACT_CACHE, Storage, artifact_cache_dir, local_artifact

ROOT = Path(__file__).resolve().parents[1]


def _upload(folder: Path, uri: str) -> str:
    """Copy a model folder to a storage URL, file by file, as a job on a node writes it."""
    storage = Storage.at(uri)
    for path in folder.rglob("*"):
        if path.is_file():
            storage.write_bytes(path.relative_to(folder).as_posix(), path.read_bytes())
    return uri


@pytest.fixture
def model_url(tiny_model):
    """The tiny Llama at a fresh ``memory://`` URL, removed after the test."""
    uri = _upload(tiny_model, f"memory://bucket-{uuid.uuid4().hex}/runs/job-7/model")
    yield uri
    storage = Storage.at(uri)
    if storage.exists(""):
        storage.fs.rm(uri, recursive=True)


def _cached(workspace: Workspace) -> list[Path]:
    return sorted((workspace.root / "cache" / ARTIFACT_CACHE).glob("*"))


def test_a_local_folder_is_returned_as_it_is(workspace, tiny_model):
    """A plain path and a ``file://`` URL name the folder itself: nothing is copied."""
    assert local_artifact(workspace, str(tiny_model)) == tiny_model
    assert local_artifact(workspace, f"file://{tiny_model}") == tiny_model
    assert _cached(workspace) == []


def test_a_folder_at_a_url_is_downloaded_once_into_the_workspace(workspace, model_url):
    """The first read copies the folder into cache/artifacts; later reads use that copy, even
    once the storage no longer has it."""
    folder = local_artifact(workspace, model_url)
    assert folder.parent == workspace.root / "cache" / ARTIFACT_CACHE
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    stamp = folder.stat().st_mtime_ns
    Storage.at(model_url).fs.rm(model_url, recursive=True)
    assert local_artifact(workspace, model_url) == folder
    assert folder.stat().st_mtime_ns == stamp
    assert _cached(workspace) == [folder]  # no half-done download left beside it


def test_a_missing_model_names_the_run_and_its_url(store):
    """A run whose URL holds nothing fails with a curator's error, not a traceback."""
    gone = f"memory://bucket-{uuid.uuid4().hex}/runs/job-9/model"
    run_id = record_run(store, kind="reward", artifact_path=gone)
    with pytest.raises(CuratorError, match=rf"the model of run {run_id} is missing \({gone}\)"):
        evaluate_reward_run(store, run_id, "bench")
    assert _cached(store.workspace) == []
    unsaved = record_run(store, kind="sft")
    with pytest.raises(CuratorError, match=f"the model of run {unsaved} was not saved"):
        run_model_dir(store, get_run(store, unsaved))


def test_no_url_names_a_cache_folder_outside_the_workspace(workspace):
    """The copy's folder is a hash of the URL, so dots and slashes in a URL lead nowhere."""
    cache = (workspace.root / "cache" / ARTIFACT_CACHE).resolve()
    for uri in ("memory://../../../etc", "s3://bucket/../../..", "gs://b/x/%2e%2e/%2e%2e"):
        folder = artifact_cache_dir(workspace, uri)
        assert folder.parent == cache and len(folder.name) == 32
    assert artifact_cache_dir(workspace, "s3://a/b") != artifact_cache_dir(workspace, "s3://a/c")


def test_a_reward_run_at_a_url_is_evaluated_and_judges_under_its_url(store, model_url):
    """A reward model saved at a URL is scored from the local copy; as a judge its model stays
    the URL (its identity wherever the workspace is opened), and so do its labels."""
    bench = store.create_dataset("bench", "eval")
    store.insert_instances(
        bench["id"],
        [
            Instance(uid="1", prompt="A B", response_a="A", response_b="B", subset="s", gold=-1),
            Instance(uid="2", prompt="B A", response_a="A", response_b="B", subset="s", gold=2),
        ],
    )
    run_id = record_run(store, kind="reward", artifact_path=model_url)
    score = evaluate_reward_run(store, run_id, "bench", max_length=32)
    assert score["n"] == 2 and 0 <= score["overall"] <= 1
    assert get_run(store, run_id).evaluation["rewardbench:bench"] == score

    judge = register_reward_judge(store, run_id, name="rm-url")
    assert judge["model"] == model_url
    pairs = store.create_dataset("pairs", "preference")
    store.insert_instances(pairs["id"], [Instance(uid="p", prompt="A", response_a="A",
                                                  response_b="B")])  # fmt: skip
    result = label_with_reward_model(store, "pairs", "rm-url")
    assert (result["judged"], result["model"]) == (1, model_url)
    label = store.conn.execute("SELECT model FROM annotations WHERE annotator = 'rm-url'")
    assert label.fetchone()["model"] == model_url
    assert len(_cached(store.workspace)) == 1  # one copy served all three


def test_a_generative_run_at_a_url_is_evaluated_from_the_copy(store, model_url):
    """An SFT run saved at a URL answers a safety suite, loaded from the workspace's copy."""
    pool = store.create_dataset("pool", "safety")
    store.insert_instances(
        pool["id"],
        [
            Instance(prompt="A B", uid="1", subset="vanilla_harmful"),
            Instance(prompt="B A", uid="2", subset="adversarial_benign"),
        ],
    )
    run_id = record_run(store, kind="sft", artifact_path=model_url)
    results = evaluate_generative(store, run_id, ["safety:pool"], max_new_tokens=2)
    assert (results["safety"]["n_unsafe"], results["safety"]["n_safe"]) == (1, 1)
    assert len(_cached(store.workspace)) == 1


def test_the_compare_page_generates_with_two_runs_saved_at_urls(
    tmp_path, monkeypatch, cheap_password_hashing, tiny_model
):
    """Side-by-side generation on the Compare page loads runs recorded with storage URLs."""
    ws = Workspace(tmp_path / "ws").ensure()
    urls = [_upload(tiny_model, f"memory://bucket-{uuid.uuid4().hex}/job-{i}/model")
            for i in (1, 2)]  # fmt: skip
    with Store.open(ws) as store:
        for i, url in enumerate(urls, 1):
            record_run(store, kind="sft", name=f"sft {i}", artifact_path=url)
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=60).run()
    at.switch_page("views/compare.py").run()
    at.text_area(key="compare_gen_prompts").input("A B")
    at.number_input(key="compare_gen_max_new").set_value(2)
    at.button(key="compare_gen_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    shown = at.session_state["compare_generations"]
    assert shown["labels"] == ("#2 sft 2", "#1 sft 1") and len(shown["outputs"][0]) == 1
    assert sorted(at.session_state["compare_models"]) == _cached(ws)
    for url in urls:
        Storage.at(url).fs.rm(url, recursive=True)


def _curator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT,
        timeout=300,
    )  # fmt: skip


def test_curator_runs_lists_the_url_and_fetches_a_local_copy(workspace, tiny_model, tmp_path):
    """`curator runs list --json` shows where each run's files are and whether that is a URL;
    `curator runs fetch` prints the local folder, downloading a URL's once."""
    shared = tmp_path / "shared" / "job-3"
    remote = _upload(tiny_model, f"local://{shared}/model")  # a URL a second process can read
    with Store.open(workspace) as store:
        local_id = record_run(store, kind="sft", artifact_path=str(tiny_model))
        url_id = record_run(store, kind="sft", artifact_path=remote)
        gone_id = record_run(store, kind="dpo", artifact_path=f"local://{tmp_path}/nothing")
    where = ["--workspace", str(workspace.root)]

    listed = _curator("runs", "list", "--json", *where)
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert (rows[url_id]["artifact_path"], rows[url_id]["artifact_is_url"]) == (remote, True)
    assert rows[local_id]["artifact_is_url"] is False

    fetched = _curator("runs", "fetch", str(url_id), *where)
    assert fetched.returncode == 0, fetched.stderr
    folder = Path(fetched.stdout.strip())
    assert folder.parent == workspace.root / "cache" / ARTIFACT_CACHE
    assert (folder / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()
    assert _curator("runs", "fetch", str(local_id), *where).stdout.strip() == str(tiny_model)

    missing = _curator("runs", "fetch", str(gone_id), *where)
    assert missing.returncode == 1
    assert f"error: the model of run {gone_id} is missing (local://" in missing.stderr
