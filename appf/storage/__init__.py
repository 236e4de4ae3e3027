"""Output storage and layout (DESIGN §4), Beam-free so that training, validate, export and publish
share it with the pipeline: `Location` (local path or fsspec URL), `layout` (every key of an
output), commit markers, and zarr stores on a Location."""

from appf.storage import layout
from appf.storage.commits import (
    MarkerError, ShardCommit, clean_uncommitted, marker_keys, object_entry, objects_digest,
    read_marker, read_markers, write_marker,
)
from appf.storage.location import Location, StorageError, is_url
from appf.storage.zarr_io import encode_store, open_group, write_store_objects, zarr_store

__all__ = [
    "Location", "MarkerError", "ShardCommit", "StorageError", "clean_uncommitted", "encode_store",
    "is_url", "layout", "marker_keys", "object_entry", "objects_digest", "open_group", "read_marker",
    "read_markers", "write_marker", "write_store_objects", "zarr_store",
]
