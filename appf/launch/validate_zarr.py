"""`appf validate`, part 3: the content of one point-cloud shard (replay-buffer layout): episode
ends and ids against the marker, array lengths, point-cloud shape; with `deep`, every chunk of
every array is decoded (a corrupt chunk is named by array and frame range, never a traceback)."""

from __future__ import annotations

import numpy as np
import zarr

from appf.pipelines.processed import STEP_ARRAYS
from appf.schemas import SCHEMA_VERSION
from appf.storage import Location, ShardCommit, open_group

_BULK = ("point_cloud", "point_label")  # read only with --deep


def _read(arr: zarr.Array, where: str, lo: int | None = None, hi: int | None = None):
    """Decode frames [lo, hi) of `arr`; (data, None) or (None, finding)."""
    try:
        return np.asarray(arr[lo:hi] if lo is not None else arr[...]), None
    except Exception as e:  # noqa: BLE001 - a corrupt chunk is a finding
        span = f" frames {lo}-{hi - 1}" if lo is not None else ""
        return None, f"{where}{span}: cannot decode ({type(e).__name__}: {str(e)[:120]}); chunk corrupt"


def _decode_all_chunks(arr: zarr.Array, where: str) -> tuple[np.ndarray | None, list[str]]:
    step = max(1, arr.chunks[0]) if arr.ndim else 1
    parts, problems = [], []
    for lo in range(0, arr.shape[0] if arr.ndim else 1, step):
        data, bad = _read(arr, where, lo, min(lo + step, arr.shape[0]))
        problems += [bad] if bad else []
        parts.append(data)
    if problems or not parts:
        return None, problems
    return np.concatenate(parts), []


def _meta_problems(root: zarr.Group, where: str, commit: ShardCommit) -> tuple[int | None, list[str]]:
    ends, bad = _read(root["meta/episode_ends"], f"{where} field meta/episode_ends")
    if bad:
        return None, [bad]
    ids, bad = _read(root["meta/episode_ids"], f"{where} field meta/episode_ids")
    problems = [bad] if bad else []
    if ends.dtype != np.int64:
        problems.append(f"{where} field meta/episode_ends: expected int64, found {ends.dtype}")
    if ends.ndim != 1 or len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        problems.append(f"{where} field meta/episode_ends: expected strictly increasing positive "
                        f"cumulative ends, found {ends.ravel().tolist()[:10]}")
        return None, problems
    if len(ends) != commit.episodes:
        problems.append(f"{where} field meta/episode_ends: {len(ends)} episodes, marker says "
                        f"{commit.episodes}")
    if ids is not None and [str(x) for x in ids] != list(commit.episode_ids):
        problems.append(f"{where} field meta/episode_ids: {[str(x) for x in ids][:4]}..., marker "
                        f"says {list(commit.episode_ids)[:4]}...")
    T = int(ends[-1])
    if T != commit.frames:
        problems.append(f"{where} field meta/episode_ends: last end {T}, marker says {commit.frames} frames")
    return T, problems


def _array_problems(root: zarr.Group, where: str, key: str, T: int, n_points: int,
                    deep: bool) -> list[str]:
    name = f"data/{key}"
    try:
        arr = root[name]
    except KeyError:
        return [f"{where} field {name}: missing"]
    if arr.shape[0] != T:
        return [f"{where} field {name}: {arr.shape[0]} rows, expected {T} (episode_ends[-1])"]
    if key == "point_cloud" and (arr.ndim != 3 or arr.shape[1:] != (n_points, 6)
                                 or arr.dtype != np.float32):
        return [f"{where} field {name}: expected (T, {n_points}, 6) float32, found "
                f"{arr.shape} {arr.dtype}"]
    if key in _BULK and not deep:
        return []
    data, problems = _decode_all_chunks(arr, f"{where} field {name}")
    if data is None:
        return problems
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        problems.append(f"{where} field {name}: NaN/inf values")
    if key == "point_count_real" and (np.any(data < 1) or np.any(data > n_points)):
        problems.append(f"{where} field {name}: values outside [1, {n_points}]")
    return problems


def _lengths(root: zarr.Group) -> dict[str, int]:
    found = {}
    for key in STEP_ARRAYS:
        try:
            found[key] = int(root[f"data/{key}"].shape[0])
        except (KeyError, IndexError):
            pass
    return found


def shard_content_problems(loc: Location, commit: ShardCommit, n_points: int, deep: bool) -> list[str]:
    where = f"shard {commit.path}"
    try:
        root = open_group(loc, commit.path)
        root["meta/episode_ends"], root["meta/episode_ids"]
    except Exception as e:  # noqa: BLE001 - unreadable metadata is a finding
        return [f"{where}: cannot open the store or meta/episode_ends, meta/episode_ids "
                f"({type(e).__name__}: {str(e)[:160]})"]
    T, problems = _meta_problems(root, where, commit)
    if T is None:
        return problems
    lengths = _lengths(root)
    if len(set(lengths.values())) == 1 and len(lengths) == len(STEP_ARRAYS) and T not in lengths.values():
        problems.append(f"{where} fields data/*: every array has {lengths[STEP_ARRAYS[0]]} rows, "
                        f"meta/episode_ends ends at {T}")
        T = lengths[STEP_ARRAYS[0]]  # the arrays agree with each other: check their content
    for key in STEP_ARRAYS:
        problems += _array_problems(root, where, key, T, n_points, deep)
    if root.attrs.get("appf_schema_version") != SCHEMA_VERSION:
        problems.append(f"{where} attribute appf_schema_version: expected {SCHEMA_VERSION}, "
                        f"found {root.attrs.get('appf_schema_version')}")
    return problems
