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
    A role that may not open it gets its own first page instead (with no message: Streamlit's
    "Page not found" shows only for the address a session opens with).
    """
    pages = [st.Page(auth.login_page, title="Sign in", icon=":material/login:", default=True)]
    for spec in state.available_pages():
        pages.append(st.Page(auth.login_page, title=spec.title, url_path=spec.url_path))
    return pages


user = state.current_user()
if user is None:
    # The sign-in page is all a session nobody is signed in to can reach, under any page's URL.
    st.navigation(sign_in_pages(), position="hidden").run()
else:
    current = st.navigation(menu(user))
    auth.account_sidebar(user)
    if user.is_curator:
        st.sidebar.caption(f"Workspace: `{state.workspace().root}`")
    current.run()
