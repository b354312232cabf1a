"""What a Streamlit session holds: its workspace, its store, its user, and the app's page list.

One :class:`~curation.store.Store` per session, kept in ``st.session_state`` and reopened when
the workspace changes (``CURATOR_WORKSPACE``). Derived lists the pages reuse across reruns are
memoised per session and keyed by the store's data stamp, so a write anywhere invalidates them.

Who the session is: the account signed in through :mod:`app.auth`, or, only while the app
listens on this machine alone and the workspace has no accounts yet, a built-in local curator.
A sign-in is also a session token in a browser cookie (:func:`curation.users.start_session`), so
a reload, a new tab or a bookmark restores it until it expires or is revoked.
Each page lists the roles it serves; the menu is built from that and every page script checks
it again (:func:`require_page_role`), so a page opened by its URL refuses the wrong role too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from curation import users
from curation.errors import CuratorError
from curation.explore import data_stamp
from curation.store import Store
from curation.users import User
from curation.workspace import Workspace

APP_DIR = Path(__file__).resolve().parent
T = TypeVar("T")

_STORE_KEY = "_curator_store"
_MEMO_KEY = "_curator_memo"
_MEMO_SIZE = 32
_FLASH_KEY = "_curator_flash"
_USER_KEY = "_curator_user"  # the signed-in account's name (session state is server-side)
_TOKEN_KEY = "_curator_session_token"  # the sign-in's session token, checked on every run
_COOKIE_KEY = "_curator_cookie_change"  # a cookie write the next run sends the browser
_REFUSED_KEY = "_curator_refused_cookie"  # a cookie token already found invalid
# Session keys that belong to one person's work; dropped when they sign out.
_PERSONAL_PREFIXES = ("annotate_", "ann_", "flag_")

CURATOR, ANNOTATOR, REVIEWER = users.ROLES
EVERYONE = (CURATOR, ANNOTATOR, REVIEWER)
# Addresses that only this machine can reach. An empty server.address makes Streamlit listen on
# every interface, so it does not count as local.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Who the session is when nobody can sign in yet: a curator that exists in no table (id 0).
LOCAL_CURATOR = User(id=0, name="local", role=CURATOR)


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its script under ``app/views``, title, icon, menu section, and the
    roles that may open it (curators only unless said otherwise)."""

    script: str
    title: str
    icon: str
    section: str
    summary: str = ""
    roles: tuple[str, ...] = (CURATOR,)

    @property
    def path(self) -> Path:
        return APP_DIR / "views" / self.script

    @property
    def url_path(self) -> str:
        """The page's address under the app (``/jobs``), stated rather than left to Streamlit's
        inference, so the sign-in page can answer at it too."""
        return Path(self.script).stem

    def exists(self) -> bool:
        return self.path.is_file()


# The whole app in workflow order. A page whose script is not there yet is left out of the
# menu and of the Home page's guidance, so later capabilities only add a script here.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("home.py", "Home", ":material/home:", "Workspace"),
    PageSpec(
        "import_data.py",
        "Import",
        ":material/upload_file:",
        "Workspace",
        "Bring in preference, SFT or safety data from a file or a hub id.",
    ),
    PageSpec(
        "team.py",
        "Team",
        ":material/group:",
        "Workspace",
        "Accounts, annotation assignments, progress, and the annotation guidelines.",
    ),
    PageSpec(
        "explore.py",
        "Explore",
        ":material/search:",
        "Data",
        "Filter, search and read pairs with every human and LM label.",
    ),
    PageSpec(
        "annotate.py",
        "Annotate",
        ":material/edit_note:",
        "Label",
        "Label pairs yourself on the MultiPref scale.",
        roles=EVERYONE,
    ),
    PageSpec(
        "review.py",
        "Review",
        ":material/fact_check:",
        "Label",
        "Accept, edit or reject the labels people submitted.",
        roles=(CURATOR, REVIEWER),
    ),
    PageSpec(
        "flags.py",
        "Flags",
        ":material/flag:",
        "Label",
        "Review instances reported as flawed; resolve them or exclude them from mixtures.",
    ),
    PageSpec(
        "judge.py",
        "Judge",
        ":material/gavel:",
        "Label",
        "Get LM labels with calibrated confidence.",
    ),
    PageSpec(
        "agreement.py",
        "Agreement",
        ":material/handshake:",
        "Label",
        "How far annotators agree with each other, and LM judges with the human majority.",
    ),
    PageSpec(
        "route.py",
        "Route",
        ":material/alt_route:",
        "Label",
        "Decide which instances go to humans and which to the LM.",
    ),
    PageSpec(
        "mix.py", "Mix", ":material/blender:", "Build", "Build preference, SFT and safety mixtures."
    ),
    PageSpec(
        "jobs.py",
        "Jobs",
        ":material/model_training:",
        "Build",
        "Launch reward-model, SFT and DPO jobs; follow, cancel and retry them.",
    ),
    PageSpec(
        "compare.py",
        "Compare",
        ":material/compare:",
        "Build",
        "Compare training runs: metrics, loss curves, categories, generations.",
    ),
    PageSpec(
        "export.py",
        "Export",
        ":material/download:",
        "Build",
        "Write a dataset out as JSONL, Parquet or a Hugging Face dataset.",
    ),
)


def available_pages() -> list[PageSpec]:
    return [page for page in PAGES if page.exists()]


def pages_for(user: User) -> list[PageSpec]:
    """The pages this user's role may open, in menu order."""
    return [page for page in available_pages() if user.role in page.roles]


def page(script: str) -> PageSpec | None:
    """The page with this script, if it exists yet (for links between pages)."""
    return next((p for p in PAGES if p.script == script and p.exists()), None)


def workspace() -> Workspace:
    """The session's workspace: ``CURATOR_WORKSPACE`` (or ``./workspace``)."""
    return Workspace.resolve()


def store() -> Store:
    """The session's store, opened on first use; stops the page with a message if it cannot."""
    ws = workspace()
    current = st.session_state.get(_STORE_KEY)
    if current is not None and current.workspace == ws:
        return current
    if current is not None:
        current.close()
    try:
        opened = Store.open(ws)
    except CuratorError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state[_STORE_KEY] = opened
    st.session_state.pop(_MEMO_KEY, None)
    return opened


def memo(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()`` once per session for ``key`` and the store's current data stamp."""
    full_key = (key, data_stamp(store()))
    cache: dict[Any, Any] = st.session_state.setdefault(_MEMO_KEY, {})
    if full_key not in cache:
        if len(cache) >= _MEMO_SIZE:
            cache.pop(next(iter(cache)))
        cache[full_key] = compute()
    return cache[full_key]


def forget() -> None:
    """Drop memoised views (after this session wrote to the store)."""
    st.session_state.pop(_MEMO_KEY, None)


def flash(kind: str, message: str) -> None:
    """A message for the next run to show (an action's outcome, across ``st.rerun``).

    ``kind`` is the Streamlit call that shows it: success, info, warning or error.
    """
    st.session_state[_FLASH_KEY] = (kind, message)


def show_flash() -> None:
    """Show, once, the message an action left."""
    notice = st.session_state.pop(_FLASH_KEY, None)
    if notice:
        kind, message = notice
        getattr(st, kind)(message)


# ---- who is using the app ----------------------------------------------------------------


def listens_locally() -> bool:
    """Whether the server is reachable from this machine only (``server.address``)."""
    address = st.get_option("server.address")
    return str(address or "").strip().lower() in LOCAL_ADDRESSES


SESSION_ENDED = (
    "Your sign-in has ended (it expired, you signed out in another tab, or your password or role "
    "was changed). Sign in again."
)


@dataclass(frozen=True)
class CookieChange:
    """A write of the session cookie for the browser: ``token`` for ``max_age_s`` seconds, or
    an empty token with no lifetime to delete it."""

    name: str
    token: str
    max_age_s: int


def cookie_name() -> str:
    """The session cookie's name, one per workspace: browsers keep cookies per host, not per
    port, so two apps on one machine would otherwise overwrite each other's sign-in."""
    digest = hashlib.sha256(str(workspace().root).encode()).hexdigest()[:12]
    return f"curator_session_{digest}"


def current_user() -> User | None:
    """The signed-in account, else the local curator where that is allowed, else nobody.

    The account is read back from the store on every run, and so is its session, so a changed
    role, a reset password, a removed account or a sign-out in another tab takes effect at once.
    A session nobody signed in to yet is restored from the browser's session cookie.
    """
    db = store()
    name = st.session_state.get(_USER_KEY)
    if name:
        token = st.session_state.get(_TOKEN_KEY)
        if token is None:  # signed in without a session (tests set the name directly)
            user = users.find_user(db, name)
        else:
            user = users.session_user(db, token)
        if user is not None:
            return user
        _end_signed_in_state()
        if token is not None:
            _change_cookie("", 0)
            st.session_state[_REFUSED_KEY] = token
            flash("info", SESSION_ENDED)
    elif (user := restore_from_cookie(db, cookie_token())) is not None:
        return user
    if listens_locally() and not users.has_users(db):
        return LOCAL_CURATOR
    return None


def cookie_token() -> str | None:
    """The session token the browser sent when this session connected, if any."""
    # Through to_dict: outside a browser (AppTest) the cookies' item lookup is a stand-in
    # object, while their listing is empty.
    value = st.context.cookies.to_dict().get(cookie_name())
    return value if isinstance(value, str) else None


def restore_from_cookie(db: Store, token: str | None) -> User | None:
    """Sign this session in with a token from the browser's cookie, if the token is valid.

    A token that is not (forged, expired, revoked) is remembered, so it is checked once, and
    the browser is told to delete it.
    """
    if not token or token == st.session_state.get(_REFUSED_KEY):
        return None
    user = users.session_user(db, token)
    if user is None:
        st.session_state[_REFUSED_KEY] = token
        _change_cookie("", 0)
        return None
    st.session_state[_USER_KEY] = user.name
    st.session_state[_TOKEN_KEY] = token
    return user


def take_cookie_change() -> CookieChange | None:
    """The cookie write this run should send the browser, once."""
    return st.session_state.pop(_COOKIE_KEY, None)


def _change_cookie(token: str, max_age_s: int) -> None:
    st.session_state[_COOKIE_KEY] = CookieChange(cookie_name(), token, max_age_s)


def is_local_curator(user: User | None) -> bool:
    return user is not None and user.id == LOCAL_CURATOR.id


def sign_in(user: User) -> None:
    """Sign this session in and start a session token, which the next run stores as a cookie."""
    _forget_personal_state()
    token = users.start_session(store(), user)
    st.session_state[_USER_KEY] = user.name
    st.session_state[_TOKEN_KEY] = token
    _change_cookie(token, int(users.SESSION_LIFETIME_S))


def sign_out() -> None:
    """Revoke this session's token (every tab restored from it signs out) and delete the cookie."""
    token = st.session_state.get(_TOKEN_KEY)
    if token is not None:
        users.end_session(store(), token)
        st.session_state[_REFUSED_KEY] = token
    _end_signed_in_state()
    _change_cookie("", 0)


def _end_signed_in_state() -> None:
    _forget_personal_state()
    st.session_state.pop(_USER_KEY, None)
    st.session_state.pop(_TOKEN_KEY, None)


def _forget_personal_state() -> None:
    st.session_state.pop(_FLASH_KEY, None)
    for key in list(st.session_state):
        if isinstance(key, str) and key.startswith(_PERSONAL_PREFIXES):
            del st.session_state[key]


def roles_phrase(roles: Sequence[str]) -> str:
    """Who a page is for, in words: ``("curator",)`` is "curators"."""
    return " or ".join(f"{role}s" for role in roles)


def require_page_role(*roles: str) -> User:
    """The current user, or stop the page here with a message when their role may not open it.

    Every page script calls this first: the menu only offers a role its pages, but any page can
    still be asked for by its URL.
    """
    user = current_user()
    if user is None:
        st.warning("Sign in first: open the app's front page.", icon=":material/lock:")
        st.stop()
    if user.role not in roles:
        st.error(
            f"This page is for {roles_phrase(roles)}; you are signed in as {user.name} ({user.role}).",
            icon=":material/block:",
        )
        st.stop()
    return user
