"""The app server killed mid-session and started again: nothing an annotator did is lost.

A real `curator ui` is killed (SIGKILL, its whole process group) while an annotator is half-way
through a pair; started again on the same workspace and port, the reloaded page shows the
submitted label in the progress, restores the draft, and lets the annotator go on, still signed
in (the session lives in the store, not the server's memory); the SQLite store passes
``PRAGMA integrity_check``.
"""

from __future__ import annotations

import json
import re
import signal

import pytest
from browser import (
    AppServer,
    add_accounts,
    assert_no_exception,
    assign,
    chromium,
    curator,
    free_port,
    main_text,
    new_page,
    press,
    require_browser,
    screenshot,
    sign_in,
    wait_for_text,
)

from curation.store import Store
from curation.workspace import Workspace
from training.worker import NO_AUTO_WORKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

PAIRS = 4


def labels(root) -> list[tuple]:
    with Store.open(Workspace(root), create=False) as store:
        rows = store.conn.execute(
            "SELECT instance_id, overall, status FROM annotations "
            "WHERE annotator = 'ana' ORDER BY instance_id"
        ).fetchall()
    return [tuple(r) for r in rows]


def current_pair(page) -> int:
    return int(re.search(r"Pair #(\d+)", main_text(page))[1])


def test_a_restarted_server_keeps_the_labels_and_the_draft_and_annotation_goes_on(tmp_path):
    require_browser()
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "prompt": f"Question {i}?", "response_a": f"Answer A{i}",
                        "response_b": f"Answer B{i}"}) + "\n"
            for i in range(PAIRS)
        )
    )  # fmt: skip
    root = tmp_path / "ws"
    curator("import", str(data), "--preset", "pairwise", "--dataset", "pairs", workspace=root)
    add_accounts(root, ana="annotator")
    assign(root, "pairs", "ana")

    port = free_port()
    env = {NO_AUTO_WORKER_ENV: "1"}
    server = AppServer(root, port=port, env=env).start()
    try:
        with chromium() as browser, new_page(browser) as page:
            sign_in(page, server.url, "ana")
            wait_for_text(page, f"0 of {PAIRS} done")
            first = current_pair(page)
            press(page, "2")  # A slightly better
            page.get_by_test_id("stBaseButton-primary").filter(has_text="A slightly").wait_for()
            press(page, "Control+Enter")
            wait_for_text(page, f"Saved your label on #{first}")
            second = current_pair(page)
            press(page, "4")  # B slightly better: a draft, not submitted
            page.get_by_test_id("stBaseButton-primary").filter(has_text="B slightly").wait_for()
            assert labels(root) == [(first, -1, "submitted"), (second, 1, "draft")]

            server.stop(signal.SIGKILL)
            server = AppServer(root, port=port, env=env).start()

            page.reload()  # the session cookie signs ana in again: no sign-in form
            page.get_by_text("Signed in as ana").wait_for()
            wait_for_text(page, f"1 of {PAIRS} done")
            assert current_pair(page) == second
            # the draft came back: its choice is the highlighted one
            restored = page.get_by_test_id("stBaseButton-primary").filter(has_text="B slightly")
            restored.wait_for()
            assert_no_exception(page)
            screenshot(page, "restart-restored")
            press(page, "Control+Enter")
            wait_for_text(page, f"Saved your label on #{second}")
            wait_for_text(page, f"2 of {PAIRS} done")
            assert_no_exception(page)
    finally:
        server.stop()

    assert labels(root) == [(first, -1, "submitted"), (second, 1, "submitted")]
    with Store.open(Workspace(root), create=False) as store:
        assert [tuple(r) for r in store.conn.execute("PRAGMA integrity_check")] == [("ok",)]
        done = store.conn.execute("SELECT count(*) FROM assignments WHERE status = 'done'")
        assert done.fetchone()[0] == 2
