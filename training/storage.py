"""Where a cluster job's artefacts go: a storage URI, a plain folder (the workspace's ``runs/`` by
default) or any fsspec URL (``s3://bucket/curator``, ``gs://...``, ``file:///shared/...``).

A job on a Ray node writes its run folder here (model, checkpoints, reports) as it goes, and the
run and the job record the URI, so ``curator runs``, the Compare page and a retry find the files
wherever the job ran. fsspec comes with ``datasets``; a cloud scheme needs its own package
(``s3fs``, ``gcsfs``), installed on the workspace's host and on the nodes.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curation.errors import CuratorError


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
        for found in self.fs.find(root):
            yield posixpath.relpath(str(found), str(root).rstrip("/"))

    def get_dir(self, rel: str, local: Path) -> Path:
        """Copy the file or folder ``rel`` to ``local`` (a checkpoint a retry resumes from)."""
        fs, root = self.fs, self._path(rel)
        any_file = False
        for sub in self.files(rel):
            target = local / sub if sub else local
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(posixpath.join(str(root), sub) if sub else str(root), str(target))
            any_file = True
        if not any_file:
            raise CuratorError(f"nothing at {self.url(rel)} in the storage")
        return local


def default_storage(workspace_root: Path) -> str:
    """A worker's storage when none is named: the workspace's own ``runs/`` folder."""
    return str(Path(workspace_root) / "runs")
