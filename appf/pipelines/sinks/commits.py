"""The run manifest, built from the commit markers (which `appf.storage.commits` owns)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from appf import __version__
from appf.schemas import MANIFEST_SHARD_SCHEMA, SCHEMA_VERSION
from appf.storage import Location, ShardCommit, layout, read_markers, write_marker
from appf.storage.layout import COMMITS_DIR, STAGING_DIR

__all__ = ["COMMITS_DIR", "STAGING_DIR", "ShardCommit", "commit_path", "manifest_dict",
           "read_commits", "write_commit", "write_manifest"]


def _loc(out: str | Path | Location) -> Location:
    return out if isinstance(out, Location) else Location(out)


def commit_path(out: str | Path | Location, shard: int) -> str:
    """URL (or absolute local path) of shard `shard`'s commit marker."""
    return _loc(out).url_of(layout.marker_key(shard))


def write_commit(out: str | Path | Location, commit: ShardCommit) -> None:
    write_marker(_loc(out), commit)


def read_commits(out: str | Path | Location) -> dict[int, ShardCommit]:
    return read_markers(_loc(out))


def manifest_dict(config: dict[str, Any], config_hash: str, sources: list[str],
                  commits: dict[int, ShardCommit], planned_episodes: int,
                  provenance: dict[str, Any]) -> dict[str, Any]:
    shards = [
        {k: getattr(c, k) for k in MANIFEST_SHARD_SCHEMA.names}
        for c in sorted(commits.values(), key=lambda c: c.shard)
    ]
    pa.Table.from_pylist(shards, schema=MANIFEST_SHARD_SCHEMA)  # type check of the entries
    by_stage: dict[str, int] = {}
    for c in commits.values():
        for stage, n in c.failures_by_stage.items():
            by_stage[stage] = by_stage.get(stage, 0) + n
    return {
        "schema_version": SCHEMA_VERSION,
        "code_version": __version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "config_hash": config_hash,
        "sources": sources,
        "provenance": provenance,
        "counts": {
            "planned_episodes": planned_episodes,
            "episodes": sum(c.episodes for c in commits.values()),
            "frames": sum(c.frames for c in commits.values()),
            "points": sum(c.points for c in commits.values()),
            "sft_records": sum(c.sft_records for c in commits.values()),
            "failures": sum(c.failures for c in commits.values()),
            "failures_by_stage": by_stage,
            "shards": len(commits),
        },
        "shards": shards,
        "action": action_summary(commits),
    }


def write_manifest(out: str | Path | Location, manifest: dict[str, Any]) -> str:
    """Write manifest.json whole; returns its URL (or absolute local path)."""
    loc = _loc(out)
    loc.write_text(layout.MANIFEST, json.dumps(manifest, indent=2, sort_keys=False))
    return loc.url_of(layout.MANIFEST)


def action_summary(commits: dict[int, ShardCommit]) -> dict[str, Any]:
    """`{"space", "dim"}` of the run's `data/action` (from the shards that hold episodes)."""
    landed = [c for c in commits.values() if c.episodes]
    spaces = sorted({c.action_space for c in landed} - {""})
    dims = sorted({c.action_dim for c in landed})
    return {"space": " | ".join(spaces) or "unknown", "dim": dims[0] if len(dims) == 1 else dims}
