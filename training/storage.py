"""Where a cluster job's artefacts go: a storage URI, a plain folder (the workspace's ``runs/`` by
default) or any fsspec URL (``s3://bucket/curator``, ``gs://...``, ``file:///shared/...``).

A job on a Ray node writes its run folder here (model, checkpoints, reports) as it goes, and the
run and the job record the URI, so ``curator runs``, the Compare page and a retry find the files
wherever the job ran. fsspec comes with ``datasets``; a cloud scheme needs its own package
(``s3fs``, ``gcsfs``), installed on the workspace's host and on the nodes.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError
from curation.workspace import Workspace

ARTIFACT_CACHE = "artifacts"  # the workspace's cache/ folder holds one copy per URL here


def is_local(uri: str) -> bool:
    """A folder on this machine (a plain path or ``file://``), as opposed to a remote URL."""
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")) if is_local(uri) else Path(uri)


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended, as a path for a folder, with ``/`` for a URL."""
    if is_local(uri) and not uri.startswith("file://"):
        return str(Path(uri).joinpath(*parts))
    return posixpath.join(uri.rstrip("/"), *parts)


@dataclass(frozen=True)
class Storage:
    """A storage root and the fsspec file system that reaches it."""

    uri: str

    @classmethod
    def at(cls, uri: str | os.PathLike) -> Storage:
        text = str(uri).strip()
        if not text:
            raise CuratorError("name a storage folder or URL")
        if is_local(text) and not text.startswith("file://"):
            text = str(Path(text).expanduser().resolve())
        return cls(text)

    @property
    def fs(self) -> Any:
        try:
            import fsspec
        except ImportError as exc:
            raise CuratorError("a storage URL needs fsspec: pip install fsspec") from exc
        try:
            return fsspec.filesystem(fsspec.utils.get_protocol(self.uri))
        except (ImportError, ValueError) as exc:
            raise CuratorError(f"cannot open the storage {self.uri!r}: {exc}") from exc

    def _path(self, rel: str) -> str:
        """The path fsspec takes for ``rel`` under the root (no scheme for local folders)."""
        if is_local(self.uri):
            return str(local_path(self.uri).joinpath(rel)) if rel else str(local_path(self.uri))
        return join(self.uri, rel) if rel else self.uri

    def url(self, rel: str = "") -> str:
        return join(self.uri, rel) if rel else self.uri

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self._path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self._path(rel), "rb") as handle:
            return handle.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a whole file; a reader sees the old file or the new one, never a part."""
        fs, path = self.fs, self._path(rel)
        fs.makedirs(posixpath.dirname(path) if not is_local(self.uri) else str(Path(path).parent),
                    exist_ok=True)  # fmt: skip
        if is_local(self.uri):
            partial = Path(path).with_name(f".{Path(path).name}.partial")
            partial.write_bytes(data)
            os.replace(partial, path)
            return
        with fs.open(path, "wb") as handle:  # object stores write whole objects anyway
            handle.write(data)

    def put_file(self, local: Path, rel: str) -> None:
        fs, path = self.fs, self._path(rel)
        if is_local(self.uri):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            partial = Path(path).with_name(f".{Path(path).name}.partial")
            fs.put_file(str(local), str(partial))
            os.replace(partial, path)
            return
        fs.put_file(str(local), path)

    def files(self, rel: str) -> Iterator[str]:
        """Every file under ``rel``, as paths relative to ``rel``."""
        root = self._path(rel)
        if not self.fs.exists(root):
            return
        if self.fs.isfile(root):
            yield ""
            return
        # fsspec lists paths without the scheme (``bucket/runs/...``): measure them from the
        # root stripped the same way, not from the URL
        base = str(self.fs._strip_protocol(root)).rstrip("/")
        for found in self.fs.find(root):
            yield posixpath.relpath(str(found), base)

    def get_dir(self, rel: str, local: Path) -> Path:
        """Copy the file or folder ``rel`` to ``local`` (a checkpoint a retry resumes from)."""
        fs, root = self.fs, self._path(rel)
        any_file = False
        for sub in self.files(rel):
            target = local / sub if sub else local
            if not target.resolve().is_relative_to(local.resolve()):  # a listing never writes out
                raise CuratorError(f"{self.url(rel)} lists {sub!r}, which is outside it")
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(posixpath.join(str(root), sub) if sub else str(root), str(target))
            any_file = True
        if not any_file:
            raise CuratorError(f"nothing at {self.url(rel)} in the storage")
        return local


def artifact_cache_dir(workspace: Workspace, uri: str) -> Path:
    """Where the workspace keeps its copy of the folder at ``uri``: named by a hash of the URL, so
    no URL names a path outside the cache."""
    key = hashlib.sha256(uri.encode()).hexdigest()[:32]
    return workspace.confine(Path(ARTIFACT_CACHE) / key, base="cache", within_base=True)


def local_artifact(workspace: Workspace, ref: str, *, what: str = "the artefact") -> Path:
    """The folder ``ref`` names (a run's model, say), as a folder on this machine.

    A local folder (a path or ``file://``) is itself. A URL's folder is downloaded into the
    workspace's cache the first time and read from there after: a run's files are written once,
    when its job ends, so the copy does not go stale. The download lands in a hidden folder beside
    the copy and is renamed into place only when whole, so a process killed half-way leaves no
    folder that looks complete. ``what`` names the folder in errors.
    """
    if is_local(ref):
        folder = local_path(ref)
        if not folder.is_dir():
            raise CuratorError(f"{what} is missing ({ref})")
        return folder
    folder = artifact_cache_dir(workspace, ref)
    if folder.is_dir():
        return folder
    storage = Storage.at(ref)
    try:
        if not storage.exists(""):
            raise CuratorError(f"{what} is missing ({ref})")
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            storage.get_dir("", partial)
            try:
                partial.rename(folder)
            except OSError:
                if not folder.is_dir():
                    raise
                # another process finished the same download first; its copy is as good
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    except OSError as exc:  # no credentials, no network, a full disk
        raise CuratorError(f"cannot download {what} from {ref}: {exc}") from exc
    return folder


def default_storage(workspace_root: Path) -> str:
    """A worker's storage when none is named: the workspace's own ``runs/`` folder."""
    return str(Path(workspace_root) / "runs")
