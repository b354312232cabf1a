"""Sign-ins that survive a reload, a new tab and a bookmark, in a real browser.

`curator ui` on a workspace with a curator and an annotator, driven by headless Chromium: the
session cookie the app sets restores the sign-in on a reload and in a new tab opened on a page's
address; signing out, or a password reset from the command line, ends it everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import (
    PASSWORD,
    STEP_TIMEOUT_MS,
    VIEWPORT,
    add_accounts,
    app_server,
    assert_no_exception,
    chromium,
    curator,
    expect,
    require_browser,
    screenshot,
    sign_in,
    wait_for_content,
)

from curation.store import Store
from curation.workspace import Workspace
from training.worker import NO_AUTO_WORKER_ENV

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SIGN_IN_CAPTION = "Sign in to see your work."  # the sign-in page's own words (app.auth)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sessions") / "ws"
    Store.open(Workspace(root)).close()
    add_accounts(root, boss="curator", ana="annotator")
    return root


@pytest.fixture(scope="module")
def app(root: Path):
    require_browser()
    with app_server(root, env={NO_AUTO_WORKER_ENV: "1"}) as server:
        yield server


@pytest.fixture(scope="module")
def browser(app):
    with chromium() as browser:
        yield browser


@contextlib.contextmanager
def browser_profile(browser: Any) -> Iterator[Any]:
    """One browser profile (a cookie jar shared by its tabs); open tabs with ``new_page()``."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def session_cookies(context: Any) -> list[dict]:
    return [c for c in context.cookies() if c["name"].startswith("curator_session_")]


def shows_signed_in(page: Any, name: str) -> None:
    wait_for_content(page)
    expect(page.get_by_text(f"Signed in as {name}")).to_be_visible()
    assert page.get_by_text(SIGN_IN_CAPTION).count() == 0
    assert_no_exception(page)


def shows_sign_in_form(page: Any) -> None:
    page.get_by_text(SIGN_IN_CAPTION).wait_for()
    page.get_by_label("User name", exact=True).wait_for()
    wait_for_content(page)
    assert page.get_by_text("Signed in as").count() == 0
    assert_no_exception(page)


def stored_token_hashes(root: Path) -> set[str]:
    with Store.open(Workspace(root), create=False) as store:
        rows = store.conn.execute("SELECT token_hash FROM sessions").fetchall()
    return {r[0] for r in rows}


def test_a_sign_in_survives_a_reload_and_a_bookmark_in_a_new_tab_until_sign_out(app, browser, root):
    """Reload: still signed in. A new tab on /team (a curator's page, as a bookmark): signed in
    there too. Sign out: the cookie is gone, and a reload in either tab asks to sign in."""
    with browser_profile(browser) as profile:
        page = profile.new_page()
        sign_in(page, app.url, "boss")
        screenshot(page, "session-signed-in")

        (cookie,) = session_cookies(profile)
        assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert PASSWORD not in cookie["value"] and "argon2" not in cookie["value"]
        assert hashlib.sha256(cookie["value"].encode()).hexdigest() in stored_token_hashes(root)

        page.reload()
        shows_signed_in(page, "boss")

        tab = profile.new_page()
        tab.goto(f"{app.url}/team")
        shows_signed_in(tab, "boss")
        expect(tab.get_by_role("heading", name="Team", exact=True)).to_be_visible()
        screenshot(tab, "session-restored-in-new-tab")

        page.get_by_role("button", name="Sign out").click()
        shows_sign_in_form(page)
        page.wait_for_function("() => !document.cookie.includes('curator_session_')")
        assert session_cookies(profile) == []
        page.reload()
        shows_sign_in_form(page)
        tab.reload()
        shows_sign_in_form(tab)


def test_a_password_reset_from_the_command_line_signs_the_account_out(app, browser, root):
    """An annotator signed in; a curator resets the password with `curator users reset-password`:
    the annotator's open tab and a reload both end at the sign-in form, with a word of why."""
    with browser_profile(browser) as profile:
        page = profile.new_page()
        sign_in(page, app.url, "ana")
        page.reload()
        shows_signed_in(page, "ana")

        curator("users", "reset-password", "ana", "--password-stdin", workspace=root,
                stdin="a brand new password\n")  # fmt: skip

        page.reload()
        shows_sign_in_form(page)
        page.wait_for_function("() => !document.cookie.includes('curator_session_')")
        assert session_cookies(profile) == []
        sign_in(page, None, "ana", "a brand new password")
        shows_signed_in(page, "ana")


def test_a_forged_session_cookie_gets_the_sign_in_form_and_is_deleted(app, browser, root):
    """A cookie with the app's name and a made-up token signs nobody in; the app deletes it."""
    with browser_profile(browser) as profile:
        page = profile.new_page()
        page.goto(app.url)
        shows_sign_in_form(page)
        sign_in(page, None, "boss")
        (cookie,) = session_cookies(profile)
        forged = cookie["value"][:-1] + ("A" if cookie["value"][-1] != "A" else "B")
        profile.clear_cookies()
        profile.add_cookies([{"name": cookie["name"], "value": forged, "url": app.url}])

        tab = profile.new_page()
        tab.goto(f"{app.url}/team")
        shows_sign_in_form(tab)
        tab.wait_for_function("() => !document.cookie.includes('curator_session_')")
        screenshot(tab, "session-forged-cookie")
