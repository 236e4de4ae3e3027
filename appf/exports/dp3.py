"""`appf export dp3`: every committed shard of a run merged into ONE zarr-2 replay buffer.

DP3's and diffusion_policy's datasets read a single path with zarr-python 2
(`ReplayBuffer.copy_from_path`): `data/<key>` arrays share the time axis, `meta/episode_ends`
(int64, cumulative exclusive ends) cuts episodes (dp3-training.md §1.3, §2.1). The export writes
that layout in zarr format 2 (Blosc zstd 3 + byte shuffle, 100-frame chunks, as DP3's writers),
with `meta/episode_ids` as fixed-width unicode (zarr 2.12 to 2.18 save it back; an object array
does not survive ReplayBuffer.save_to_path).

Streaming: shards are read one at a time, key by key, so memory stays bounded by one shard's
largest array. Only committed shards (a `_commits/` marker) are read, in shard order, which is
episode order; an episode listed twice is an error. The store is built in a temporary folder and
renamed into place: FILE.zarr either does not exist or is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import zarr

from appf.exports import ExportError
from appf.pipelines.processed import STEP_ARRAYS
from appf.pipelines.sinks.zarr_shards import _compressor
from appf.storage import Location, open_group, read_markers
from appf.transforms.fps import resample_frames

DEFAULT_KEYS = ("point_cloud", "state", "action")  # what DP3's datasets load
CHUNK_FRAMES = 100  # DP3's writers chunk 100 frames along time
_RESAMPLED_WITH_CLOUD = ("point_cloud", "point_label")  # per-point arrays, re-sampled together


@dataclass(frozen=True)
class ShardPart:
    """One committed shard: its store (key in the output), episode ids and cumulative ends."""

    loc: Location
    key: str
    episode_ids: list[str]
    episode_ends: np.ndarray

    @property
    def name(self) -> str:
        return self.loc.url_of(self.key)

    def open(self) -> zarr.Group:
        return open_group(self.loc, self.key)


@dataclass(frozen=True)
class Dp3Export:
    path: Path
    shards: int
    episodes: int
    frames: int
    keys: tuple[str, ...]
    n_points: int | None


def committed_parts(out: str | Path) -> list[ShardPart]:
    """The run's committed shards that hold episodes, in shard (= episode) order. `out` is a local
    path or a URL (`appf.storage.Location`)."""
    loc = Location(out)
    commits = read_markers(loc)
    if not commits:
        raise ExportError(f"{out} has no committed shard (no _commits/shard-*.json): is it an appf "
                          "output directory of a finished or partly finished `appf reannotate`?")
    parts, seen = [], {}
    for c in sorted(commits.values(), key=lambda c: c.shard):
        if not c.path:
            continue  # every episode of the shard failed
        root = open_group(loc, c.path)
        ids = [str(x) for x in np.asarray(root["meta/episode_ids"][:])]
        if ids != list(c.episode_ids):
            raise ExportError(f"shard {c.path}: meta/episode_ids {ids[:4]}... differ from its commit "
                              f"marker {c.episode_ids[:4]}...; the shard was changed after its commit, "
                              "re-run the job on a clean output directory")
        for eid in ids:
            if eid in seen:
                raise ExportError(f"episode {eid} is in both {seen[eid]} and {c.path}; an episode must "
                                  "be exported once (were two runs' shards copied into one folder?)")
            seen[eid] = c.path
        parts.append(ShardPart(loc, c.path, ids, np.asarray(root["meta/episode_ends"][:], np.int64)))
    if not parts:
        raise ExportError(f"{out}: every committed shard is empty (all episodes failed); see "
                          "`appf inspect` for the failures")
    return parts


def _check_keys(keys: Sequence[str]) -> tuple[str, ...]:
    keys = tuple(STEP_ARRAYS) if list(keys) == ["all"] else tuple(dict.fromkeys(keys))
    unknown = [k for k in keys if k not in STEP_ARRAYS]
    if unknown:
        raise ExportError(f"unknown --keys {unknown}; choose among {list(STEP_ARRAYS)} or 'all'")
    return keys


def _array_specs(part: ShardPart, keys: tuple[str, ...], n_points: int | None
                 ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-frame shape and dtype of each exported key (from the first shard)."""
    root = part.open()
    specs = {}
    for key in keys:
        a = root[f"data/{key}"]
        shape = tuple(a.shape[1:])
        if n_points is not None and key in _RESAMPLED_WITH_CLOUD:
            if n_points > shape[0]:
                raise ExportError(f"--n-points {n_points} is more than the {shape[0]} points per frame "
                                  f"the run stored ({part.name}); choose at most {shape[0]}")
            shape = (n_points, *shape[1:])
        specs[key] = (shape, np.dtype(a.dtype))
    return specs


def _create_store(tmp: Path, specs: dict, frames: int, episodes: list[str],
                  ends: np.ndarray) -> zarr.Group:
    root = zarr.open_group(str(tmp), mode="w", zarr_format=2)
    data, meta = root.create_group("data"), root.create_group("meta")
    for key, (shape, dtype) in specs.items():
        data.create_array(key, shape=(frames, *shape), dtype=dtype,
                          chunks=(min(CHUNK_FRAMES, max(frames, 1)), *shape),
                          compressors=_compressor(2))
    meta.create_array("episode_ends", shape=ends.shape, dtype=np.int64, chunks=ends.shape,
                      compressors=_compressor(2))[...] = ends
    ids = np.array(episodes, dtype=str)
    meta.create_array("episode_ids", shape=ids.shape, dtype=ids.dtype, chunks=ids.shape,
                      compressors=_compressor(2))[...] = ids
    return root


def _copy_shard(part: ShardPart, dest: zarr.Group, keys: tuple[str, ...], lo: int,
                n_points: int | None, fps_method: str) -> None:
    """Write one shard's arrays at frames [lo, lo + frames) of the merged store."""
    root = part.open()
    hi = lo + int(part.episode_ends[-1])
    picks = None
    if n_points is not None and any(k in keys for k in (*_RESAMPLED_WITH_CLOUD, "point_count_real")):
        picks, n_real = resample_frames(root["data/point_cloud"][:], root["data/point_count_real"][:],
                                        n_points, fps_method)
    for key in keys:
        values = np.asarray(root[f"data/{key}"][:])
        if picks is not None and key in _RESAMPLED_WITH_CLOUD:
            values = np.take_along_axis(values, picks.reshape(picks.shape + (1,) * (values.ndim - 2)), 1)
        elif picks is not None and key == "point_count_real":
            values = n_real.astype(values.dtype)
        target = dest[f"data/{key}"]
        if values.shape[1:] != target.shape[1:] or values.dtype != target.dtype:
            raise ExportError(f"shard {part.name} field data/{key}: {values.shape[1:]} {values.dtype} "
                              f"per frame, the first shard has {target.shape[1:]} {target.dtype}; "
                              "export shards of one robot and one point count together")
        target[lo:hi] = values


def _attributes(parts: list[ShardPart], out: str | Path, n_points: int | None) -> dict[str, Any]:
    first = dict(parts[0].open().attrs)
    attrs = {k: v for k, v in first.items() if k not in ("shard", "episode_provenance")}
    attrs.update({"exported_from": Location(out).url_of(), "export": "appf export dp3",
                  "source_shards": [p.key for p in parts]})
    if n_points is not None:
        attrs.update({"n_points": n_points, "n_points_stored": first.get("n_points"),
                      "resampled": f"farthest point sampling ({first.get('fps_method', 'fast')}) "
                                   "over each frame's real points"})
    return attrs


def export_dp3(out: str | Path, to: str | Path, n_points: int | None = None,
               keys: Sequence[str] = DEFAULT_KEYS) -> Dp3Export:
    """Merge the committed shards of output `out` (local path or URL) into the local zarr-2 store
    `to` (see the module doc)."""
    to = Path(to)
    if to.exists():
        raise ExportError(f"{to} already exists; remove it or choose another --to path")
    keys = _check_keys(keys)
    parts = committed_parts(out)
    if n_points is not None and n_points < 1:
        raise ExportError(f"--n-points must be >= 1, got {n_points}")
    sizes = [int(p.episode_ends[-1]) for p in parts]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ends = np.concatenate([p.episode_ends + offsets[i] for i, p in enumerate(parts)])
    episodes = [e for p in parts for e in p.episode_ids]
    specs = _array_specs(parts[0], keys, n_points)
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(f".{to.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        dest = _create_store(tmp, specs, int(offsets[-1]), episodes, ends)
        fps_method = str(parts[0].open().attrs.get("fps_method", "fast"))
        for i, part in enumerate(parts):
            _copy_shard(part, dest, keys, int(offsets[i]), n_points, fps_method)
        dest.attrs.update(_attributes(parts, out, n_points))
        os.rename(tmp, to)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Dp3Export(to, len(parts), len(episodes), int(offsets[-1]), keys, n_points)
