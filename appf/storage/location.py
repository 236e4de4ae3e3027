"""One root (a local directory or an fsspec URL: s3://, gs://, memory://, ...) and the small set of
operations every appf writer and reader needs on it. Keys are '/'-separated paths relative to the
root. Beam-free: training, validate, export and publish import it as well as the pipeline.

Writes are whole objects: locally a temporary file renamed into place (readers never see half a
file); on object stores a single put (which is atomic per object).
"""

from __future__ import annotations

import os
import posixpath
import uuid
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


class StorageError(RuntimeError):
    """An output location cannot be reached or used; the message names the URL and the fix."""


def is_url(spec: str | Path) -> bool:
    """True for 'proto://...' specs other than file://."""
    text = str(spec)
    return "://" in text and not text.startswith("file://")


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as e:
        proto = url.split("://", 1)[0]
        raise StorageError(f"cannot open output URL {url}: {e}. For {proto}:// install its fsspec "
                           "implementation (s3fs for s3://, gcsfs for gs://, adlfs for az://)") from e
    return fs, root.rstrip("/")


class Location:
    """A root directory or object-store prefix. `Location("s3://bucket/run1")`, `Location("out/run1")`.

    `storage_options` go to fsspec (e.g. `{"endpoint_url": ...}` for s3fs); by default each
    filesystem reads its usual environment (AWS_* variables, AWS_ENDPOINT_URL, gcloud credentials).
    """

    def __init__(self, root: str | Path, storage_options: dict[str, Any] | None = None):
        self.storage_options = dict(storage_options or {})
        text = str(root)
        if not is_url(text):
            text = os.path.abspath(text.removeprefix("file://"))
        self.fs, self.root = _filesystem(text, self.storage_options)
        self.is_local = isinstance(self.fs, LocalFileSystem)
        self.protocol = "file" if self.is_local else text.split("://", 1)[0]
        self.url = self.root if self.is_local else f"{self.protocol}://{self.root}"

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __reduce__(self):  # pickles by URL: workers re-open their own filesystem
        return (Location, (self.url, self.storage_options))

    # paths -----------------------------------------------------------------------------------
    def path(self, key: str = "") -> str:
        """The filesystem path of `key` (what `self.fs` methods take)."""
        return posixpath.join(self.root, key) if key else self.root

    def url_of(self, key: str = "") -> str:
        """The full URL (or absolute local path) of `key`."""
        return posixpath.join(self.url, key) if key else self.url

    def local_path(self, key: str = "") -> Path | None:
        """The local path of `key`, or None on an object store."""
        return Path(self.path(key)) if self.is_local else None

    def child(self, key: str) -> "Location":
        return Location(self.url_of(key), self.storage_options)

    # reads -----------------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.path(key)))

    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError naming the URL when it is absent."""
        try:
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.url_of(key)} does not exist") from None

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def list(self, prefix: str = "") -> list[str]:
        """Keys of every object below `prefix` (recursive, sorted), relative to the root."""
        self.fs.invalidate_cache()
        base = self.path(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        return sorted(p[start:] if p.startswith(self.root + "/") else p for p in found
                      if p != base or prefix)

    def children(self, prefix: str = "") -> list[str]:
        """Keys of the entries directly below `prefix` (objects and 'directories'), sorted."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.ls(self.path(prefix), detail=False)
        except FileNotFoundError:
            return []
        start = len(self.root) + 1
        return sorted(p.rstrip("/")[start:] for p in found
                      if p.rstrip("/") != self.path(prefix).rstrip("/"))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """key -> size in bytes of every object below `prefix` (one listing)."""
        self.fs.invalidate_cache()
        base = self.path(prefix)
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        start = len(self.root) + 1
        return {p[start:]: int(info.get("size") or 0) for p, info in found.items()
                if info.get("type", "file") != "directory"}

    def size(self, key: str) -> int:
        return int(self.fs.size(self.path(key)))

    # writes ----------------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes, durable: bool = True) -> None:
        """Write the whole object: temp file + rename locally (fsynced first when `durable`: a
        power cut must not leave an empty control file), one put on an object store."""
        path = self.path(key)
        if not self.is_local:
            self.fs.pipe_file(path, data)
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = posixpath.join(posixpath.dirname(path),
                             f".{posixpath.basename(path)}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            if e.filename is None:  # a failed write() names no file: name the one being written
                raise OSError(e.errno, e.strerror, path) from e
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_text(self, key: str, text: str, durable: bool = True) -> None:
        self.write_bytes(key, text.encode("utf-8"), durable)

    def write_many(self, objects: dict[str, bytes]) -> None:
        """Write several whole objects (concurrently on object stores)."""
        if self.is_local:
            for key, data in objects.items():
                self.write_bytes(key, data, durable=False)
        elif objects:
            self.fs.pipe({self.path(k): v for k, v in objects.items()})

    def delete(self, key: str) -> None:
        """Remove one object; absent is fine."""
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass

    def delete_tree(self, key: str) -> None:
        """Remove everything below `key` (and `key` itself); absent is fine."""
        self.fs.invalidate_cache()
        path = self.path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)
        self.fs.invalidate_cache()

    def rename(self, key: str, new_key: str) -> None:
        """Local only: atomic rename of a file or directory (fails if `new_key` exists as a
        non-empty directory)."""
        if not self.is_local:
            raise StorageError(f"rename is not atomic on {self.protocol}://; use single puts")
        os.rename(self.path(key), self.path(new_key))
