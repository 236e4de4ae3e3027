"""`appf validate OUT [--deep]`: trusts nothing, never crashes, names the file and field of every
problem. Works on local directories and object-store URLs (through `appf.storage`).

Checks: manifest.json structure (object, keys, types) and its counts; commit markers (parse, own
checksum) against the manifest (a shard listed but not committed, committed but not listed, fields
that disagree); the stored objects of each committed unit against its marker (missing, stray,
size; sha256 of tables and metadata, of every object with `deep`); Parquet tables (readable,
schema, row counts against marker and manifest); shard content (episode ends and ids against the
marker, array lengths, shapes; with `deep` every chunk is decoded); objects of uncommitted units;
the shard plan against the markers.
"""

from __future__ import annotations

from pathlib import Path

from appf.launch.validate_manifest import count_problems, read_manifest
from appf.launch.validate_units import (
    marker_self_check, marker_vs_manifest, objects_vs_marker, read_markers_checked,
    table_problems, uncommitted_objects,
)
from appf.launch.validate_zarr import shard_content_problems
from appf.pipelines.shard_plan import PLAN_FILE, plan_problems, read_plan
from appf.storage import Location, ShardCommit


def _guarded(what: str, check, *args) -> list[str]:
    """Run one check; an unexpected failure becomes a finding instead of a traceback."""
    try:
        return check(*args)
    except Exception as e:  # noqa: BLE001 - validate reports, never crashes
        return [f"{what}: cannot be checked ({type(e).__name__}: {str(e)[:200]})"]


def _unit_problems(loc: Location, commit: ShardCommit, entry: dict | None, n_points: int,
                   deep: bool) -> list[str]:
    marker = f"shard {commit.shard}"
    problems = _guarded(marker, marker_self_check, commit)
    problems += _guarded(marker, objects_vs_marker, loc, commit, deep)
    problems += _guarded(marker, table_problems, loc, commit, entry)
    if commit.path:
        problems += _guarded(f"shard {commit.path}", shard_content_problems, loc, commit,
                             n_points, deep)
    return problems


def _plan_problems(loc: Location, manifest: dict, commits: dict[int, ShardCommit]) -> list[str]:
    """The shard plan, the commit markers and the manifest agree (outputs older than the plan
    have none: nothing to check)."""
    plan = read_plan(loc)
    if plan is None:
        return []
    problems = plan_problems(plan, commits)
    planned = manifest.get("counts", {}).get("planned_episodes")
    if planned != len(plan.index_of):
        problems.append(f"manifest.json counts.planned_episodes: expected {len(plan.index_of)} "
                        f"({PLAN_FILE}), found {planned}")
    return problems


def _validate(loc: Location, deep: bool) -> list[str]:
    manifest, problems = read_manifest(loc)
    commits, marker_problems = read_markers_checked(loc)
    problems += marker_problems
    if manifest is None:
        return problems
    problems += count_problems(manifest)
    problems += marker_vs_manifest(commits, manifest["shards"])
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    n_points = config.get("n_points", 1024)
    entries = {e["shard"]: e for e in manifest["shards"]}
    for shard, commit in sorted(commits.items()):
        problems += _unit_problems(loc, commit, entries.get(shard), n_points, deep)
    problems += _guarded("uncommitted objects", uncommitted_objects, loc, set(commits))
    problems += _guarded(PLAN_FILE, _plan_problems, loc, manifest, commits)
    return problems


def validate_output(out: str | Path, deep: bool = False) -> list[str]:
    """Every problem found in an output (empty = valid). `deep` re-reads every object and chunk."""
    try:
        loc = Location(out)
    except Exception as e:  # noqa: BLE001 - e.g. an unknown URL scheme
        return [f"{out}: cannot open ({type(e).__name__}: {e})"]
    return _guarded(str(out), _validate, loc, deep)
