"""Zarr stores on a Location: zarr's own store for the URL (LocalStore, or FsspecStore for s3://,
gs://, memory://, ...), and whole-store writes from objects encoded in memory."""

from __future__ import annotations

import shutil
import uuid
from typing import Callable

import zarr
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from appf.storage.location import Location


def zarr_store(loc: Location, key: str, read_only: bool = True):
    """zarr's store for the store rooted at `key` of `loc`."""
    if loc.is_local:
        return LocalStore(loc.path(key), read_only=read_only)
    return FsspecStore.from_url(loc.url_of(key), storage_options=loc.storage_options or None,
                                read_only=read_only)


def open_group(loc: Location, key: str = "") -> zarr.Group:
    """Open the group at `key` read-only (Zarr format 2 or 3)."""
    return zarr.open_group(store=zarr_store(loc, key, read_only=True), mode="r")


def encode_store(build: Callable[[zarr.Group], None], zarr_format: int) -> dict[str, bytes]:
    """Run `build(root_group)` on an in-memory store; return its objects (key -> encoded bytes).

    The bytes are exactly what zarr writes to any store, so they can be checksummed before they
    are written and put as whole objects."""
    objects: dict = {}
    build(zarr.open_group(store=MemoryStore(objects), mode="w", zarr_format=zarr_format))
    return {key: buf.to_bytes() for key, buf in objects.items()}


def write_store_objects(loc: Location, key: str, objects: dict[str, bytes]) -> None:
    """Write a whole zarr store at `key`.

    Locally: into a hidden temporary directory renamed into place (FileExistsError when the store
    already exists: a concurrent attempt's identical store). On object stores: one put per object
    into the final prefix, without deleting (a duplicate attempt of the same job writes identical
    bytes); the commit marker, written after, is what makes the store count."""
    if not loc.is_local:
        loc.write_many({f"{key}/{k}": v for k, v in objects.items()})
        return
    final = loc.local_path(key)
    if final.exists():
        raise FileExistsError(f"shard {final} already exists")
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        for k, data in objects.items():
            path = tmp / k
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        tmp.rename(final)  # the store appears whole or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
