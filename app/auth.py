"""Signing in and out of the app: the sign-in page and the account box in the sidebar.

Who the session is lives in :mod:`app.state`; this module is the UI around it. Passwords are
checked by :func:`curation.users.authenticate` (argon2 hashes, lockout after repeated failures);
a failed sign-in shows the same message for a wrong name and a wrong password.

A sign-in is kept in a session cookie, written here by the one script the app puts in its page.
"""

from __future__ import annotations

import re

import streamlit as st

from app import state
from curation import users
from curation.users import AuthError, User

LOCAL_NOTICE = (
    "**Local curator mode.** This workspace has no accounts yet and the app only listens on "
    "this machine, so you are the built-in curator. Add accounts on the Team page: from then "
    "on everyone signs in."
)
NO_ACCOUNTS_ON_NETWORK = (
    "This app can be reached from other machines and the workspace has no accounts yet, so "
    "nobody can sign in. Create the first curator account from a terminal on the server with "
    "`curator users add NAME --role curator`, or start the app on this machine only with "
    "`curator ui` and add accounts on its Team page."
)


# Streamlit can read cookies (st.context.cookies) but not set them, so the browser sets the
# session cookie itself: st.html runs this script in the app's own page (not an iframe).
# SameSite=Strict keeps other sites' pages from sending it; Secure when the app is served over
# https; Path=/ so every page's address (a bookmark, a new tab) carries it. A cookie set by
# script cannot be HttpOnly: the app renders no HTML from data (tests/security), and the token
# expires and is revoked on the server. The script holds only the name and a token that
# app.state generated, both checked against the URL-safe alphabet; never data a user typed.
_COOKIE_SCRIPT = """<script>
(() => {{
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "{name}={token}; Max-Age={max_age}; Path=/; SameSite=Strict" + secure;
}})();
</script>"""
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def send_session_cookie() -> None:
    """Set or delete the browser's session cookie, when a sign-in or sign-out asked for it."""
    change = state.take_cookie_change()
    if change is None:
        return
    if not (_URL_SAFE.fullmatch(change.name) and _URL_SAFE.fullmatch(change.token)):
        raise ValueError("a session cookie holds only URL-safe characters")
    script = _COOKIE_SCRIPT.format(
        name=change.name, token=change.token, max_age=int(change.max_age_s)
    )
    st.html(script, unsafe_allow_javascript=True)


def login_page() -> None:
    """The only page a session that is not signed in gets."""
    st.title("Hybrid Curator")
    store = state.store()
    if not users.has_users(store):
        st.warning(NO_ACCOUNTS_ON_NETWORK, icon=":material/lock:")
        return
    state.show_flash()
    st.caption("Sign in to see your work.")
    with st.form("login", clear_on_submit=True):
        name = st.text_input("User name", key="login_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="login_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="primary", key="login_submit")
    if not submitted:
        return
    try:
        user = users.authenticate(store, name, password)
    except AuthError as exc:
        # The message never says whether the name exists; it does say when an account is locked.
        st.error(f"Cannot sign in: {exc}.", icon=":material/error:")
        return
    state.sign_in(user)
    st.rerun()


def account_sidebar(user: User) -> None:
    """Who is signed in, and the way out (or, for the local curator, why nobody signs in)."""
    with st.sidebar:
        if state.is_local_curator(user):
            st.info(LOCAL_NOTICE, icon=":material/person:")
            return
        # One above the other: side by side, the button's label was cut off at 1280 px.
        st.caption(f"Signed in as **{user.name}** ({user.role})")
        st.button(
            "Sign out", key="auth_sign_out", on_click=state.sign_out, icon=":material/logout:"
        )
