"""Writing a LeRobot v3.0 dataset (dp3-training.md §3.2-3.3) with pyarrow and PyAV, one episode at a
time (memory bounded by one episode).

lerobot itself cannot live in appf's environment (it pins torch<2.11 and huggingface-hub<0.36), so
the format is written here and the tests load the result with the real
`lerobot.datasets.LeRobotDataset` (tests/lerobot_helper.py). Layout: one data parquet and one MP4
per camera per episode (`data/chunk-CCC/file-FFF.parquet`, `videos/<key>/chunk-CCC/file-FFF.mp4`,
file index = episode index, 1000 files per chunk), `meta/episodes/chunk-000/file-000.parquet`,
`meta/tasks.parquet`, `meta/stats.json`, `meta/info.json`. Videos: AV1 (libsvtav1), yuv420p, GOP 2,
CRF 30, frame i at pts i / fps: LeRobot's own defaults, so LeRobot seeks them as it does its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
INDEX_FEATURES = {"timestamp": "float32", "frame_index": "int64", "episode_index": "int64",
                  "index": "int64", "task_index": "int64"}
VIDEO_OPTIONS = {"g": "2", "preset": "12"}
DEFAULT_CRF = 30  # LeRobot's default; lower is closer to the source frames and larger


def encode_video(frames: np.ndarray, path: Path, fps: int, crf: int = DEFAULT_CRF) -> None:
    """(T, H, W, 3) RGB uint8 -> AV1 MP4, frame i at pts i (time base 1 / fps)."""
    import av
    from fractions import Fraction

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config at info level
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libsvtav1", rate=int(fps), options={**VIDEO_OPTIONS, "crf": str(int(crf))})
        s.width, s.height, s.pix_fmt = int(frames.shape[2]), int(frames.shape[1]), "yuv420p"
        s.time_base = Fraction(1, int(fps))
        for i, rgb in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            f.pts = i
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)


def _stats(values: np.ndarray, axis: tuple[int, ...]) -> dict[str, Any]:
    v = values.astype(np.float64)
    return {"min": v.min(axis=axis).tolist(), "max": v.max(axis=axis).tolist(),
            "mean": v.mean(axis=axis).tolist(), "std": v.std(axis=axis).tolist(), "count": [len(values)]}


def _merge_stats(a: dict[str, Any] | None, b: dict[str, Any]) -> dict[str, Any]:
    """Pooled min/max/mean/std of two groups (counts weighted)."""
    if a is None:
        return b
    na, nb = a["count"][0], b["count"][0]
    ma, mb = np.asarray(a["mean"]), np.asarray(b["mean"])
    mean = (na * ma + nb * mb) / (na + nb)
    var = (na * (np.asarray(a["std"]) ** 2 + (ma - mean) ** 2) + nb * (np.asarray(b["std"]) ** 2 + (mb - mean) ** 2)) / (na + nb)
    return {"min": np.minimum(a["min"], b["min"]).tolist(), "max": np.maximum(a["max"], b["max"]).tolist(),
            "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [na + nb]}


def video_feature(h: int, w: int, fps: int) -> dict[str, Any]:
    return {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": h, "video.width": w, "video.codec": "av1", "video.pix_fmt": "yuv420p",
                     "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}}


@dataclass
class LeRobotV3Writer:
    """Add episodes in order, then `finalize()` (writes the metadata; the dataset is readable only
    after it). `features`: the non-index features, LeRobot feature specs (numeric or video)."""

    root: Path
    fps: int
    features: dict[str, dict[str, Any]]
    robot_type: str = "unknown"
    crf: int = DEFAULT_CRF
    _episodes: list[dict[str, Any]] = field(default_factory=list)
    _tasks: dict[str, int] = field(default_factory=dict)
    _stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    _frames: int = 0

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if (self.root / "meta" / "info.json").exists():
            raise FileExistsError(f"{self.root} already holds a LeRobot dataset; choose an empty --to")

    def add_episode(self, arrays: dict[str, np.ndarray], task: str) -> None:
        """`arrays`: every feature of `features`, (T, ...) numeric or (T, H, W, 3) uint8 video."""
        e, T = len(self._episodes), len(next(iter(arrays.values())))
        chunk, file = divmod(e, CHUNKS_SIZE)
        task_index = self._tasks.setdefault(task, len(self._tasks))
        row: dict[str, Any] = {"episode_index": e, "tasks": [task], "length": T, "data/chunk_index": chunk,
                               "data/file_index": file, "dataset_from_index": self._frames,
                               "dataset_to_index": self._frames + T}
        cols: dict[str, pa.Array] = {}
        for key, spec in self.features.items():
            a = arrays[key]
            if len(a) != T:
                raise ValueError(f"episode {e}: feature {key} has {len(a)} frames, expected {T}")
            if spec["dtype"] == "video":
                encode_video(a, self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file),
                             self.fps, self.crf)
                row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                            f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": T / self.fps})
                self._add_stats(key, a[::max(1, T // 10)].astype(np.float32).transpose(0, 3, 1, 2) / 255.0,
                                (0, 2, 3), keepdims=True)
            else:
                cols[key] = _numeric_array(a, spec)
                self._add_stats(key, a, (0,))
        cols.update(timestamp=pa.array(np.arange(T, dtype=np.float32) / np.float32(self.fps)),
                    frame_index=pa.array(np.arange(T), pa.int64()), episode_index=pa.array(np.full(T, e), pa.int64()),
                    index=pa.array(np.arange(self._frames, self._frames + T), pa.int64()),
                    task_index=pa.array(np.full(T, task_index), pa.int64()))
        path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), path)
        self._episodes.append(row)
        self._frames += T

    def _add_stats(self, key: str, values: np.ndarray, axis: tuple[int, ...], keepdims: bool = False) -> None:
        s = _stats(values, axis)
        if keepdims:  # image stats are (C, 1, 1), as LeRobot stores them
            s = {k: (np.asarray(v)[:, None, None].tolist() if k != "count" else v) for k, v in s.items()}
        self._stats[key] = _merge_stats(self._stats.get(key), s)

    def finalize(self) -> None:
        meta = self.root / "meta"
        (meta / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
        for row in self._episodes:
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        pq.write_table(pa.Table.from_pylist(self._episodes), meta / "episodes" / "chunk-000" / "file-000.parquet")
        pq.write_table(tasks_table(self._tasks), meta / "tasks.parquet")
        (meta / "stats.json").write_text(json.dumps(self._stats, indent=1))
        (meta / "info.json").write_text(json.dumps(self.info(), indent=4))

    def info(self) -> dict[str, Any]:
        n = len(self._episodes)
        return {"codebase_version": CODEBASE_VERSION, "robot_type": self.robot_type, "total_episodes": n,
                "total_frames": self._frames, "total_tasks": len(self._tasks), "chunks_size": CHUNKS_SIZE,
                "data_files_size_in_mb": 100, "video_files_size_in_mb": 200, "fps": self.fps,
                "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if any(f["dtype"] == "video" for f in self.features.values()) else None,
                "features": {**self.features, **{k: {"dtype": d, "shape": [1], "names": None}
                                                 for k, d in INDEX_FEATURES.items()}}}


def tasks_table(tasks: dict[str, int]) -> pa.Table:
    """meta/tasks.parquet: `task_index` with the task text as the pandas index (LeRobot reads it with
    pandas.read_parquet and takes a row's index as its task), stored as pandas' own parquet
    metadata describes an index column (written without pandas, which appf does not need)."""
    rows = sorted(tasks.items(), key=lambda kv: kv[1])
    table = pa.table({"task_index": pa.array([i for _, i in rows], pa.int64()),
                      "task": pa.array([t for t, _ in rows], pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                     "numpy_type": "int64", "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "attributes": {}, "creator": {"library": "appf", "version": "0"}, "pandas_version": "2.3.3"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _numeric_array(a: np.ndarray, spec: dict[str, Any]) -> pa.Array:
    """(T, D) -> fixed-size list column; (T, N, C) -> list of fixed-size lists (datasets Array2D)."""
    dtype = pa.from_numpy_dtype(np.dtype(spec["dtype"]))
    a = np.ascontiguousarray(a, dtype=np.dtype(spec["dtype"]))
    if a.ndim == 2:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), dtype), a.shape[1])
    inner = pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), dtype), a.shape[2])
    return pa.FixedSizeListArray.from_arrays(inner, a.shape[1])
