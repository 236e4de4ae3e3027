"""LeRobot dataset files, format v3.0 and v2.1 (dp3-training.md §3), read with pyarrow.

- `meta/info.json`: `codebase_version`, `fps`, `features`, `data_path`, `video_path` templates.
- Episode table: v3.0 `meta/episodes/chunk-*/file-*.parquet` (one row per episode: `episode_index`,
  `tasks`, `length`, `data/chunk_index|file_index`, `videos/<key>/chunk_index|file_index|
  from_timestamp`); v2.1 `meta/episodes.jsonl` (`episode_index`, `tasks`, `length`; one data and one
  video file per episode, chunk = episode_index // chunks_size).
- Task table: v3.0 `meta/tasks.parquet` (`task_index` + the task string, stored by pandas as the
  index column); v2.1 `meta/tasks.jsonl` (`task_index`, `task`).
- Frame rows: the data parquet filtered on `episode_index`, sorted by `frame_index`.
- Video frames: decoded by `_lerobot_video` (VideoSlice); image features stored in the data
  parquet are decoded here (ParquetImages).

Files come from a local folder or from a Hub dataset repository (`owner/name[@revision]`) through
huggingface_hub, one file at a time as an episode needs it (cached; `HF_HUB_OFFLINE=1` reads the
cache only). Every error is a SourceError naming the file, the episode and the field.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from appf.schemas import LazyFrames, SourceError

SUPPORTED_VERSIONS = ("v2.1", "v3.0")
INFO_KEYS = ("codebase_version", "fps", "features", "data_path")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

DownloadFn = Callable[..., str]


# ----------------------------------------------------------------------------------------------
# Where files come from


class DatasetFiles:
    """Relative path -> local file: a folder, or a Hub dataset repo fetched file by file into
    huggingface_hub's cache. Picklable (holds names only); `download` / `snapshot` default to
    huggingface_hub.hf_hub_download / snapshot_download."""

    def __init__(self, spec: str, download: DownloadFn | None = None, snapshot: DownloadFn | None = None):
        self.spec = str(spec)
        self.root: Path | None = Path(spec) if Path(spec).is_dir() else None
        self.repo_id = self.revision = None
        if self.root is None:
            if not _REPO_ID.match(self.spec) or self.spec.startswith((".", "/")):
                raise SourceError("input is neither an existing folder nor a Hub dataset id "
                                  "owner/name[@revision]; check the path", path=self.spec, field="input")
            self.repo_id, _, rev = self.spec.partition("@")
            self.revision = rev or None
        self.download, self.snapshot = download, snapshot

    def describe(self, rel: str) -> str:
        return str(self.root / rel) if self.root is not None else f"hf://datasets/{self.repo_id}/{rel}"

    def path(self, rel: str, episode_id: str = "", field: str = "") -> Path:
        """The local path of `rel`; SourceError when it is missing (locally or on the Hub)."""
        if self.root is not None:
            p = self.root / rel
            if not p.is_file():
                raise SourceError("file missing", path=str(p), episode_id=episode_id, field=field)
            return p
        return self._fetch(rel, episode_id, field)

    def _fetch(self, rel: str, episode_id: str, field: str) -> Path:
        from huggingface_hub import constants, errors, hf_hub_download

        offline = constants.is_offline_mode()
        try:
            return Path((self.download or hf_hub_download)(
                repo_id=self.repo_id, filename=rel, repo_type="dataset", revision=self.revision,
                local_files_only=offline))
        except errors.EntryNotFoundError as e:
            raise SourceError("file missing in the Hub repository", path=self.describe(rel),
                              episode_id=episode_id, field=field) from e
        except errors.LocalEntryNotFoundError as e:
            how = ("HF_HUB_OFFLINE is set and the file is not cached: run once online or "
                   f"`hf download {self.repo_id} --repo-type dataset`" if offline
                   else "the Hub could not be reached and the file is not cached")
            raise SourceError(how, path=self.describe(rel), episode_id=episode_id, field=field) from e
        except errors.RepositoryNotFoundError as e:
            raise SourceError("dataset not found on the Hub (or private: `hf auth login`)",
                              path=self.describe(rel), field="input") from e

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching `pattern`: a local glob, or on the Hub the matching files
        fetched into the cache (snapshot_download; offline: from the cache)."""
        root = self.root if self.root is not None else self._snapshot(pattern)
        return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern))

    def _snapshot(self, pattern: str) -> Path:
        from huggingface_hub import constants, errors, snapshot_download

        offline = constants.is_offline_mode()
        try:
            return Path((self.snapshot or snapshot_download)(
                repo_id=self.repo_id, repo_type="dataset", revision=self.revision,
                allow_patterns=[pattern], local_files_only=offline))
        except errors.LocalEntryNotFoundError as e:
            raise SourceError("HF_HUB_OFFLINE is set and the dataset's metadata is not cached: run once "
                              f"online or `hf download {self.repo_id} --repo-type dataset --include "
                              f"'{pattern}'`", path=self.describe(pattern), field="input") from e
        except errors.RepositoryNotFoundError as e:
            raise SourceError("dataset not found on the Hub (or private: `hf auth login`)",
                              path=self.describe(pattern), field="input") from e


# ----------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True)
class EpisodeEntry:
    """One episode of the episode table; paths are relative to the dataset root."""

    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: str
    videos: tuple[tuple[str, str, float], ...] = ()  # (feature key, mp4 path, from_timestamp s)

    def video(self, key: str) -> tuple[str, float]:
        return next((rel, from_s) for k, rel, from_s in self.videos if k == key)


def load_info(files: DatasetFiles) -> dict[str, Any]:
    """meta/info.json, checked for the keys a reader needs and a supported codebase version."""
    rel = "meta/info.json"
    p = files.path(rel, field="meta/info.json")
    try:
        info = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SourceError(f"cannot parse JSON: {e}", path=str(p), field="meta/info.json") from e
    for key in INFO_KEYS:
        if key not in info:
            raise SourceError("required key missing (is this a LeRobot dataset?)", path=str(p), field=key)
    if info["codebase_version"] not in SUPPORTED_VERSIONS:
        raise SourceError(f"codebase_version {info['codebase_version']!r} not supported; supported: "
                          f"{list(SUPPORTED_VERSIONS)} (convert v2.0 with lerobot's converters)",
                          path=str(p), field="codebase_version")
    if info["codebase_version"] == "v2.1" and "chunks_size" not in info:
        raise SourceError("required key missing for v2.1", path=str(p), field="chunks_size")
    return info


def _format(template: str, **values: Any) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise SourceError(f"path template {template!r} cannot be filled ({e!r})",
                          field="meta/info.json") from e


def load_episodes(files: DatasetFiles, info: dict[str, Any]) -> list[EpisodeEntry]:
    """The episode table, sorted by episode_index."""
    if info["codebase_version"] == "v2.1":
        entries = _episodes_v21(files, info)
    else:
        entries = _episodes_v30(files, info)
    return sorted(entries, key=lambda e: e.index)


def _video_keys(info: dict[str, Any]) -> list[str]:
    return [k for k, f in info["features"].items() if f.get("dtype") == "video"]


def _episodes_v21(files: DatasetFiles, info: dict[str, Any]) -> list[EpisodeEntry]:
    p = files.path("meta/episodes.jsonl", field="meta/episodes.jsonl")
    out = []
    for n, line in enumerate(p.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            index, length = int(row["episode_index"]), int(row["length"])
            tasks = tuple(str(t) for t in row.get("tasks", ()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SourceError(f"line {n + 1}: expected episode_index, length, tasks ({e!r})",
                              path=str(p), field="meta/episodes.jsonl") from e
        chunk = index // int(info["chunks_size"])
        data = _format(info["data_path"], episode_chunk=chunk, episode_index=index)
        videos = tuple((k, _format(info["video_path"], episode_chunk=chunk, video_key=k, episode_index=index),
                        0.0) for k in _video_keys(info))
        out.append(EpisodeEntry(index, length, tasks, data, videos))
    return out


def _episodes_v30(files: DatasetFiles, info: dict[str, Any]) -> list[EpisodeEntry]:
    import pyarrow.parquet as pq

    rels = files.glob("meta/episodes/*/*.parquet")
    if not rels:
        raise SourceError("no episode table (meta/episodes/chunk-*/file-*.parquet)",
                          path=files.describe("meta/episodes"), field="meta/episodes")
    vkeys = _video_keys(info)
    out = []
    for rel in rels:
        p = files.path(rel, field="meta/episodes")
        cols = ["episode_index", "tasks", "length", "data/chunk_index", "data/file_index"]
        cols += [f"videos/{k}/{c}" for k in vkeys for c in ("chunk_index", "file_index", "from_timestamp")]
        try:
            rows = pq.read_table(p, columns=cols).to_pylist()
        except Exception as e:  # pyarrow raises several types for missing columns / bad files
            raise SourceError(f"cannot read the episode table: {e}", path=str(p), field="meta/episodes") from e
        for r in rows:
            data = _format(info["data_path"], chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
            videos = tuple((k, _format(info["video_path"], video_key=k, chunk_index=r[f"videos/{k}/chunk_index"],
                                       file_index=r[f"videos/{k}/file_index"]),
                            float(r[f"videos/{k}/from_timestamp"])) for k in vkeys)
            out.append(EpisodeEntry(int(r["episode_index"]), int(r["length"]), tuple(r["tasks"] or ()),
                                    data, videos))
    return out


def load_tasks(files: DatasetFiles, info: dict[str, Any]) -> dict[int, str]:
    """task_index -> task text."""
    if info["codebase_version"] == "v2.1":
        p = files.path("meta/tasks.jsonl", field="meta/tasks.jsonl")
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        return {int(r["task_index"]): str(r["task"]) for r in rows}
    import pyarrow.parquet as pq

    p = files.path("meta/tasks.parquet", field="meta/tasks.parquet")
    table = pq.read_table(p)
    text_cols = [n for n in table.column_names if n != "task_index"]
    if "task_index" not in table.column_names or len(text_cols) != 1:
        raise SourceError(f"expected task_index and one task column, found {table.column_names}",
                          path=str(p), field="meta/tasks.parquet")
    return dict(zip(table.column("task_index").to_pylist(), map(str, table.column(text_cols[0]).to_pylist())))


# ----------------------------------------------------------------------------------------------
# Frames of one episode


def episode_rows(files: DatasetFiles, entry: EpisodeEntry, columns: list[str], episode_id: str
                 ) -> dict[str, Any]:
    """Columns of the episode's rows (sorted by frame_index), checked against the table's length."""
    import pyarrow.parquet as pq

    p = files.path(entry.data_file, episode_id, "data")
    wanted = sorted(set(columns) | {"episode_index", "frame_index"})
    try:
        table = pq.read_table(p, columns=wanted, filters=[("episode_index", "=", entry.index)])
    except Exception as e:  # missing column, corrupt file
        raise SourceError(f"cannot read frame rows: {e}", path=str(p), episode_id=episode_id,
                          field=",".join(wanted)) from e
    table = table.sort_by("frame_index")
    frame_index = np.asarray(table.column("frame_index").to_numpy())
    if len(frame_index) != entry.length or not np.array_equal(frame_index, np.arange(entry.length)):
        raise SourceError(f"the episode table says {entry.length} frames, the data file has "
                          f"{len(frame_index)} rows with frame_index {frame_index[:3].tolist()}...; "
                          "expected frame_index 0..length-1", path=str(p), episode_id=episode_id,
                          field="frame_index")
    return {c: table.column(c) for c in columns}


def numeric_column(column: Any, path: str, episode_id: str, field: str) -> np.ndarray:
    """A fixed-size list (or scalar) Arrow column -> float64 (T, D) (or (T, ...) nested)."""
    try:
        a = np.asarray(column.to_pylist(), dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SourceError(f"not a numeric feature ({e})", path=path, episode_id=episode_id, field=field) from e
    if a.ndim == 1:
        a = a[:, None]
    if not np.isfinite(a).all():
        raise SourceError("non-finite values", path=path, episode_id=episode_id, field=field)
    return a


class ParquetImages:
    """Picklable LazyFrames loader of an `image` feature (PNG/JPEG bytes in the data parquet):
    RGB uint8, or with `depth_scale_m` a single-channel image times the scale -> float32 metres."""

    def __init__(self, files: DatasetFiles, entry: EpisodeEntry, key: str, episode_id: str,
                 depth_scale_m: float | None = None):
        self.files, self.entry, self.key, self.episode_id = files, entry, key, episode_id
        self.depth_scale_m = depth_scale_m
        self._cells: list | None = None  # the episode's encoded images, read once; not pickled

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cells": None}

    def __call__(self, start: int, stop: int) -> np.ndarray:
        from PIL import Image

        if self._cells is None:
            self._cells = episode_rows(self.files, self.entry, [self.key], self.episode_id)[self.key].to_pylist()
        out = []
        for i, cell in enumerate(self._cells[start:stop]):
            try:
                with Image.open(io.BytesIO(cell["bytes"])) as im:
                    out.append(np.asarray(im) if self.depth_scale_m else np.asarray(im.convert("RGB")))
            except (OSError, TypeError, KeyError) as e:
                raise SourceError(f"cannot decode image of frame {start + i}: {e}",
                                  path=self.files.describe(self.entry.data_file),
                                  episode_id=self.episode_id, field=self.key) from e
        frames = np.stack(out)
        return frames.astype(np.float32) * np.float32(self.depth_scale_m) if self.depth_scale_m else frames


def lazy_parquet_images(files: DatasetFiles, entry: EpisodeEntry, key: str, episode_id: str,
                        depth_scale_m: float | None = None) -> LazyFrames:
    loader = ParquetImages(files, entry, key, episode_id, depth_scale_m)
    first = loader(0, 1)
    shape = (entry.length, *first.shape[1:])
    return LazyFrames(shape=shape, dtype=first.dtype, loader=loader,
                      description=f"{files.describe(entry.data_file)}:{key}")
