"""Read many point-cloud shards (Zarr format 2 or 3, replay-buffer layout, DESIGN §4) as one buffer.

Low-dimensional arrays (state, action, end-effector pose, gripper, timestamps, keyframes) are read
into memory once; point clouds are read only when asked for (phase 2), so a pre-training run
never touches ``data/point_cloud``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import zarr

from appf.storage import Location, MarkerError, StorageError, is_url, layout, open_group
from appf.storage.commits import committed_entries
from appf.training.errors import TrainingError

LOW_DIM_KEYS: tuple[str, ...] = ("state", "action", "ee_pose", "gripper", "timestamp", "keyframe")
POINT_CLOUD_KEY = "point_cloud"


ShardPath = Path | str  # a local path, or the URL of a store on an object store


def shard_label(path: ShardPath) -> str:
    """The store's own name (shard-NNNNN.zarr), for messages and checkpoints."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


def _as_shard_path(loc: Location, key: str = "") -> ShardPath:
    return loc.local_path(key) if loc.is_local else loc.url_of(key)


def _committed(loc: Location) -> list[dict] | None:
    try:
        return committed_entries(loc)
    except (MarkerError, ValueError, KeyError, TypeError) as e:
        raise TrainingError(f"{loc.url}: cannot tell which shards are committed ({e}); run "
                            f"`appf validate {loc.url}`") from e


def find_shards(path: str | Path) -> list[ShardPath]:
    """The shard stores under ``path`` (local path or URL such as s3://bucket/run): a ``*.zarr``
    store, a job output (only its committed shards, from the commit markers or the manifest), or
    a folder of stores. Temporary stores (names starting with '.') are skipped."""
    try:
        loc = Location(path)
        present = loc.exists("")
    except (StorageError, OSError) as e:
        raise TrainingError(f"cannot read shard location {path}: {e}") from e
    if not present:
        raise TrainingError(f"shard path {path} does not exist; pass a job output folder, its "
                            "pointclouds/ folder or one shard-NNNNN.zarr store")
    if loc.url.endswith(".zarr"):
        return [_as_shard_path(loc)]
    committed = _committed(loc)
    if committed is not None:
        return [_as_shard_path(loc, e["path"]) for e in committed if e["path"]]
    folder = layout.POINTCLOUDS_DIR if loc.children(layout.POINTCLOUDS_DIR) else ""
    shards = [k for k in loc.children(folder)
              if k.endswith(".zarr") and not shard_label(k).startswith(".")]
    if not shards:
        raise TrainingError(f"no *.zarr shard in {loc.url_of(folder)}; write shards with `appf "
                            "reannotate` or point --shards at a folder holding shard-NNNNN.zarr stores")
    return [_as_shard_path(loc, k) for k in shards]


@dataclass(frozen=True)
class DataSpec:
    """Shapes shared by every shard: state (8 x arms), action (D), arms, points per frame."""

    state_dim: int
    action_dim: int
    arms: int
    n_points: int | None

    @property
    def guidance_dim(self) -> int:
        """Guidance pose per arm: xyz (m) + quaternion xyzw."""
        return 7 * self.arms

    def to_dict(self) -> dict:
        return {"state_dim": self.state_dim, "action_dim": self.action_dim, "arms": self.arms,
                "n_points": self.n_points}

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(int(d["state_dim"]), int(d["action_dim"]), int(d["arms"]),
                   None if d.get("n_points") is None else int(d["n_points"]))


def _open(path: ShardPath) -> zarr.Group:
    try:
        return open_group(Location(path))
    except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear error
        raise TrainingError(f"cannot open shard {path} as a Zarr group (format 2 or 3): "
                            f"{type(e).__name__}: {e}") from e


def _array(group: zarr.Group, key: str, path: ShardPath) -> zarr.Array:
    try:
        return group[key]
    except KeyError:
        raise TrainingError(f"shard {path} has no array {key!r}; it was not written by appf's "
                            "shard writer (expected data/<step arrays> and meta/episode_ends)") from None


class ShardSet:
    """Shards seen as one replay buffer: frames concatenated in shard order.

    ``episode_starts``/``episode_ends`` (E,) are global frame indices (end exclusive);
    ``lowdim[key]`` holds every frame of each low-dimensional array.
    """

    def __init__(self, paths: Sequence[ShardPath], need_point_cloud: bool = False):
        if not paths:
            raise TrainingError("no shards given")
        self.paths = [p if is_url(p) else Path(p) for p in paths]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in LOW_DIM_KEYS}
        starts, ends, ids = [], [], []
        self._pc_arrays: list[zarr.Array] = []
        self.frame_offsets = [0]
        self.zarr_formats: list[int] = []
        offset = 0
        for path in self.paths:
            g = _open(path)
            self.zarr_formats.append(int(g.metadata.zarr_format))
            ep_ends = np.asarray(_array(g, "meta/episode_ends", path)[...], dtype=np.int64)
            if ep_ends.ndim != 1 or ep_ends.size == 0 or np.any(np.diff(ep_ends) <= 0) or ep_ends[0] <= 0:
                raise TrainingError(f"shard {path}: meta/episode_ends must be a non-empty, strictly "
                                    f"increasing list of positive cumulative ends, got {ep_ends[:8]}")
            n = int(ep_ends[-1])
            for key in LOW_DIM_KEYS:
                a = np.asarray(_array(g, f"data/{key}", path)[...])
                if a.shape[0] != n:
                    raise TrainingError(f"shard {path}: data/{key} has {a.shape[0]} frames but "
                                        f"meta/episode_ends ends at {n}; the shard is corrupt, rewrite it")
                parts[key].append(a)
            if need_point_cloud:
                if POINT_CLOUD_KEY not in g["data"]:
                    raise TrainingError(
                        f"shard {path} has no data/{POINT_CLOUD_KEY}; phase 2 needs the point clouds "
                        "(a phase-1 download of a dataset id leaves them out: run phase 2 online once "
                        "so they are fetched into the cache)")
                pc = _array(g, f"data/{POINT_CLOUD_KEY}", path)
                if pc.ndim != 3 or pc.shape[0] != n or pc.shape[2] < 3:
                    raise TrainingError(f"shard {path}: data/point_cloud must be (T={n}, N, >=3), "
                                        f"got {pc.shape}")
                self._pc_arrays.append(pc)
            ep_ids = _array(g, "meta/episode_ids", path)[...] if "episode_ids" in g["meta"] else None
            ep_starts = np.concatenate([[0], ep_ends[:-1]])
            starts.append(ep_starts + offset)
            ends.append(ep_ends + offset)
            ids.extend(str(x) for x in (ep_ids if ep_ids is not None
                                        else [f"{shard_label(path)}#{i}" for i in range(ep_ends.size)]))
            offset += n
            self.frame_offsets.append(offset)
        self.lowdim = {k: np.concatenate(v, axis=0) for k, v in parts.items()}
        self.episode_starts = np.concatenate(starts)
        self.episode_ends = np.concatenate(ends)
        self.episode_ids = ids
        self.spec = self._check_spec(need_point_cloud)

    def _check_spec(self, need_point_cloud: bool) -> DataSpec:
        specs = set()
        for i, path in enumerate(self.paths):
            lo, hi = self.frame_offsets[i], self.frame_offsets[i + 1]
            ee = self.lowdim["ee_pose"][lo:hi]
            state, action = self.lowdim["state"][lo:hi], self.lowdim["action"][lo:hi]
            if ee.ndim != 3 or ee.shape[2] != 7:
                raise TrainingError(f"shard {path}: data/ee_pose must be (T, arms, 7), got {ee.shape}")
            if state.ndim != 2 or state.shape[1] != 8 * ee.shape[1]:
                raise TrainingError(f"shard {path}: data/state must be (T, 8 x arms = {8 * ee.shape[1]}), "
                                    f"got {state.shape}")
            n_points = int(self._pc_arrays[i].shape[1]) if need_point_cloud else None
            specs.add((state.shape[1], action.shape[1], ee.shape[1], n_points, path))
        distinct = {s[:4] for s in specs}
        if len(distinct) > 1:
            listing = "; ".join(f"{shard_label(s[4])}: state {s[0]}, action {s[1]}, arms {s[2]}, points {s[3]}"
                                for s in sorted(specs, key=lambda s: str(s[4])))
            raise TrainingError("shards disagree on shapes (train on shards of one robot and one "
                                f"point count): {listing}")
        state_dim, action_dim, arms, n_points = distinct.pop()
        return DataSpec(int(state_dim), int(action_dim), int(arms), n_points)

    @property
    def n_frames(self) -> int:
        return int(self.frame_offsets[-1])

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.size)

    def point_clouds(self, frames: np.ndarray) -> np.ndarray:
        """xyz (metres, base frame) of the given global frames: (len(frames), N, 3) float32.

        Reads only the chunks holding those frames, shard by shard."""
        if not self._pc_arrays:
            raise TrainingError("point clouds were not opened: build the ShardSet with "
                                "need_point_cloud=True (phase 2 only)")
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        out = np.empty((frames.size, self.spec.n_points, 3), dtype=np.float32)
        shard_of = np.searchsorted(self.frame_offsets, frames, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = frames[sel] - self.frame_offsets[s]
            uniq, inverse = np.unique(local, return_inverse=True)
            block = self._pc_arrays[s].get_orthogonal_selection((uniq, slice(None), slice(0, 3)))
            out[sel] = np.asarray(block, dtype=np.float32)[inverse]
        return out

    def all_point_clouds(self) -> np.ndarray:
        """Every frame's xyz: (n_frames, N, 3) float32 (n_frames x N x 12 bytes of memory)."""
        return np.concatenate([np.asarray(a[:, :, :3], dtype=np.float32) for a in self._pc_arrays])
