"""The result of processing one episode, and its staging object (written under the output location
by the worker that processed the episode, read by the one writer of its shard: only descriptors
cross a shuffle)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from appf.schemas import SFT_SCHEMA
from appf.storage import Location

# Per-step arrays of a processed episode, in shard order; all share the first dimension T.
# Per-camera mask labels (T, H, W) uint8, present when the job stores masks: "mask.<camera>".
MASK_ARRAY_PREFIX = "mask."
STEP_ARRAYS = (
    "point_cloud",      # (T, N, 6) float32: xyz base frame (m) + rgb [0, 1]
    "point_label",      # (T, N) uint8: 0 background, 1 robot, 2 task object
    "point_count_real", # (T,) int32: points before padding (padding repeats real points)
    "state",            # (T, 8 * arms) float32: per arm ee xyz (m), quat xyzw, gripper (0 open, 1 closed)
    "action",           # (T, D) float32: the source's action (see Episode.action_space)
    "ee_pose",          # (T, arms, 7) float32: TCP xyz (m) + quat xyzw, base frame
    "gripper",          # (T, arms) float32: 0 open, 1 closed
    "timestamp",        # (T,) float64 seconds
    "keyframe",         # (T,) uint8: 1 at gripper keyframes (and the last step)
)


@dataclass
class ProcessedEpisode:
    dataset: str
    episode_id: str
    index: int
    arrays: dict[str, np.ndarray]
    sft: pa.Table
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.arrays["timestamp"].shape[0])

    @property
    def num_points(self) -> int:
        return int(self.arrays["point_count_real"].sum())


def action_semantics(episodes: list[ProcessedEpisode]) -> dict[str, Any]:
    """`action_space` (the source's description of `data/action`) and `action_dim` (its width)
    of the episodes of one shard; distinct descriptions are joined with " | "."""
    spaces = sorted({str(e.provenance.get("action_space") or "") for e in episodes} - {""})
    dims = {int(e.arrays["action"].shape[1]) for e in episodes}
    if len(dims) > 1:
        raise ValueError(f"episodes of one shard disagree on the action width: {sorted(dims)}")
    return {"action_space": " | ".join(spaces) or "not documented by the source",
            "action_dim": dims.pop() if dims else 0}


@dataclass(frozen=True)
class StagedEpisode:
    """What crosses the shuffle before the shard writer: a path and counts, no pixels."""

    shard: int
    index: int
    dataset: str
    episode_id: str
    path: str  # staging key, relative to the output location (appf.storage.layout.staged_key)
    frames: int
    points: int


@dataclass(frozen=True)
class FailedEpisode:
    shard: int
    index: int
    dataset: str
    episode_id: str
    stage: str
    error_type: str
    message: str


def save_staged(pe: ProcessedEpisode, loc: Location, key: str) -> None:
    """Write a processed episode as one .npz object (arrays + SFT rows as Arrow IPC + metadata)
    under the output location (local directory or object store: no shared filesystem needed)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SFT_SCHEMA) as writer:
        writer.write_table(pe.sft)
    meta = {"dataset": pe.dataset, "episode_id": pe.episode_id, "index": pe.index,
            "provenance": pe.provenance}
    buf = io.BytesIO()
    np.savez(buf, **pe.arrays,
             __sft__=np.frombuffer(sink.getvalue().to_pybytes(), dtype=np.uint8),
             __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    loc.write_bytes(key, buf.getvalue(), durable=False)  # staging: a crash redoes it


def load_staged(loc: Location, key: str) -> ProcessedEpisode:
    with np.load(io.BytesIO(loc.read_bytes(key)), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("__")}
        meta = json.loads(z["__meta__"].tobytes())
        sft = pa.ipc.open_stream(pa.py_buffer(z["__sft__"].tobytes())).read_all()
    return ProcessedEpisode(meta["dataset"], meta["episode_id"], meta["index"], arrays, sft,
                            meta["provenance"])
