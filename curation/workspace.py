"""A workspace: one folder holding the SQLite store and every artefact a curator produces.

The folder comes from ``--workspace``, else ``CURATOR_WORKSPACE``, else ``./workspace``. Paths the
app writes (exports, checkpoints, logs) are confined to it unless a user names an explicit path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from curation.errors import CuratorError

DB_NAME = "curator.db"
ENV_VAR = "CURATOR_WORKSPACE"
DEFAULT_DIR = "workspace"
# Artefact folders created with every workspace; each later capability writes only into its own.
ARTEFACT_DIRS = ("exports", "imports", "models", "runs", "logs", "mixtures", "cache", "plans")
MODEL_ROOTS_ENV = "CURATOR_MODEL_ROOTS"
# A hub id (org/name) or a bare model name; no leading dot, so never ``..`` or a hidden path.
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> Workspace:
        """The workspace named by an argument, the environment, or the default folder."""
        chosen = path or os.environ.get(ENV_VAR) or DEFAULT_DIR
        return cls(Path(chosen).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    def exists(self) -> bool:
        """Whether the store is there; a folder this user may not open is refused, not missing."""
        try:
            return self.db_path.exists()
        except OSError as exc:  # pathlib raises where it cannot look (before Python 3.12)
            raise CuratorError(f"cannot open the workspace at {self.root}: {exc.strerror}") from exc

    def ensure(self) -> Workspace:
        """Create the folder and its artefact folders (idempotent).

        A new workspace folder is its owner's alone (mode 0700): the command line acts with the
        rights of whoever can open it, and it holds every label and the accounts' password
        hashes. To share it with a team's shell accounts, open it up on purpose (``chmod``).
        An existing folder keeps its mode.
        """
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=0o700, exist_ok=True)
            for name in ARTEFACT_DIRS:
                (self.root / name).mkdir(exist_ok=True)
        except OSError as exc:
            raise CuratorError(f"cannot create workspace at {self.root}: {exc.strerror}") from exc
        return self

    def dir(self, name: str) -> Path:
        """One of the artefact folders, created on demand."""
        if name not in ARTEFACT_DIRS:
            raise ValueError(f"unknown artefact folder {name!r}")
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def confine(
        self, path: str | os.PathLike, *, base: str = "exports", within_base: bool = False
    ) -> Path:
        """Resolve a path given in the app: relative paths land in ``base``; escapes are refused.

        The CLI passes explicit paths straight through; the app, where a path is typed into a
        box by someone who may not own the machine, goes through here. Symbolic links are
        followed before the check, so a link inside the workspace cannot lead out of it.
        ``within_base`` keeps the path inside the ``base`` folder itself: what the app writes
        goes there, never over the store or another folder's files.
        """
        if "\x00" in os.fspath(path):
            raise CuratorError(f"path {os.fspath(path)!r} holds a NUL character")
        candidate = Path(path).expanduser()
        if not candidate.is_absolute():
            candidate = self.dir(base) / candidate
        resolved = candidate.resolve()
        allowed = (self.dir(base) if within_base else self.root).resolve()
        if not resolved.is_relative_to(allowed):
            where = f"workspace's {base} folder" if within_base else "workspace"
            raise CuratorError(f"path {path} is outside the {where} {allowed}")
        if within_base and resolved == allowed:
            raise CuratorError(f"name a file or folder inside {allowed}, not the folder itself")
        return resolved

    def confine_source(self, ref: str, *, what: str = "model", hub: bool = True) -> str:
        """A model or data file typed into the app, as what may be loaded: a path or a hub id.

        The app loads whatever a curator types into a model or eval-file box, on the server, for
        whoever can reach the page; it must not read files elsewhere on that machine (a parse
        error would even quote them). So a local path, absolute or relative to the workspace,
        must lie inside the workspace or inside a folder the server's owner listed in
        ``CURATOR_MODEL_ROOTS`` (``os.pathsep``-separated). With ``hub``, a hub id (``org/name``)
        or a bare name (``gpt2``, ``smollm2``) that is no local path passes as typed: loaders read
        it from the local cache, offline by default. Returns the resolved path, or the id.
        """
        text = (ref or "").strip()
        if "\x00" in text:
            raise CuratorError(f"{what} {text!r} holds a NUL character")
        if not text:
            raise CuratorError(f"name a {what}")
        typed = Path(text).expanduser()
        if typed.is_absolute():
            candidate = typed
        elif (self.root / typed).exists():
            candidate = self.root / typed
        elif hub and HUB_NAME.fullmatch(text) and not typed.exists():
            return text
        else:  # a loader would read it relative to the server's working folder, if it is there
            candidate = typed if typed.exists() else self.root / typed
        resolved = candidate.resolve()
        roots = [self.root, *model_roots()]
        if not any(resolved.is_relative_to(r.resolve()) for r in roots):
            raise CuratorError(
                f"{what} path {text} is outside the workspace {self.root}: the app loads local "
                f"files only from the workspace or from folders listed in {MODEL_ROOTS_ENV}"
            )
        return str(resolved)


def model_roots() -> list[Path]:
    """Folders outside workspaces that the app may load models and eval files from."""
    value = os.environ.get(MODEL_ROOTS_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]
