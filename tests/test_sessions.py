"""Sign-in sessions: the token a browser keeps so that a reload or a new tab stays signed in.

The token functions run on a real store with time passed in as ``now``; the app's side (the
cookie it asks the browser to set, a session ended elsewhere, a restore from a cookie's token)
runs through AppTest, which cannot hold cookies, so the token is handed to the restore function.
The real browser's cookie is checked in ``tests/e2e/test_browser_sessions.py``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from app import state
from app.cli import cli
from curation import users
from curation.store import Store
from curation.workspace import Workspace

HOME = Path(__file__).resolve().parents[1] / "app" / "Home.py"
PASSWORD = "correct horse battery"
T0 = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def ana(store, cheap_password_hashing) -> users.User:
    users.add_user(store, "boss", "curator", PASSWORD)
    return users.add_user(store, "ana", "annotator", PASSWORD)


def altered(token: str, at: int) -> str:
    """The token with one character changed (still URL-safe and of the same length)."""
    swap = "A" if token[at] != "A" else "B"
    return token[:at] + swap + token[at + 1 :]


# ---- the token ---------------------------------------------------------------------------------


def test_a_fresh_token_signs_its_account_in(store, ana):
    """The token a sign-in gets names the account until it ends."""
    token = users.start_session(store, ana, now=T0)
    assert users.session_user(store, token, now=T0 + 1) == ana


def test_a_made_up_token_signs_nobody_in(store, ana):
    """Random tokens of the right shape, and values of any other shape, are refused."""
    users.start_session(store, ana, now=T0)
    for forged in [secrets.token_urlsafe(32) for _ in range(20)]:
        assert users.session_user(store, forged, now=T0) is None
    for junk in ["", "x", "a" * 43 + "=", "a" * 44, "../" * 15, "' OR 1=1 --", None, 42, b"a" * 43]:
        assert users.session_user(store, junk, now=T0) is None


def test_a_token_with_one_character_changed_is_refused(store, ana):
    """Changing any single character of a valid token gives a token that signs nobody in."""
    token = users.start_session(store, ana, now=T0)
    for at in range(len(token)):
        assert users.session_user(store, altered(token, at), now=T0) is None
    assert users.session_user(store, token, now=T0) == ana


def test_a_token_from_another_workspace_is_refused(tmp_path, store, ana, cheap_password_hashing):
    """A token issued by another workspace's store, even for an account of the same name and id,
    is unknown here (the analogue of a signature made with another key)."""
    with Store.open(Workspace(tmp_path / "other")) as other:
        users.add_user(other, "boss", "curator", PASSWORD)
        other_ana = users.add_user(other, "ana", "annotator", PASSWORD)
        assert other_ana.id == ana.id
        token = users.start_session(other, other_ana, now=T0)
        assert users.session_user(other, token, now=T0) == other_ana
    assert users.session_user(store, token, now=T0) is None


def test_the_store_keeps_only_the_tokens_hash(store, ana, workspace):
    """Neither the table nor the database file holds the token; its SHA-256 stands in for it."""
    token = users.start_session(store, ana, now=T0)
    rows = [tuple(r) for r in store.conn.execute("SELECT * FROM sessions")]
    assert token not in repr(rows)
    assert (hashlib.sha256(token.encode()).hexdigest(),) == store.conn.execute(
        "SELECT token_hash FROM sessions"
    ).fetchone()[:1]
    store.conn.execute("PRAGMA wal_checkpoint(FULL)")
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_a_session_ends_at_its_expiry(store, ana):
    """Twelve hours by default, counted from the sign-in: a second before, it still signs in;
    at the end and after, it does not."""
    token = users.start_session(store, ana, now=T0)
    lifetime = users.SESSION_LIFETIME_S
    assert lifetime == 12 * HOUR
    assert users.session_user(store, token, now=T0 + lifetime - 1) == ana
    assert users.session_user(store, token, now=T0 + lifetime) is None
    assert users.session_user(store, token, now=T0 + 10 * lifetime) is None


def test_a_shorter_lifetime_is_honoured(store, ana):
    token = users.start_session(store, ana, now=T0, lifetime_s=60)
    assert users.session_user(store, token, now=T0 + 59) == ana
    assert users.session_user(store, token, now=T0 + 60) is None


def test_signing_out_revokes_that_session_only(store, ana):
    """end_session ends one browser's session; another sign-in of the same account goes on."""
    laptop = users.start_session(store, ana, now=T0)
    phone = users.start_session(store, ana, now=T0)
    users.end_session(store, laptop, now=T0 + 1)
    assert users.session_user(store, laptop, now=T0 + 2) is None
    assert users.session_user(store, phone, now=T0 + 2) == ana
    users.end_session(store, laptop, now=T0 + 3)  # twice is harmless
    users.end_session(store, "not a token", now=T0 + 3)


def test_a_password_reset_revokes_every_session_of_that_account_only(store, ana):
    """A reset password signs the account out everywhere; other accounts stay signed in."""
    boss = users.get_user(store, "boss")
    tokens = [users.start_session(store, ana, now=T0) for _ in range(3)]
    boss_token = users.start_session(store, boss, now=T0)
    users.reset_password(store, "ana", "a brand new password")
    assert all(users.session_user(store, t, now=T0 + 1) is None for t in tokens)
    assert users.session_user(store, boss_token, now=T0 + 1) == boss
    fresh = users.start_session(store, ana, now=T0 + 2)
    assert users.session_user(store, fresh, now=T0 + 3) == ana


def test_the_cli_password_reset_revokes_the_accounts_sessions(store, ana, workspace):
    """`curator users reset-password` goes through the same path."""
    token = users.start_session(store, ana, now=T0)
    result = CliRunner().invoke(
        cli,
        ["users", "reset-password", "ana", "--password-stdin", "-w", str(workspace.root)],
        input="a brand new password\n",
    )
    assert result.exit_code == 0, result.output
    assert users.session_user(store, token, now=T0 + 1) is None


def test_a_role_change_revokes_the_accounts_sessions_and_setting_the_same_role_does_not(store, ana):
    """A promoted or demoted account signs in again; 'changing' to the role it has is no change."""
    token = users.start_session(store, ana, now=T0)
    users.set_role(store, "ana", "annotator")
    assert users.session_user(store, token, now=T0 + 1) == ana
    users.set_role(store, "ana", "curator")
    assert users.session_user(store, token, now=T0 + 1) is None


def test_a_deleted_account_signs_nobody_in_and_its_sessions_go_with_it(store, ana):
    token = users.start_session(store, ana, now=T0)
    with store.write():
        store.conn.execute("DELETE FROM users WHERE id = ?", (ana.id,))
    assert users.session_user(store, token, now=T0 + 1) is None
    assert store.conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0


def test_a_disabled_or_locked_account_is_not_restored(store, ana):
    """A lockout (repeated failed sign-ins) refuses the session while it lasts; disabling the
    account refuses it for good."""
    token = users.start_session(store, ana, now=T0)
    for _ in range(users.LOCK_AFTER_FAILURES):
        with pytest.raises(users.AuthError):
            users.authenticate(store, "ana", "wrong password", now=T0 + 10)
    assert users.session_user(store, token, now=T0 + 11) is None
    assert users.session_user(store, token, now=T0 + 10 + users.LOCK_FIRST_S + 1) == ana
    with store.write():
        store.conn.execute("UPDATE users SET disabled = 1 WHERE id = ?", (ana.id,))
    assert users.session_user(store, token, now=T0 + HOUR) is None


def test_starting_a_session_drops_the_ones_that_have_ended(store, ana):
    """Expired rows do not pile up: the next sign-in removes them, and only them."""
    old = users.start_session(store, ana, now=T0, lifetime_s=60)
    users.start_session(store, ana, now=T0 + 120)
    hashes = {r[0] for r in store.conn.execute("SELECT token_hash FROM sessions")}
    assert len(hashes) == 1 and hashlib.sha256(old.encode()).hexdigest() not in hashes


# ---- the app -----------------------------------------------------------------------------------


@pytest.fixture
def app_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cheap_password_hashing) -> Workspace:
    ws = Workspace(tmp_path / "ws").ensure()
    monkeypatch.setenv("CURATOR_WORKSPACE", str(ws.root))
    with Store.open(ws) as store:
        users.add_user(store, "boss", "curator", PASSWORD)
        users.add_user(store, "ana", "annotator", PASSWORD)
    return ws


def signed_in(name: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    at.button(key="login_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def cookie_scripts(at: AppTest) -> list[str]:
    return [h.value for h in at.get("html") if "document.cookie" in h.value]


def test_signing_in_starts_a_session_and_asks_the_browser_to_keep_it(app_ws):
    """The sign-in's token is valid in the store, and the page carries one script that sets it
    as a SameSite=Strict cookie for 12 h, holding nothing but the cookie's name and the token."""
    at = signed_in("ana")
    token = at.session_state[state._TOKEN_KEY]
    with Store.open(app_ws) as store:
        assert users.session_user(store, token).name == "ana"
    (script,) = cookie_scripts(at)
    name, value, max_age = re.search(
        r'document\.cookie = "([\w-]+)=([\w-]*); Max-Age=(\d+); Path=/; SameSite=Strict"', script
    ).groups()
    assert name.startswith("curator_session_") and value == token
    assert int(max_age) == int(users.SESSION_LIFETIME_S)
    assert PASSWORD not in script and "argon2" not in script
    at.run()
    assert cookie_scripts(at) == []  # sent once


def test_signing_out_revokes_the_session_and_deletes_the_cookie(app_ws):
    at = signed_in("boss")
    token = at.session_state[state._TOKEN_KEY]
    at.sidebar.button(key="auth_sign_out").click().run()
    assert state._TOKEN_KEY not in at.session_state
    with Store.open(app_ws) as store:
        assert users.session_user(store, token) is None
    (script,) = cookie_scripts(at)
    assert "curator_session_" in script and "=; Max-Age=0;" in script
    assert at.text_input(key="login_password")


def test_an_open_session_ends_when_its_password_is_reset_elsewhere(app_ws):
    """The session is checked on every run: after a curator resets the password, the annotator's
    next click lands on the sign-in form, saying why, and the cookie is deleted."""
    at = signed_in("ana")
    assert [t.value for t in at.title] == ["Annotate"]
    with Store.open(app_ws) as store:
        users.reset_password(store, "ana", "a brand new password")
    at.run()
    assert not at.exception
    assert at.text_input(key="login_password")
    assert state.SESSION_ENDED in [i.value for i in at.info]
    assert any("Max-Age=0" in s for s in cookie_scripts(at))


def _restore_then_show_who(token: str) -> None:
    import streamlit as st

    from app import state

    restored = state.restore_from_cookie(state.store(), token)
    user = state.current_user()
    st.write(
        f"restored={restored.name if restored else None} current={user.name if user else None}"
    )


@pytest.mark.parametrize(
    ("which", "expected"),
    [("valid", "restored=ana current=ana"), ("altered", "restored=None current=None"),
     ("revoked", "restored=None current=None")],
)  # fmt: skip
def test_a_new_page_load_is_restored_from_a_valid_token_only(app_ws, which, expected):
    """What a reload does with the cookie's token: a valid one signs the new session in (and
    current_user keeps it there); an altered or revoked one signs nobody in."""
    with Store.open(app_ws) as store:
        ana = users.get_user(store, "ana")
        token = users.start_session(store, ana)
        if which == "altered":
            token = altered(token, 5)
        if which == "revoked":
            users.end_session(store, token)
    at = AppTest.from_function(_restore_then_show_who, args=(token,), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.markdown] == [expected]


def test_a_page_load_without_a_cookie_sends_no_cookie_script(app_ws):
    """Nobody signed in and no cookie sent: the sign-in form, and no script on the page."""
    at = AppTest.from_file(str(HOME), default_timeout=30).run()
    assert not at.exception
    assert at.text_input(key="login_password")
    assert not at.get("html")
