"""The people who use a workspace: accounts, roles, passwords (argon2), login lockout, and the
sign-in sessions that keep a browser signed in across reloads and tabs.

Curators see and manage everything; annotators see their own queue and their own labels only.
Passwords are kept only as argon2 hashes; the clear text is never stored or logged. A session is
a random token held by the browser; the store keeps only its SHA-256, so the table alone signs
nobody in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import secrets
import time
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from curation.errors import CuratorError
from curation.store import Store

# A reviewer annotates and reviews people's labels (curation.review); curators review too.
ROLES = ("curator", "annotator", "reviewer")
MIN_PASSWORD_LENGTH = 8
MAX_NAME_LENGTH = 64
LOCK_AFTER_FAILURES = 5
LOCK_FIRST_S = 30.0
LOCK_MAX_S = 3600.0
WRONG_CREDENTIALS = "wrong user name or password"
# How long a sign-in lasts, counted from the sign-in: a reload or a new tab does not extend it.
SESSION_LIFETIME_S = 12 * 3600.0
_TOKEN_BYTES = 32
# What secrets.token_urlsafe(32) gives: anything else is refused before the store is asked.
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")

_HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified when the user name is unknown, so that a wrong name costs as much time as a
    wrong password and timing does not tell which user names exist."""
    return _HASHER.hash("not a real password, only for timing")


class AuthError(CuratorError):
    """A login failed: wrong name or password, or the account is locked or disabled."""


class PermissionDenied(CuratorError):
    """The user's role does not allow this action."""


@dataclass
class User:
    id: int
    name: str
    role: str

    @property
    def is_curator(self) -> bool:
        return self.role == "curator"


def _user(row) -> User:
    return User(id=row["id"], name=row["name"], role=row["role"])


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise CuratorError(f"role {role!r} is not one of {', '.join(ROLES)}")
    return role


def _check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise CuratorError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise CuratorError("a user needs a name")
    if len(name) > MAX_NAME_LENGTH or any(not c.isprintable() for c in name):
        raise CuratorError(
            f"user name {name!r} must be printable and at most {MAX_NAME_LENGTH} characters"
        )
    return name


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _epoch(iso: str | None) -> float | None:
    return dt.datetime.fromisoformat(iso).timestamp() if iso else None


def lock_seconds(failures: int) -> float:
    """How long an account stays locked after this many consecutive failed logins (0: not)."""
    if failures < LOCK_AFTER_FAILURES:
        return 0.0
    return min(LOCK_FIRST_S * 2 ** (failures - LOCK_AFTER_FAILURES), LOCK_MAX_S)


def _locked_message(seconds: float) -> str:
    seconds = math.ceil(seconds)
    span = f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"
    return f"too many failed logins: this account is locked for {span}"


def add_user(store: Store, name: str, role: str, password: str) -> User:
    """Create an account; the name must be new and the password at least 8 characters."""
    name = _check_name(name)
    _check_role(role)
    password_hash = _HASHER.hash(_check_password(password))
    with store.write():
        if store.conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise CuratorError(f"a user named {name!r} already exists")
        store.conn.execute(
            "INSERT INTO users(name, role, password_hash) VALUES (?, ?, ?)",
            (name, role, password_hash),
        )
    return get_user(store, name)


def find_user(store: Store, name: str) -> User | None:
    row = store.conn.execute(
        "SELECT id, name, role FROM users WHERE name = ?", ((name or "").strip(),)
    ).fetchone()
    return _user(row) if row else None


def get_user(store: Store, name: str) -> User:
    user = find_user(store, name)
    if user is None:
        raise CuratorError(f"no user named {name!r}")
    return user


def list_users(store: Store) -> list[User]:
    rows = store.conn.execute("SELECT id, name, role FROM users ORDER BY name").fetchall()
    return [_user(r) for r in rows]


def has_users(store: Store) -> bool:
    """Whether any account exists (the app asks for a first curator when none does)."""
    return store.conn.execute("SELECT EXISTS(SELECT 1 FROM users)").fetchone()[0] == 1


def set_role(store: Store, name: str, role: str) -> User:
    """Change a user's role; the last curator cannot be demoted (nobody could manage the team)."""
    _check_role(role)
    with store.write():
        user = get_user(store, name)
        if user.role == "curator" and role != "curator":
            curators = store.conn.execute(
                "SELECT count(*) FROM users WHERE role = 'curator'"
            ).fetchone()[0]
            if curators <= 1:
                raise CuratorError(
                    f"{user.name!r} is the only curator; make someone else one first"
                )
        if role != user.role:
            store.conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, user.id))
            end_user_sessions(store, user.id)
    return get_user(store, name)


def reset_password(store: Store, name: str, password: str) -> None:
    """Set a new password, lift any lockout, and end every session signed in with the old one."""
    password_hash = _HASHER.hash(_check_password(password))
    with store.write():
        user = get_user(store, name)
        store.conn.execute(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL "
            "WHERE id = ?",
            (password_hash, user.id),
        )
        end_user_sessions(store, user.id)


def authenticate(store: Store, name: str, password: str, *, now: float | None = None) -> User:
    """The user with this name and password, or AuthError.

    A wrong name and a wrong password fail with the same message. After 5 consecutive failures
    the account is locked for 30 s, doubling with each further failure up to an hour; while it is
    locked no password is checked. ``now`` (seconds since the epoch) is for tests.
    """
    now = time.time() if now is None else now
    row = store.conn.execute(
        "SELECT id, name, role, password_hash, failed_logins, locked_until, disabled "
        "FROM users WHERE name = ?",
        ((name or "").strip(),),
    ).fetchone()
    if row is None or not row["password_hash"]:
        _verify(_dummy_hash(), password or "")
        raise AuthError(WRONG_CREDENTIALS)
    locked_until = _epoch(row["locked_until"])
    if locked_until is not None and now < locked_until:
        raise AuthError(_locked_message(locked_until - now))
    # The slow hash check runs outside the write transaction so other writers never wait on it.
    if not _verify(row["password_hash"], password or ""):
        with store.write():
            store.conn.execute(
                "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ?", (row["id"],)
            )
            failures = store.conn.execute(
                "SELECT failed_logins FROM users WHERE id = ?", (row["id"],)
            ).fetchone()[0]
            lock = lock_seconds(failures)
            if lock:
                store.conn.execute(
                    "UPDATE users SET locked_until = ? WHERE id = ?", (_iso(now + lock), row["id"])
                )
        if lock:
            raise AuthError(f"{WRONG_CREDENTIALS}; {_locked_message(lock)}")
        raise AuthError(WRONG_CREDENTIALS)
    if row["disabled"]:
        raise AuthError("this account is disabled; ask a curator")
    new_hash = _HASHER.hash(password) if _HASHER.check_needs_rehash(row["password_hash"]) else None
    if new_hash or row["failed_logins"] or row["locked_until"]:
        with store.write():
            store.conn.execute(
                "UPDATE users SET failed_logins = 0, locked_until = NULL, "
                "password_hash = coalesce(?, password_hash) WHERE id = ?",
                (new_hash, row["id"]),
            )
    return _user(row)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# ---- sign-in sessions ---------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _is_token(token: object) -> bool:
    return isinstance(token, str) and _TOKEN_SHAPE.fullmatch(token) is not None


def start_session(
    store: Store, user: User, *, now: float | None = None, lifetime_s: float = SESSION_LIFETIME_S
) -> str:
    """A new session for this account, ending ``lifetime_s`` from now: the token its browser
    keeps. ``now`` (seconds since the epoch) is for tests."""
    now = time.time() if now is None else now
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    with store.write():
        # Sessions past their end can never sign anyone in again; drop them as new ones start.
        store.conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (_iso(now),))
        store.conn.execute(
            "INSERT INTO sessions(user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (user.id, _token_hash(token), _iso(now), _iso(now + lifetime_s)),
        )
    return token


def session_user(store: Store, token: object, *, now: float | None = None) -> User | None:
    """The account a session token signs in, or None.

    None for a token this store never issued (forged, altered, or from another workspace), one
    past its expiry or revoked, and one whose account is gone, disabled or locked out.
    """
    if not _is_token(token):
        return None
    now = time.time() if now is None else now
    row = store.conn.execute(
        "SELECT u.id, u.name, u.role, u.disabled, u.locked_until, s.expires_at, s.revoked_at "
        "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
        (_token_hash(token),),
    ).fetchone()
    if row is None or row["revoked_at"] is not None or row["disabled"]:
        return None
    if now >= _epoch(row["expires_at"]):
        return None
    locked_until = _epoch(row["locked_until"])
    if locked_until is not None and now < locked_until:
        return None
    return _user(row)


def end_session(store: Store, token: object, *, now: float | None = None) -> None:
    """Revoke one session (its browser signs out)."""
    if not _is_token(token):
        return
    now = time.time() if now is None else now
    with store.write():
        store.conn.execute(
            "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
            (_iso(now), _token_hash(token)),
        )


def end_user_sessions(store: Store, user_id: int, *, now: float | None = None) -> int:
    """Revoke every session of an account, so each browser signed in as it signs in again;
    how many were open."""
    now = time.time() if now is None else now
    with store.write():
        done = store.conn.execute(
            "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
            (_iso(now), user_id),
        )
    return done.rowcount


def require_role(user: User | None, *roles: str) -> None:
    """Raise PermissionDenied unless the user has one of these roles."""
    if user is None or user.role not in roles:
        who = "nobody logged in" if user is None else f"{user.name} is {user.role}"
        raise PermissionDenied(f"this needs the {' or '.join(roles)} role ({who})")
