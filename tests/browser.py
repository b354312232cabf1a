"""Real-browser test harness: the app served by `curator ui` in a subprocess, driven by headless
Chromium through Playwright.

Tests that import this call :func:`require_browser` first, so they skip (saying why) where
Debian's Chromium or the ``playwright`` package is missing; Playwright's own browser download
does not work offline, so it always drives ``/usr/bin/chromium``. Screenshots go to
``tests/e2e/_screenshots/`` (ignored by git) unless ``CURATOR_SCREENSHOTS`` names another folder,
e.g. ``docs/screenshots`` to refresh the user guide's pictures.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium floods the closed network with connections.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SCREENSHOTS_ENV = "CURATOR_SCREENSHOTS"
DEFAULT_SCREENSHOTS = TESTS / "e2e" / "_screenshots"
PASSWORD = "a long enough password"
SERVER_START_S = 60.0
STEP_TIMEOUT_MS = 30_000

# Streamlit's own markers: the app root says whether a script run is in progress, an element
# left from the previous run is marked stale until the new run replaces it, and an uncaught
# exception renders as an exception box.
APP_IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
APP_CONNECTED = "[data-testid='stApp'][data-test-connection-state='CONNECTED']"
MAIN = "[data-testid='stMain']"
NAV_LINK = "[data-testid='stSidebarNavLink']"
EXCEPTION = "[data-testid='stException']"


def require_browser() -> None:
    """Skip the calling test (or module) unless a real browser can be driven here."""
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def curator_command() -> list[str]:
    """The `curator` console script of this environment (as a user runs it)."""
    script = Path(sys.executable).with_name("curator")
    if script.is_file():
        return [str(script)]
    found = shutil.which("curator")
    return [found] if found else [sys.executable, "-m", "app.cli"]


def curator(*args: str, workspace: Path, stdin: str | None = None) -> str:
    """Run one `curator` command on a workspace; its output, or a failure with what it said."""
    done = subprocess.run(
        [*curator_command(), *args, "--workspace", str(workspace)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"curator {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def add_accounts(workspace: Path, **roles: str) -> None:
    """Accounts in the workspace (name=role), all with :data:`PASSWORD`."""
    from curation import users
    from curation.store import Store

    with Store.open(workspace, create=False) as store:
        for name, role in roles.items():
            users.add_user(store, name, role, PASSWORD)


def assign(workspace: Path, dataset: str, name: str, limit: int | None = None) -> None:
    """Put a dataset's instances (the first ``limit``) into one account's queue."""
    from curation import queues
    from curation.store import Store

    with Store.open(workspace, create=False) as store:
        queues.assign(store, dataset, [name], limit=limit)


# ---- the app server ----------------------------------------------------------------------------


class AppServer:
    """`curator ui --workspace DIR --port PORT` on 127.0.0.1, as its own process group."""

    def __init__(
        self, workspace: Path, *, port: int | None = None, env: Mapping[str, str | None] = ()
    ):
        self.workspace = Path(workspace)
        self.port = port or free_port()
        self.env = dict(env)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workspace / "logs" / f"ui-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppServer:
        env = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*curator_command(), "ui", "--workspace", str(self.workspace),
                 "--port", str(self.port), "--host", "127.0.0.1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=ROOT, env=env,
            )  # fmt: skip
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the app did not answer on {self.url}:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server's whole process group (SIGKILL after 10 s, or at once if asked)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


def stop_worker(workspace: Path) -> None:
    """Stop the background worker the app started for this workspace, if one runs (it lives in
    its own session, so stopping the server leaves it running)."""
    pidfile = Path(workspace) / "logs" / "worker.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


@contextlib.contextmanager
def app_server(
    workspace: Path, *, port: int | None = None, env: Mapping[str, str | None] = ()
) -> Iterator[AppServer]:
    server = AppServer(workspace, port=port, env=env).start()
    try:
        yield server
    finally:
        server.stop()
        stop_worker(workspace)


# ---- the browser -------------------------------------------------------------------------------


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium, with a fresh profile, for as long as the block runs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def new_page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context (its own cookies, so its own Streamlit session). When the block
    fails, what the page showed is saved as ``failed-<time>.png`` beside the screenshots."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    except BaseException:
        with contextlib.suppress(Exception):
            screenshot(page, f"failed-{time.strftime('%H%M%S')}")
        raise
    finally:
        context.close()


def wait_for_content(page: Any, text: str | None = None, *, timeout_ms: int = 60_000) -> None:
    """Wait until the app is connected, its script run has finished, nothing on screen is left
    over from the previous run, and the main area shows something (``text``, when given).

    Streamlit paints the page before the first run's elements arrive, so a screenshot taken at
    load shows a blank main area.
    """
    page.wait_for_selector(APP_CONNECTED, timeout=timeout_ms)
    if text is not None:
        page.locator(MAIN).get_by_text(text).filter(visible=True).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        """([idle, main]) => {
            const app = document.querySelector(idle);
            const area = document.querySelector(main);
            if (!app || !area) return false;
            if (document.querySelector('[data-stale="true"]')) return false;
            return area.querySelector('h1, [data-testid="stMarkdownContainer"]') !== null;
        }""",
        arg=[APP_IDLE, MAIN],
        timeout=timeout_ms,
        polling=100,
    )
    # A run that a click or key press asked for may start a moment after it; let it settle.
    page.wait_for_timeout(250)
    page.wait_for_selector(APP_IDLE, timeout=timeout_ms)


def assert_no_exception(page: Any) -> None:
    """Fail when the page shows a Streamlit exception box or a traceback."""
    boxes = page.locator(EXCEPTION)
    if boxes.count():
        raise AssertionError(f"the page shows an exception:\n{boxes.first.inner_text()}")
    text = page.locator(MAIN).inner_text()
    assert "Traceback" not in text, f"the page shows a traceback:\n{text[:3000]}"


def screenshot_dir() -> Path:
    folder = os.environ.get(SCREENSHOTS_ENV)
    path = Path(folder) if folder else DEFAULT_SCREENSHOTS
    if not path.is_absolute():
        path = ROOT / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def screenshot(page: Any, name: str) -> Path:
    """Save what the viewport shows as ``NAME.png`` in the screenshot folder."""
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sign_in(page: Any, url: str | None, name: str, password: str = PASSWORD) -> None:
    """Open the app at ``url`` (or stay on the page shown) and sign in through its form."""
    if url is not None:
        page.goto(url)
    form_name = page.get_by_label("User name", exact=True)
    form_name.wait_for()
    close_dialog(page)
    form_name.fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for()
    wait_for_content(page)


def close_dialog(page: Any) -> str | None:
    """Close a modal dialog if one is open (it makes the page behind it inert); its text."""
    dialog = page.get_by_role("dialog")
    if not dialog.count():
        return None
    text = dialog.inner_text()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    return text


def _nav_link(page: Any, title: str) -> Any:
    return page.locator(f"{NAV_LINK}:has(span[label={title!r}])")


def menu_titles(page: Any) -> list[str]:
    """The titles of every page the sidebar menu offers (expanding "View N more" first)."""
    more = page.get_by_test_id("stSidebarNavViewButton")
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    return [
        link.locator("span[label]").get_attribute("label") for link in page.locator(NAV_LINK).all()
    ]


def open_page(page: Any, title: str, text: str | None = None) -> None:
    """Open a page by its title in the sidebar menu, and wait until it has drawn."""
    link = _nav_link(page, title)
    if not link.count():
        menu_titles(page)
    href = link.get_attribute("href")
    link.click()
    page.wait_for_url(lambda url: url.split("?")[0] == href)  # a page may add query params
    page.wait_for_function(
        "sel => document.querySelector(sel)?.getAttribute('aria-current') === 'page'",
        arg=f"{NAV_LINK}[href={href!r}]",
    )
    wait_for_content(page, text)


def expect(target: Any) -> Any:
    """Playwright's ``expect`` (imported on use, so that this module imports without it)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def main_text(page: Any) -> str:
    return page.locator(MAIN).inner_text()


def wait_for_text(page: Any, pattern: str | re.Pattern, *, timeout_ms: int = 60_000) -> None:
    """Wait until the main area shows this text (a substring, or a regular expression)."""
    page.locator(MAIN).get_by_text(pattern).filter(visible=True).first.wait_for(timeout=timeout_ms)
    wait_for_content(page, timeout_ms=timeout_ms)


def press(page: Any, key: str) -> None:
    """Press a key with the focus on the page itself (shortcuts ignore keys typed into text)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)


def choose(page: Any, combobox: Any, *options: str) -> None:
    """Pick options in a select box or multiselect, then close its list and wait for the rerun.

    The list closes whenever a rerun redraws the widget, and one can arrive late (a table that
    must keep a row selected asks for one after it has drawn), so a pick that lost its list is
    tried again.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for option in options:
        item = page.get_by_role("option", name=option, exact=True)
        for attempt in range(5):
            wait_for_content(page)
            combobox.click()
            try:
                item.click(timeout=5_000)
                break
            except PlaywrightTimeout:
                if attempt == 4:
                    raise
                page.keyboard.press("Escape")
    if page.get_by_role("listbox").count():
        page.keyboard.press("Escape")
    wait_for_content(page)


def click_table_row(page: Any, row: int, table: int = 0) -> None:
    """Click the row-selection cell of a row (0 = first) of a ``st.dataframe`` (a canvas grid:
    fixed 35 px rows under a 35 px header)."""
    grid = page.get_by_test_id("stDataFrame").nth(table)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 * (row + 1) + 17)


def table_rows(page: Any, table: int = 0) -> list[list[str]]:
    """The cells of a ``st.dataframe`` as its accessible table holds them (header first; the
    grid fills that table after it has drawn, so wait for a row under the header)."""
    grid = page.get_by_test_id("stDataFrame").nth(table)
    grid.locator("table tr").nth(1).wait_for(state="attached")
    return grid.evaluate(
        """grid => Array.from(grid.querySelectorAll('table tr')).map(
            tr => Array.from(tr.querySelectorAll('th, td')).map(c => c.innerText.trim()))"""
    )
