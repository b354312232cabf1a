"""The `curator` command line, run as a real subprocess: the contract scripts rely on."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CURATOR = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[1]


def curator(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*CURATOR, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, **kwargs
    )
    if check and result.returncode != 0:
        raise AssertionError(f"curator {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _pairs_file(path: Path, n: int = 5) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "prompt": f"q{i}",
                        "response_a": "a",
                        "response_b": "b",
                        "label": "A>B" if i % 2 else "B>>A",
                    }
                )
                + "\n"
            )
    return path


@pytest.mark.parametrize(
    "command",
    [[], ["stats"], ["datasets"], ["presets"], ["import"], ["export"], ["push"], ["demo"], ["ui"]],
)
def test_every_command_has_help(command):
    result = curator(*command, "--help")
    assert "Usage" in result.stdout


def _commands(group, path=()):
    for name, command in group.commands.items():
        yield (*path, name), command
        if hasattr(command, "commands"):  # a group (typer ships its own click)
            yield from _commands(command, (*path, name))


def test_every_command_and_subcommand_says_what_it_does_and_the_readme_lists_it():
    """Every registered command (train reward, jobs cancel, mix build, ...) has help text, and
    each top-level command appears in the README, so a new command cannot ship undocumented."""
    import typer.main

    from app.cli import cli

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    commands = list(_commands(typer.main.get_command(cli)))
    assert {("train", "reward"), ("jobs", "cancel"), ("worker",)} <= {p for p, _ in commands}
    for path, command in commands:
        assert (command.help or "").strip(), f"curator {' '.join(path)} has no help"
    undocumented = {p[0] for p, _ in commands if f"curator {p[0]}" not in readme}
    assert not undocumented, f"not in the README: {sorted(undocumented)}"


def test_import_then_stats_json_reports_the_contract_counts(tmp_path):
    ws = tmp_path / "ws"
    curator(
        "import",
        str(_pairs_file(tmp_path / "pairs.jsonl")),
        "--workspace",
        str(ws),
        "--dataset",
        "mine",
    )
    stats = json.loads(curator("stats", "--workspace", str(ws), "--json").stdout)
    assert stats["datasets"] == 1
    assert stats["instances"] == 5
    assert stats["annotations"] == {"human": 5, "lm": 0}


def test_failed_import_exits_non_zero_lists_problems_and_writes_nothing(tmp_path):
    ws = tmp_path / "ws"
    curator("import", str(_pairs_file(tmp_path / "good.jsonl")), "--workspace", str(ws))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "x", "response_a": "a", "response_b": "b"}\n{"prompt": 1, "response_a": "a", "response_b": "b"}\nnot json\n'
    )
    result = curator(
        "import", str(bad), "--workspace", str(ws), "--preset", "pairwise", check=False
    )
    assert result.returncode != 0
    assert "bad.jsonl:2 [prompt]" in result.stderr
    assert "bad.jsonl:3" in result.stderr
    assert "Traceback" not in result.stderr
    stats = json.loads(curator("stats", "--workspace", str(ws), "--json").stdout)
    assert stats["instances"] == 5 and stats["datasets"] == 1


def test_skip_bad_imports_the_good_rows_and_reports_the_rest(tmp_path):
    bad = tmp_path / "mixed.jsonl"
    bad.write_text(
        '{"prompt": "x", "response_a": "a", "response_b": "b"}\n{"prompt": 1, "response_a": "a", "response_b": "b"}\n'
    )
    result = curator(
        "import",
        str(bad),
        "--workspace",
        str(tmp_path / "ws"),
        "--preset",
        "pairwise",
        "--skip-bad",
        "--json",
    )
    report = json.loads(result.stdout)
    assert report["instances"] == 1 and report["skipped_count"] == 1
    assert report["skipped"] == [
        {"line": 2, "field": "prompt", "message": "expected text, got int"}
    ]


def test_column_mapping_imports_an_unknown_schema(tmp_path):
    src = tmp_path / "odd.csv"
    src.write_text("question,first,second,winner\nWhat is 2+2?,4,5,A\n")
    result = curator(
        "import",
        str(src),
        "--workspace",
        str(tmp_path / "ws"),
        "--preset",
        "pairwise",
        "--map",
        "prompt=question",
        "--map",
        "response_a=first",
        "--map",
        "response_b=second",
        "--map",
        "label=winner",
        "--json",
    )
    assert json.loads(result.stdout)["labels"] == 1


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = curator("stats", "--workspace", str(tmp_path / "missing"), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no workspace")
    assert "Traceback" not in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_app_on_the_requested_port(tmp_path):
    """`curator ui` starts a real Streamlit server that answers its health check."""
    port = _free_port()
    proc = subprocess.Popen(
        [*CURATOR, "ui", "--workspace", str(tmp_path / "ws"), "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not come up within 90 s")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(20)


def test_demo_builds_a_workspace_stats_can_read_and_export_can_write(tmp_path):
    """`curator demo --no-ui` then `stats --json` and `export`: the contract the README promises."""
    ws = tmp_path / "ws"
    curator("demo", "--workspace", str(ws), "--no-ui", "--pairs", "300")
    stats = json.loads(curator("stats", "--workspace", str(ws), "--json").stdout)
    assert stats["datasets"] == 4
    assert stats["annotations"] == {"human": 900, "lm": 300}
    again = curator("demo", "--workspace", str(ws), "--no-ui", "--pairs", "300")
    assert "already built" in again.stdout
    out = tmp_path / "prefs.jsonl"
    curator("export", "demo-prefs", "--workspace", str(ws), "--format", "jsonl", "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])
    for fmt, target in (("parquet", tmp_path / "sft.parquet"), ("hf", tmp_path / "sft_hf")):
        curator("export", "demo-sft", "--workspace", str(ws), "--format", fmt, "--out", str(target))
        assert target.exists()
