"""Whole-shard Zarr writes in the diffusion_policy / DP3 replay-buffer layout (DESIGN §4).

One writer per shard: the store is encoded in memory (`encode_shard`), then written whole through
`appf.storage` (locally a temporary directory renamed into place; on object stores one put per
object, committed by the marker written after).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.codecs import BloscCodec

from appf.pipelines.processed import MASK_ARRAY_PREFIX, STEP_ARRAYS, ProcessedEpisode
from appf.storage import Location, encode_store, open_group, write_store_objects
from appf.storage.layout import shard_name  # noqa: F401 - re-exported for callers


def _compressor(zarr_format: int):
    # DP3's writers use Blosc zstd level 3 with byte shuffle on every array.
    if zarr_format == 2:
        return Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


def _write_array(group: zarr.Group, name: str, data: np.ndarray, zarr_format: int,
                 chunk_frames: int) -> None:
    """One array, chunked along time only. Strings: fixed-width unicode in format 2 (zarr 2.12 to
    2.18 save and load it; an object array needs an object_codec that DP3's and diffusion_policy's
    ReplayBuffer.save_to_path do not pass), variable-length UTF-8 in format 3."""
    if data.dtype == object or (data.dtype.kind == "U" and zarr_format == 3):
        arr = group.create_array(name, shape=data.shape, dtype=str)
    else:
        chunks = (max(1, min(chunk_frames, data.shape[0])), *data.shape[1:])
        kwargs: dict[str, Any] = {"compressors": _compressor(zarr_format)}
        if zarr_format == 3:
            # One shard object per array: chunks stay the unit of reading, the shard the unit
            # of writing (few files per store: object stores and the Hub want that).
            n_chunks = -(-data.shape[0] // chunks[0])
            kwargs["shards"] = (max(1, n_chunks) * chunks[0], *data.shape[1:])
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks, **kwargs)
    if data.size:
        arr[...] = data


def _write_masks(root: zarr.Group, episodes: Sequence[ProcessedEpisode], zarr_format: int,
                 chunk_frames: int) -> None:
    """Stored masks (job option store_masks): masks/<camera> (frames, H, W) uint8 labels, in the
    same frame order as data/ (meta/episode_ends applies), Blosc-compressed like every array."""
    keys = sorted({k for ep in episodes for k in ep.arrays if k.startswith(MASK_ARRAY_PREFIX)})
    if not keys:
        return
    group = root.create_group("masks")
    for key in keys:
        parts = [ep.arrays.get(key) for ep in episodes]
        shapes = {None if p is None else p.shape[1:] for p in parts}
        if len(shapes) != 1 or None in shapes:
            raise ValueError(f"stored masks {key!r}: every episode of a shard needs this camera "
                             f"at one image size, got {sorted(map(str, shapes))}")
        _write_array(group, key[len(MASK_ARRAY_PREFIX):], np.concatenate(parts, axis=0),
                     zarr_format, chunk_frames)


def _build_replay_buffer(root: zarr.Group, episodes: Sequence[ProcessedEpisode],
                         attributes: dict[str, Any], zarr_format: int, chunk_frames: int) -> None:
    data = root.create_group("data")
    meta = root.create_group("meta")
    for key in STEP_ARRAYS:
        parts = [ep.arrays[key] for ep in episodes]
        _write_array(data, key, np.concatenate(parts, axis=0), zarr_format, chunk_frames)
    _write_masks(root, episodes, zarr_format, chunk_frames)
    ends = np.cumsum([ep.num_frames for ep in episodes]).astype(np.int64)
    _write_array(meta, "episode_ends", ends, zarr_format, chunk_frames=max(1, len(ends)))
    ids = np.array([ep.episode_id for ep in episodes], dtype=str)  # fixed width '<U{n}'
    _write_array(meta, "episode_ids", ids, zarr_format, chunk_frames=max(1, len(ids)))
    root.attrs.update(attributes)


def encode_shard(episodes: Sequence[ProcessedEpisode], attributes: dict[str, Any],
                 zarr_format: int = 3, chunk_frames: int = 100) -> dict[str, bytes]:
    """`episodes` (in the given order) as the objects of one replay-buffer store (key -> bytes)."""
    return encode_store(
        lambda root: _build_replay_buffer(root, episodes, attributes, zarr_format, chunk_frames),
        zarr_format)


def write_shard(final_path: str | Path, episodes: Sequence[ProcessedEpisode],
                attributes: dict[str, Any], zarr_format: int = 3, chunk_frames: int = 100) -> Path:
    """Write `episodes` as one replay-buffer store at the local path `final_path`.

    Raises FileExistsError when the shard already exists (another attempt committed it)."""
    final_path = Path(final_path)
    write_store_objects(Location(final_path.parent), final_path.name,
                        encode_shard(episodes, attributes, zarr_format, chunk_frames))
    return final_path


def open_shard(path: str | Path) -> zarr.Group:
    """Open a shard read-only (format 2 or 3): a local path or a URL."""
    loc = Location(path)
    return open_group(loc)
