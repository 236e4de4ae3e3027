"""The driver of a re-annotation job: plan, resume, run the Beam graph, write the manifest."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from appf import __version__
from appf.pipelines.config import JobConfig
from appf.pipelines.graph import NS, build_pipeline
from appf.pipelines.progress import ProgressMonitor, staged_counts
from appf.pipelines.sinks.commits import (
    STAGING_DIR, manifest_dict, read_commits, write_manifest,
)
from appf.pipelines.sinks.dataset_card import write_dataset_card
from appf.pipelines.sources import make_source
from appf.schemas import SCHEMA_VERSION, ConfigError

JOB_FILE = "_job.json"


@dataclass
class JobSummary:
    planned_episodes: int
    skipped_episodes: int  # in shards committed by an earlier run (resume)
    episodes: int
    frames: int
    points: int
    sft_records: int
    failures: int
    failures_by_stage: dict[str, int]
    shards: int
    seconds: float
    metrics: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        fails = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_stage.items())) or "none"
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (
            f"appf summary: {self.episodes}/{self.planned_episodes} episodes written "
            f"({self.skipped_episodes} already committed, skipped), {self.frames} frames, "
            f"{self.points} points, {self.sft_records} SFT records, {self.shards} shards; "
            f"failures {self.failures} ({fails}); {self.seconds:.1f} s ({rate:.1f} frames/s overall)"
        ) + (f"\nbeam metrics: {metrics}" if (metrics := ", ".join(
            f"{k}={v}" for k, v in sorted(self.metrics.items()))) else "")


def resolve_backends(cfg: JobConfig, info) -> tuple[str, str]:
    depth = info.default_depth if cfg.depth == "auto" else cfg.depth
    masks = info.default_masks if cfg.masks == "auto" else cfg.masks
    if cfg.mask_mode != "none" and masks == "none":
        raise ConfigError(f"mask_mode {cfg.mask_mode!r} needs a mask backend; source "
                          f"{cfg.source!r} has none by default, pass --masks")
    return depth, masks


def _check_same_job(out: Path, cfg: JobConfig) -> None:
    """Refuse to mix outputs of two different configs in one directory (resume safety)."""
    job_file = out / JOB_FILE
    if job_file.exists():
        previous = json.loads(job_file.read_text())
        if previous.get("config_hash") != cfg.config_hash():
            raise ConfigError(
                f"{out} holds the output of a job with another config (hash "
                f"{previous.get('config_hash')}, this job {cfg.config_hash()}); resume needs the "
                "same config: use a new --out, or delete the directory to start over")
    else:
        out.mkdir(parents=True, exist_ok=True)
        job_file.write_text(json.dumps({"config_hash": cfg.config_hash(),
                                        "config": cfg.output_dict()}, indent=1))


def _clean_uncommitted(out: Path, committed: set[int]) -> None:
    """Before any worker runs: drop temporaries and shards that no commit marker vouches for
    (an interrupted run's), so that workers may treat an existing shard as a duplicate's."""
    pcs = out / "pointclouds"
    for path in pcs.glob(".shard-*.tmp-*") if pcs.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)
    for path in pcs.glob("shard-*.zarr") if pcs.is_dir() else []:
        if int(path.name[len("shard-"):-len(".zarr")]) not in committed:
            shutil.rmtree(path)


def _query_counters(result) -> dict[str, int]:
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NS))["counters"]
    except Exception:  # noqa: BLE001 - some runners (Dask) report no metrics
        return {}
    totals: dict[str, int] = {}
    for c in counters:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    return totals


def run_job(cfg: JobConfig, options: PipelineOptions, stream: TextIO | None = None) -> JobSummary:
    """Run (or resume) the job described by `cfg` with Beam `options`."""
    stream = stream or sys.stderr
    start = time.monotonic()
    out = Path(cfg.out)
    source = make_source(cfg.source, cfg.source_options)
    depth_backend, mask_backend = resolve_backends(cfg, source.info)
    _check_same_job(out, cfg)
    refs = source.list_refs()
    committed = read_commits(out)
    _clean_uncommitted(out, set(committed))
    todo = [r for r in refs if cfg.shard_of(r.index) not in committed]
    skipped = len(refs) - len(todo)
    if skipped:
        print(f"[appf] resuming: {len(committed)} shard(s) already committed, "
              f"{skipped} episode(s) skipped, {len(todo)} to do", file=stream)
    attributes = {
        "appf_schema_version": SCHEMA_VERSION, "appf_code_version": __version__,
        "config_hash": cfg.config_hash(), "source": cfg.source,
        "depth_backend": depth_backend, "mask_backend": mask_backend,
        "crop_box": cfg.crop if cfg.crop is not None else source.info.default_crop,
        "n_points": cfg.n_points, "mask_mode": cfg.mask_mode, "fps_method": cfg.fps_method,
        "frame": "robot base", "point_cloud_channels": ["x", "y", "z", "r", "g", "b"],
        "state_layout": "per arm: tcp x, y, z (m), quat x, y, z, w, gripper (0 open, 1 closed)",
    }
    metrics: dict[str, int] = {}
    if todo:
        with ProgressMonitor(out, len(todo), staged_counts(out), cfg.progress_every_s, stream) as mon:
            p = beam.Pipeline(options=options)
            runner = str(options.view_as(StandardOptions).runner or "")
            build_pipeline(p, cfg, todo, depth_backend, mask_backend, source.info.default_crop,
                           attributes, run_inference="Dask" not in runner)
            result = p.run()
            result.wait_until_finish()
            metrics = _query_counters(result)
            if cfg.progress_every_s > 0:
                print(mon.line(), file=stream)
    commits = read_commits(out)
    missing = sorted({cfg.shard_of(r.index) for r in refs} - set(commits))
    if missing:
        raise RuntimeError(f"the pipeline finished but shard(s) {missing} have no commit marker; "
                           f"re-run the same command to resume")
    shutil.rmtree(out / STAGING_DIR, ignore_errors=True)
    provenance = {k: attributes[k] for k in ("depth_backend", "mask_backend", "crop_box",
                                             "n_points", "mask_mode", "fps_method")}
    manifest = manifest_dict(cfg.output_dict(), cfg.config_hash(), [cfg.source], commits,
                             len(refs), provenance)
    write_manifest(out, manifest)
    write_dataset_card(out, manifest)
    c = manifest["counts"]
    return JobSummary(
        planned_episodes=len(refs), skipped_episodes=skipped, episodes=c["episodes"],
        frames=c["frames"], points=c["points"], sft_records=c["sft_records"],
        failures=c["failures"], failures_by_stage=c["failures_by_stage"], shards=c["shards"],
        seconds=time.monotonic() - start, metrics=metrics)
