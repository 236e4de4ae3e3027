"""`appf validate DIR`: schema, shapes, episode_ends and checksums of an output directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from appf.pipelines.processed import STEP_ARRAYS
from appf.pipelines.sinks.zarr_shards import open_shard
from appf.pipelines.shard_plan import PLAN_FILE, plan_problems, read_plan
from appf.pipelines.sinks.commits import read_commits
from appf.schemas import FAILURE_SCHEMA, SCHEMA_VERSION, SFT_SCHEMA
from appf.storage import Location, objects_digest
from appf.storage.commits import stored_objects


def _check_shard(out: Path, entry: dict, n_points: int) -> list[str]:
    rel = entry["path"]
    where = f"shard {rel}"
    path = out / rel
    if not path.is_dir():
        return [f"{where}: missing (listed in manifest.json)"]
    problems = []
    loc = Location(out)
    if entry.get("checksum") and objects_digest(stored_objects(loc, rel), rel + "/") != entry["checksum"]:
        problems.append(f"{where}: checksum mismatch (files changed or corrupted since writing)")
    try:
        root = open_shard(path)
        ends = np.asarray(root["meta/episode_ends"][:])
        ids = np.asarray(root["meta/episode_ids"][:])
    except Exception as e:  # noqa: BLE001
        return problems + [f"{where}: cannot open meta/episode_ends or meta/episode_ids: {e}"]
    if ends.dtype != np.int64:
        problems.append(f"{where} field meta/episode_ends: expected int64, found {ends.dtype}")
    if len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        problems.append(f"{where} field meta/episode_ends: expected strictly increasing positive "
                        f"cumulative ends, found {ends.tolist()[:10]}")
    if len(ids) != len(ends) or len(ends) != entry["episodes"]:
        problems.append(f"{where} field meta/episode_ids: {len(ids)} ids, {len(ends)} ends, "
                        f"manifest says {entry['episodes']} episodes")
    T = int(ends[-1]) if len(ends) else 0
    if T != entry["frames"]:
        problems.append(f"{where} field meta/episode_ends: last end {T} != manifest frames {entry['frames']}")
    for key in STEP_ARRAYS:
        name = f"data/{key}"
        try:
            arr = root[name]
        except KeyError:
            problems.append(f"{where} field {name}: missing")
            continue
        if arr.shape[0] != T:
            problems.append(f"{where} field {name}: {arr.shape[0]} rows, expected {T} (episode_ends[-1])")
    try:
        pc = root["data/point_cloud"]
        if pc.ndim != 3 or pc.shape[1:] != (n_points, 6) or pc.dtype != np.float32:
            problems.append(f"{where} field data/point_cloud: expected (T, {n_points}, 6) float32, "
                            f"found {pc.shape} {pc.dtype}")
        elif not np.isfinite(pc[:]).all():
            problems.append(f"{where} field data/point_cloud: NaN/inf values")
        real = root["data/point_count_real"][:]
        if np.any(real < 1) or np.any(real > n_points):
            problems.append(f"{where} field data/point_count_real: values outside [1, {n_points}]")
    except KeyError:
        pass
    if root.attrs.get("appf_schema_version") != SCHEMA_VERSION:
        problems.append(f"{where} attribute appf_schema_version: expected {SCHEMA_VERSION}, "
                        f"found {root.attrs.get('appf_schema_version')}")
    return problems


def _check_table(out: Path, rel: str, schema) -> list[str]:
    path = out / rel
    if not path.is_file():
        return [f"table {rel}: missing"]
    try:
        found = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001
        return [f"table {rel}: unreadable parquet: {e}"]
    if not found.remove_metadata().equals(schema.remove_metadata()):
        return [f"table {rel}: schema differs from appf's: found {found.names}, expected {schema.names}"]
    return []


def validate_output(out: str | Path) -> list[str]:
    """Every problem found in an output directory (empty = valid)."""
    out = Path(out)
    mpath = out / "manifest.json"
    if not mpath.is_file():
        return [f"{mpath}: missing; is {out} an appf output directory (or did the job not finish)?"]
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as e:
        return [f"{mpath}: not valid JSON: {e}"]
    problems = []
    if manifest.get("schema_version") != SCHEMA_VERSION:
        problems.append(f"manifest.json schema_version: expected {SCHEMA_VERSION}, "
                        f"found {manifest.get('schema_version')}")
    n_points = manifest.get("config", {}).get("n_points", 1024)
    frames = 0
    for entry in manifest.get("shards", []):
        if entry.get("path"):
            problems += _check_shard(out, entry, n_points)
        problems += _check_table(out, entry["sft_path"], SFT_SCHEMA)
        problems += _check_table(out, entry["failures_path"], FAILURE_SCHEMA)
        frames += entry.get("frames", 0)
    if frames != manifest.get("counts", {}).get("frames"):
        problems.append(f"manifest.json counts.frames {manifest.get('counts', {}).get('frames')} != "
                        f"sum over shards {frames}")
    return problems + _check_plan(out, manifest)


def _check_plan(out: Path, manifest: dict) -> list[str]:
    """The shard plan, the commit markers and the manifest agree (outputs older than the plan
    have none: nothing to check)."""
    try:
        plan = read_plan(out)
        if plan is None:
            return []
        problems = plan_problems(plan, read_commits(out))
    except Exception as e:  # noqa: BLE001 - validate reports, never crashes
        return [f"{out / PLAN_FILE}: cannot check the plan: {e}"]
    planned = manifest.get("counts", {}).get("planned_episodes")
    if planned != len(plan.index_of):
        problems.append(f"manifest.json counts.planned_episodes: expected {len(plan.index_of)} "
                        f"({PLAN_FILE}), found {planned}")
    return problems
