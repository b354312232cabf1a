"""The app's entry script (`streamlit run app/Home.py`): page setup, sign-in, and the menu.

Every page lives in ``app/views``; :data:`app.state.PAGES` lists them in workflow order with the
roles each serves (not ``app/pages``: Streamlit serves a folder of that name beside the entry
script as pages of its own, reachable by URL before this menu exists), and a session is offered only the pages that exist and its role may open.
A session nobody is signed in to gets the sign-in page and nothing else.
"""

from __future__ import annotations

import streamlit as st

from app import auth, state
from curation.users import User

st.set_page_config(page_title="Hybrid Curator", page_icon=":material/balance:", layout="wide")

_ASKED_FOR = "_curator_asked_for"  # the page address a signed-out session opened


def menu(user: User) -> dict[str, list[st.Page]]:
    """The pages this user's role may open, by menu section; the first one is the default."""
    specs = state.pages_for(user)
    sections: dict[str, list[st.Page]] = {}
    for spec in specs:
        page = st.Page(
            spec.path,
            title=spec.title,
            icon=spec.icon,
            url_path=spec.url_path,
            default=spec is specs[0],
        )
        sections.setdefault(spec.section, []).append(page)
    return sections


def sign_in_pages() -> list[st.Page]:
    """The sign-in page, at the app's root and at every page's own URL.

    A link to a page (``/jobs``) opened before signing in shows the sign-in there instead of a
    "Page not found"; once signed in, the rerun finds that page in the user's menu and opens it.
    A role that may not open it gets its own first page instead, with
    :func:`refused_page_notice` saying why.
    """
    pages = [st.Page(auth.login_page, title="Sign in", icon=":material/login:", default=True)]
    for spec in state.available_pages():
        pages.append(st.Page(auth.login_page, title=spec.title, url_path=spec.url_path))
    return pages


def refused_page_notice(user: User) -> str | None:
    """Why this user is not on the page whose address they opened before signing in, if so.

    Streamlit's own "Page not found" shows only for the address a session opens with, which
    was the sign-in page's: without this, an annotator following a curator's link to ``/jobs``
    would land on Annotate with no word of why. Said once: the address is forgotten here.
    """
    asked = st.session_state.pop(_ASKED_FOR, None)
    spec = next((s for s in state.available_pages() if asked and s.url_path == asked), None)
    if spec is None or user.role in spec.roles:
        return None
    return (
        f"The {spec.title} page you opened is for {state.roles_phrase(spec.roles)}, not for "
        f"{state.roles_phrase([user.role])}: this is your own first page."
    )


user = state.current_user()
if user is None:
    # The sign-in page is all a session nobody is signed in to can reach, under any page's URL.
    sign_in = st.navigation(sign_in_pages(), position="hidden")
    st.session_state[_ASKED_FOR] = sign_in.url_path
    sign_in.run()
    auth.send_session_cookie()  # below the form: deleting a signed-out session's cookie
else:
    # every page in view: a collapsed menu hid Jobs, Compare and Export behind "View more"
    current = st.navigation(menu(user), expanded=True)
    auth.account_sidebar(user)
    with st.sidebar:
        auth.send_session_cookie()
    if user.is_curator:
        st.sidebar.caption(f"Workspace: `{state.workspace().root}`")
    if notice := refused_page_notice(user):
        st.info(notice, icon=":material/block:")
    current.run()
