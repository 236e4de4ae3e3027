"""Shared helpers of the pipeline tests: small fast jobs."""

from __future__ import annotations

import json
from pathlib import Path

from appf.launch.runners import local_options
from appf.pipelines.config import JobConfig
from appf.pipelines.job import run_job

SMALL_SOURCE = {"episodes": 4, "steps": 16, "height": 96, "width": 128, "seed": 0}


def small_config(out: Path, **overrides) -> JobConfig:
    base = dict(source="synthetic", source_options=dict(SMALL_SOURCE), out=str(out),
                episodes_per_shard=2, n_points=128, progress_every_s=0)
    base.update(overrides)
    return JobConfig.from_dict(base)


def run_local(cfg: JobConfig):
    return run_job(cfg, local_options(1))


def shard_checksums(out: Path) -> dict[str, str]:
    m = json.loads((Path(out) / "manifest.json").read_text())
    return {s["path"]: s["checksum"] for s in m["shards"] if s["path"]}
