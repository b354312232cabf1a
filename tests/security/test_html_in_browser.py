"""Data text is shown as text in a real browser: HTML and script in imported prompts, responses
and facet values never become elements and never run, on the Explore table, the pair view and
the Annotate page. Markdown still renders (bold), raw HTML inside it shows literally.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from browser import (
    MAIN,
    add_accounts,
    app_server,
    assert_no_exception,
    assign,
    chromium,
    click_table_row,
    curator,
    main_text,
    new_page,
    open_page,
    press,
    require_browser,
    screenshot,
    sign_in,
    table_rows,
    wait_for_text,
)

from training.worker import NO_AUTO_WORKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SCRIPT = "<script>window.__xss=1</script>"
IMG = '<img src=x onerror="window.__xss=2">'
LINK = '<a href="javascript:window.__xss=3">click me</a>'
HOVER = '<div onmouseover="window.__xss=4">hover div</div>'
IFRAME = '<iframe src="javascript:window.__xss=5"></iframe>'
SVG = '<svg onload="window.__xss=6"></svg>'
ROWS = [
    {
        "id": "x1",
        "prompt": f"Explain this: {SCRIPT} please",
        "response_a": f"An image: {IMG} end",
        "response_b": f"**Bold** and <b>raw bold</b> and {LINK}\n\n{HOVER}",
        "domain": "<i>dom</i>",
        "label": 1,
    },
    {
        "id": "x2",
        "prompt": f"Second {IFRAME} prompt",
        "response_a": f"{SVG} svg",
        "response_b": "plain",
        "label": -1,
    },
]
# What would exist in the page had any of the data's HTML been rendered.
INJECTED = (
    "script, iframe, svg[onload], img[src='x'], [onerror], [onload], [onmouseover], "
    "a[href^='javascript:'], i, b"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """`curator import` of the hostile rows; a curator with both pairs in their queue."""
    require_browser()
    folder = tmp_path_factory.mktemp("html")
    data = folder / "hostile.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    ws = folder / "ws"
    curator("import", str(data), "--preset", "pairwise", "--dataset", "hostile", workspace=ws)
    add_accounts(ws, boss="curator")
    assign(ws, "hostile", "boss")
    return ws


@pytest.fixture(scope="module")
def page(root):
    with app_server(root, env={NO_AUTO_WORKER_ENV: "1"}) as app, chromium() as browser:
        with new_page(browser) as signed_in:
            sign_in(signed_in, app.url, "boss")
            yield signed_in


def assert_inert(page, *literals: str) -> None:
    """Nothing from the data ran or became an element, and each literal shows as text."""
    main = page.locator(MAIN)
    for text in ("hover div", "click me"):
        shown = main.get_by_text(text).first
        if shown.count() and shown.is_visible():
            shown.hover()  # an injected handler would fire now
    assert page.evaluate("typeof window.__xss") == "undefined"
    injected = main.locator(INJECTED)
    assert injected.count() == 0, injected.evaluate_all("els => els.map(e => e.outerHTML)")
    text = main_text(page)
    for literal in literals:
        assert literal in text
        assert main.get_by_text(literal).filter(visible=True).count(), literal
    assert_no_exception(page)


def test_explore_shows_the_html_in_the_table_and_the_pair_view_as_text(page):
    open_page(page, "Explore", "instances · page")
    wait_for_text(page, "#1 · x1")
    assert_inert(page, SCRIPT, IMG, "<b>raw bold</b>", LINK, HOVER, "domain: <i>dom</i>")
    bold = page.locator(MAIN).locator("strong", has_text="Bold")
    assert bold.count() == 1  # markdown itself still renders
    cells = [cell for row in table_rows(page) for cell in row]
    assert f"Explain this: {SCRIPT} please" in cells and "<i>dom</i>" in cells
    screenshot(page, "security-explore")

    click_table_row(page, 1)
    wait_for_text(page, "#2 · x2")
    assert_inert(page, IFRAME, SVG)


def test_annotate_shows_the_html_as_text(page):
    open_page(page, "Annotate", "Pair #")
    assert "Pair #1" in main_text(page)
    assert_inert(page, SCRIPT, IMG, "<b>raw bold</b>", LINK, HOVER)
    screenshot(page, "security-annotate")
    press(page, "S")
    wait_for_text(page, "Pair #2")
    assert_inert(page, IFRAME, SVG)
