"""The Annotate page in a real browser at 1440x900: where a submit leaves the view, the keys for
every aspect and confidence, and a justification's draft saved while it is typed.

`curator ui` serves a small demo workspace; each test signs in as its own annotator with its own
queue, so the tests do not depend on each other, and checks what landed in the SQLite store.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    MAIN,
    STEP_TIMEOUT_MS,
    add_accounts,
    app_server,
    assert_no_exception,
    assign,
    chromium,
    curator,
    main_text,
    press,
    require_browser,
    screenshot,
    sign_in,
    wait_for_content,
    wait_for_text,
)

from curation.store import Store
from curation.workspace import Workspace
from training.worker import NO_AUTO_WORKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

VIEWPORT = {"width": 1440, "height": 900}  # where the issue was seen
PEOPLE = ("mouse", "keys", "drafter")  # one annotator per test, each with their own queue
QUEUE = 3


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    require_browser()
    root = tmp_path_factory.mktemp("annotate") / "ws"
    curator("demo", "--no-ui", "--pairs", "20", workspace=root)
    add_accounts(root, **dict.fromkeys(PEOPLE, "annotator"))
    for name in PEOPLE:
        assign(root, "demo-prefs", name, limit=QUEUE)
    return root


@pytest.fixture(scope="module")
def app(demo_root):
    with app_server(demo_root, env={NO_AUTO_WORKER_ENV: "1"}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(app):
    with chromium() as b:
        yield b


@contextlib.contextmanager
def annotator_page(browser: Any, url: str, name: str) -> Iterator[Any]:
    """A fresh session at 1440x900, signed in as ``name`` on the Annotate page."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    try:
        sign_in(page, url, name)
        wait_for_text(page, f"0 of {QUEUE} done")
        yield page
    except BaseException:
        with contextlib.suppress(Exception):
            screenshot(page, f"failed-annotate-{time.strftime('%H%M%S')}")
        raise
    finally:
        context.close()


def query(root: Path, sql: str, *params) -> list[tuple]:
    with Store.open(Workspace(root), create=False) as store:
        return [tuple(row) for row in store.conn.execute(sql, params).fetchall()]


def own_label(root: Path, name: str, instance_id: int) -> tuple | None:
    rows = query(
        root,
        "SELECT status, overall, helpful, harmless, truthful, confidence_level, justification "
        "FROM annotations WHERE annotator_kind = 'human' AND annotator = ? AND instance_id = ?",
        name,
        instance_id,
    )
    return rows[0] if rows else None


def shown_pair(page: Any) -> int:
    return int(re.search(r"Pair #(\d+)", main_text(page))[1])


def choice(page: Any, aspect: str, n: int) -> Any:
    """The n-th button (1 = leftmost) of an aspect's row."""
    return page.locator(f".st-key-annotate_{aspect}_{n} button")


def wait_chosen(page: Any, aspect: str, n: int) -> None:
    page.locator(f".st-key-annotate_{aspect}_{n} [data-testid='stBaseButton-primary']").wait_for()
    wait_for_content(page)


def in_viewport(page: Any, locator: Any) -> bool:
    """Whether the element's top edge and first line are inside the visible window."""
    box = locator.bounding_box()
    return (
        box is not None
        and 0 <= box["y"]
        and box["y"] + min(box["height"], 40) <= (page.viewport_size["height"])
    )


def prompt_of(page: Any) -> Any:
    return page.locator(MAIN).get_by_test_id("stChatMessage").first


def test_after_a_mouse_click_submit_the_next_prompt_and_the_message_are_in_view(
    app, browser, demo_root
):
    """Scrolled down to Submit and clicked with the mouse: the next pair's prompt and the
    "Saved" message are on screen; a refused submit's warning is too."""
    with annotator_page(browser, app.url, "mouse") as page:
        first = shown_pair(page)
        submit = page.get_by_role("button", name="Submit")
        submit.scroll_into_view_if_needed()
        assert not in_viewport(page, prompt_of(page))  # the form is below the prompt's fold
        submit.click()
        warning = page.locator(MAIN).get_by_text("Choose an overall preference first")
        warning.wait_for()
        wait_for_content(page)
        assert in_viewport(page, warning)
        assert own_label(demo_root, "mouse", first) is None

        choice(page, "overall", 4).click()
        wait_chosen(page, "overall", 4)
        submit.scroll_into_view_if_needed()
        submit.click()
        wait_for_text(page, f"Saved your label on #{first}")
        assert_no_exception(page)
        assert shown_pair(page) != first
        saved = page.locator(MAIN).get_by_text(f"Saved your label on #{first}")
        assert in_viewport(page, saved), saved.bounding_box()
        assert in_viewport(page, prompt_of(page)), prompt_of(page).bounding_box()
        screenshot(page, "annotate-after-submit")
    assert own_label(demo_root, "mouse", first)[:2] == ("submitted", 1)


def test_keys_label_every_aspect_and_confidence(app, browser, demo_root):
    """2, then H 1, J 3, T 5 and L 3, then Ctrl+Enter: one label with every aspect and the
    confidence as keyed; letters and digits typed into the justification label nothing."""
    with annotator_page(browser, app.url, "keys") as page:
        pair = shown_pair(page)
        for keys, (aspect, n) in (
            (["2"], ("overall", 2)),
            (["h", "1"], ("helpful", 1)),
            (["j", "3"], ("harmless", 3)),
            (["t", "5"], ("truthful", 5)),
            (["l", "3"], ("confidence", 3)),
        ):
            for key in keys:
                press(page, key)
            wait_chosen(page, aspect, n)
        box = page.get_by_role("textbox", name="Justification")
        choice(page, "overall", 1).scroll_into_view_if_needed()
        screenshot(page, "annotate-keys")
        box.click()
        page.keyboard.type("o5 h2 t1")
        press(page, "Control+Enter")
        wait_for_text(page, f"Saved your label on #{pair}")
        assert_no_exception(page)
    assert own_label(demo_root, "keys", pair) == (
        "submitted", -1, -2, 0, 2, "high", "o5 h2 t1"
    )  # fmt: skip


def test_a_justification_typed_with_the_cursor_in_the_box_survives_a_refresh(
    app, browser, demo_root
):
    """Typed and left with the cursor in the box (no blur, no Enter): the draft is saved within
    a second, and a refresh shows the text again."""
    with annotator_page(browser, app.url, "drafter") as page:
        pair = shown_pair(page)
        box = page.get_by_role("textbox", name="Justification")
        box.click()
        page.keyboard.type("A misreads the question")
        wait_for_draft(demo_root, pair, "A misreads the question")
        # Typing on after the save (and its rerun) loses nothing either.
        page.keyboard.type(" entirely")
        wait_for_draft(demo_root, pair, "A misreads the question entirely")
        assert page.evaluate("document.activeElement.tagName") == "TEXTAREA"

        page.reload()
        if page.get_by_label("User name", exact=True).count():
            sign_in(page, None, "drafter")
        wait_for_text(page, f"Pair #{pair}")
        shown = page.get_by_role("textbox", name="Justification").input_value()
        assert shown == "A misreads the question entirely"


def wait_for_draft(root: Path, pair: int, text: str) -> None:
    deadline = time.monotonic() + 10
    while (label := own_label(root, "drafter", pair)) is None or label[6] != text:
        assert time.monotonic() < deadline, label
        time.sleep(0.1)
    assert label[0] == "draft"
