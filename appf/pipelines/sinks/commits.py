"""Shard commit markers and the run manifest.

A shard unit is (pointclouds/shard-k.zarr, sft/records-k.parquet, failures/failures-k.parquet).
Its marker `_commits/shard-k.json` is written last, atomically: a unit is committed exactly when
its marker exists. Resume skips committed shards; the manifest is built from the markers.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from appf import __version__
from appf.pipelines.sinks.atomic import write_text_atomic
from appf.schemas import MANIFEST_SHARD_SCHEMA, SCHEMA_VERSION

COMMITS_DIR = "_commits"
STAGING_DIR = "_staging"


@dataclass
class ShardCommit:
    shard: int
    path: str | None  # relative to the output dir; None when every episode of the shard failed
    sft_path: str
    failures_path: str
    episodes: int
    frames: int
    failures: int
    sft_records: int
    points: int
    checksum: str | None
    episode_ids: list[str] = field(default_factory=list)
    failed_episode_ids: list[str] = field(default_factory=list)
    failures_by_stage: dict[str, int] = field(default_factory=dict)


def commit_path(out: str | Path, shard: int) -> Path:
    return Path(out) / COMMITS_DIR / f"shard-{shard:05d}.json"


def write_commit(out: str | Path, commit: ShardCommit) -> None:
    write_text_atomic(commit_path(out, commit.shard),
                      json.dumps(asdict(commit), indent=1, sort_keys=True))


def read_commits(out: str | Path) -> dict[int, ShardCommit]:
    d = Path(out) / COMMITS_DIR
    commits = {}
    for f in sorted(d.glob("shard-*.json")) if d.is_dir() else []:
        c = ShardCommit(**json.loads(f.read_text()))
        commits[c.shard] = c
    return commits


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
    }


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> Path:
    return write_text_atomic(Path(out) / "manifest.json", json.dumps(manifest, indent=2))
