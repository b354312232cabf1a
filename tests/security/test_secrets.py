"""Secrets: a hub token and a judge server's API key are used, never kept.

Each comes from an environment variable (``HF_TOKEN`` or ``--token-env``; ``OPENAI_API_KEY`` or
``--api-key-env``) and goes to its client only. After the real code paths that take them have
run and failed (a closed port, or a server that refuses the credentials and quotes them back),
the secret is in no table of the store, not in the database file, its WAL or shared memory, in
no file of the workspace (job logs included), in no job spec, and not in what the CLI printed.

The echoing server stands in for the paid OpenAI-compatible API and for the Hugging Face Hub,
which cannot be reached from the tests: it answers every request 401 and quotes the credentials
it was sent in its error message, as some real servers do.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hostile_workspace as hw
import pytest
from typer.testing import CliRunner

from app.cli import cli
from curation.errors import CuratorError
from curation.store import Store
from curation.workspace import Workspace
from training import jobs
from training.worker import NO_AUTO_WORKER_ENV, Worker, WorkerConfig

ROOT = Path(__file__).resolve().parents[2]
JUDGE_KEY = "sk-test-JUDGE-KEY-must-not-be-kept-5e1f"
HUB_TOKEN = "hf_test_HUB_TOKEN_must_not_be_kept_9c2d"


class EchoCredentials(BaseHTTPRequestHandler):
    """Refuses every request and quotes the Authorization header it was sent."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        quoted = self.headers.get("Authorization")
        body = json.dumps(
            {"error": {"message": f"Incorrect API key provided: {quoted}", "code": "invalid"}}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Iterator[Workspace]:
    ws = Workspace(tmp_path_factory.mktemp("secrets") / "ws").ensure()
    hw.build(ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CURATOR_WORKSPACE", str(ws.root))
        mp.setenv(NO_AUTO_WORKER_ENV, "1")  # the tests run the worker themselves
        yield ws


def leaks(secret: str, ws: Workspace, *, texts: tuple[str, ...] = (), dirs=()) -> list[str]:
    """Every place the secret shows up: a table's value, the database's files (main, WAL,
    shared memory), any file under the workspace or the other folders, the given texts."""
    found = []
    conn = sqlite3.connect(ws.db_path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str) and secret in value:
                        found.append(f"table {table}: {value[:200]!r}")
    finally:
        conn.close()
    raw = secret.encode()
    for folder in (ws.root, *dirs):
        for path in Path(folder).rglob("*"):
            if path.is_file() and not path.is_symlink() and raw in path.read_bytes():
                found.append(f"file {path}")
    found += [f"output: {text[:300]!r}" for text in texts if secret in text]
    return found


def judge_cli(*args: str):
    return CliRunner().invoke(
        cli, ["judge", "prefs", "--backend", "openai", "--model", "m", "--limit", "2", *args]
    )


@pytest.mark.parametrize(
    ("server", "key_env"),
    [
        ("echo_server", "OPENAI_API_KEY"),
        ("echo_server", "MY_JUDGE_KEY"),
        ("closed_port", "MY_JUDGE_KEY"),
    ],
)
def test_a_judge_server_key_is_in_no_store_file_or_output(
    ws: Workspace, request, monkeypatch: pytest.MonkeyPatch, server: str, key_env: str
) -> None:
    """`curator judge --backend openai` with the key in the environment: the run fails with one
    error (the key masked where the server quoted it) and the key is kept nowhere."""
    url = request.getfixturevalue(server)
    monkeypatch.setenv(key_env, JUDGE_KEY)
    extra = [] if key_env == "OPENAI_API_KEY" else ["--api-key-env", key_env]
    result = judge_cli("--url", f"{url}/v1", *extra)
    message = str(result.exception)
    assert result.exit_code == 1 and "judge server" in message, result.output
    if server == "echo_server":
        assert "Bearer ***" in message  # the server did quote it, and it was masked
    assert not leaks(JUDGE_KEY, ws, texts=(result.output, message))


@pytest.mark.parametrize(
    "url",
    [
        "http://judge:{key}@{host}/v1",
        "http://{key}@{host}/v1",
        "{echo}/v1?api_key={key}",
        "{echo}/v1?x=1&Access-Token={key}",
    ],
    ids=["user-and-password", "user", "key-in-query", "token-in-query"],
)
def test_a_judge_url_holding_a_credential_is_refused_before_anything_is_kept(
    ws: Workspace, echo_server: str, url: str
) -> None:
    """The server URL is recorded with the judge's labels: one holding a credential is refused,
    in the foreground and as a job, and the advice is to use the key's variable instead."""
    host = echo_server.removeprefix("http://")
    typed = url.format(key=JUDGE_KEY, host=host, echo=echo_server)
    before = hw.content_digest(ws)
    for extra in ([], ["--background"]):
        result = judge_cli("--url", typed, *extra)
        message = str(result.exception)
        assert result.exit_code == 1 and "api_key_env" in message, result.output
        assert not leaks(JUDGE_KEY, ws, texts=(result.output, message))
    assert hw.content_digest(ws) == before


def test_a_plain_judge_url_is_kept_as_typed(echo_server: str) -> None:
    from routing.judges import Judge

    judge = Judge(backend="openai", model="m", url=f" {echo_server}/v1?x=1 ")
    assert judge.url == f"{echo_server}/v1?x=1"
    for bad in ["ftp://host/v1", "http:///v1", "http://host:port/v1", "localhost:8000"]:
        with pytest.raises(CuratorError):
            Judge(backend="openai", model="m", url=bad)


def test_a_background_judge_job_keeps_the_key_in_its_environment_only(
    ws: Workspace, echo_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's spec names the variable, not the key; the job process reads the key from the
    environment the worker passes on; its failure, in the store and in its log, is masked."""
    monkeypatch.setenv("OPENAI_API_KEY", JUDGE_KEY)
    result = judge_cli("--url", f"{echo_server}/v1", "--background", "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.output)["job_id"]
    with Store.open(ws) as store:
        assert jobs.get_job(store, job_id).spec["api_key_env"] == "OPENAI_API_KEY"
    assert Worker(ws, WorkerConfig(drain=True, poll_s=0.05)).run() == 1
    with Store.open(ws) as store:
        job = jobs.get_job(store, job_id)
    assert job.status == "failed" and "Bearer ***" in job.error, job.error
    log = Path(job.log_path).read_text()
    assert "Bearer ***" in log
    assert not leaks(JUDGE_KEY, ws, texts=(result.output, job.error, log))


def test_the_judge_page_masks_the_key_in_what_it_shows(
    ws: Workspace, echo_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the Judges page against a server that quotes the key: the page shows the error
    with the key masked, and the key is kept nowhere."""
    monkeypatch.setenv("OPENAI_API_KEY", JUDGE_KEY)
    at = hw.run(hw.new_session(hw.APP / "Home.py", hw.CURATOR))
    at.switch_page("views/judge.py")
    hw.run(at)
    next(s for s in at.selectbox if s.label == "Backend").set_value("openai")
    next(t for t in at.text_input if t.label == "Model").set_value("m")
    url_box = next(t for t in at.text_input if t.label.startswith("Server URL"))
    url_box.set_value(f"{echo_server}/v1")
    hw.run(at.button(key="run_judge_submit").click())
    assert not hw.exceptions(at)
    shown = [e.value for e in at.error]
    assert any("Bearer ***" in e for e in shown), shown
    assert not leaks(JUDGE_KEY, ws, texts=tuple(shown))


def test_a_hub_token_is_in_no_store_file_or_output(
    ws: Workspace, echo_server: str, tmp_path: Path
) -> None:
    """`curator push` with HF_TOKEN, against a hub that refuses it and quotes it back: one error
    line with the token masked; the token is not in the workspace, nor in the hub client's own
    folder (HF_HOME), nor in anything printed. (A real process: the hub client reads its
    endpoint when imported.)"""
    hf_home = tmp_path / "hf-home"
    env = dict(os.environ, HF_TOKEN=HUB_TOKEN, HF_ENDPOINT=echo_server, HF_HOME=str(hf_home))
    env.pop("HF_HUB_OFFLINE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "push", "prefs", "--repo", "org/prefs"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: could not push 'prefs' to org/prefs")
    assert "Bearer ***" in proc.stderr and "Traceback" not in proc.stderr
    assert not leaks(HUB_TOKEN, ws, texts=(proc.stdout, proc.stderr), dirs=(hf_home,))
