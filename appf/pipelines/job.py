"""The driver of a re-annotation job: plan, resume, run the Beam graph, write the manifest."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from appf import __version__
from appf.annotators.registry import mask_backend_unavailable, mask_provenance
from appf.pipelines.config import JobConfig
from appf.pipelines.graph import NS, build_pipeline
from appf.pipelines.progress import ProgressMonitor, staged_counts
from appf.pipelines.io_errors import RESUME_NOTE, OutputIOError, describe_io_error
from appf.pipelines.job_lease import object_store_lease
from appf.pipelines.job_lock import local_job_lock
from appf.pipelines.shard_plan import PlanUpdate, read_plan, update_plan, write_plan
from appf.pipelines.sinks.atomic import remove_stray_temps
from appf.pipelines.sinks.commits import manifest_dict, read_commits, write_manifest
from appf.pipelines.sinks.dataset_card import write_dataset_card, zarr2_hint
from appf.pipelines.sources import make_source
from appf.schemas import SCHEMA_VERSION, AppfError, ConfigError
from appf.storage import Location, clean_uncommitted, layout

JOB_FILE = layout.JOB_FILE
# where killed runs leave temporaries of control files (clean_uncommitted covers the shard units)
CONTROL_DIRS = (layout.COMMITS_DIR,)


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
    notes: list[str] = field(default_factory=list)  # one line each, e.g. how to enable masks

    def text(self) -> str:
        fails = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures_by_stage.items())) or "none"
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (
            f"appf summary: {self.episodes}/{self.planned_episodes} episodes written "
            f"({self.skipped_episodes} already committed, skipped), {self.frames} frames, "
            f"{self.points} points, {self.sft_records} SFT records, {self.shards} shards; "
            f"failures {self.failures} ({fails}); {self.seconds:.1f} s ({rate:.1f} frames/s overall)"
        ) + (f"\nbeam metrics: {metrics}" if (metrics := ", ".join(
            f"{k}={v}" for k, v in sorted(self.metrics.items()))) else "") + "".join(
            f"\n{note}" for note in self.notes)


def resolve_backends(cfg: JobConfig, info, notes: list[str] | None = None) -> tuple[str, str]:
    """(depth, masks) backends. A learned mask backend whose code or weights are missing here
    fails the job up front when asked for by name (or when mask_mode needs it); as the source's
    default (masks auto) it turns masks off and appends one line on how to enable them to
    `notes` (printed with the summary)."""
    depth = info.default_depth if cfg.depth == "auto" else cfg.depth
    masks = info.default_masks if cfg.masks == "auto" else cfg.masks
    reason = mask_backend_unavailable(masks) if masks != "none" else None
    if reason and (cfg.masks != "auto" or cfg.mask_mode != "none"):
        raise ConfigError(f"mask backend {masks!r} cannot run here: {reason}")
    if reason:
        if notes is not None:
            notes.append(f"masks off: {cfg.source!r}'s default mask backend {masks!r} is not "
                         f"configured here; to enable masks: {reason}")
        masks = "none"
    if cfg.mask_mode != "none" and masks == "none":
        raise ConfigError(f"mask_mode {cfg.mask_mode!r} needs a mask backend; source "
                          f"{cfg.source!r} has none by default, pass --masks")
    return depth, masks


def _read_job_file(out: Location, has_output: bool) -> dict | None:
    """The recorded job, or None when there is none (or an unreadable one that nothing committed
    depends on: the leftover of a start that failed, e.g. on a full disk, before atomic writes)."""
    job_file = out.url_of(JOB_FILE)
    if not out.exists(JOB_FILE):
        return None
    try:
        previous = json.loads(out.read_text(JOB_FILE))
        if not isinstance(previous, dict):
            raise ValueError(f"expected a JSON object, found {type(previous).__name__}")
        return previous
    except ValueError as e:
        if has_output:
            raise ConfigError(
                f"{job_file} is unreadable ({e}) but the output holds committed shards; restore "
                "the file from a backup, or start over in a new --out") from e
        return None


def _check_same_job(out: Location, cfg: JobConfig) -> None:
    """Refuse to mix outputs of two different configs in one directory (resume safety)."""
    previous = _read_job_file(out, has_output=bool(read_commits(out)))
    if previous is None:
        out.write_text(JOB_FILE, json.dumps({"config_hash": cfg.config_hash(),
                                             "config": cfg.output_dict()}, indent=1))
    elif previous.get("config_hash") != cfg.config_hash():
        raise ConfigError(
            f"{out.url} holds the output of a job with another config (hash "
            f"{previous.get('config_hash')}, this job {cfg.config_hash()}); resume needs the "
            "same config: use a new --out, or delete the directory to start over")


def _clean_uncommitted(out: Location, committed: set[int]) -> None:
    """Before any worker runs: drop temporaries of killed runs and the objects of shard units that
    no commit marker vouches for (an interrupted run's), so that workers may treat an existing
    store as a duplicate attempt's."""
    if out.is_local:
        remove_stray_temps(out.local_path(), CONTROL_DIRS)
    clean_uncommitted(out, committed)


def _plan_job(out: Location, cfg: JobConfig, source, stream: TextIO) -> PlanUpdate:
    """Extend the persisted shard plan with this run's input and write it before any work."""
    committed = set(read_commits(out))
    update = update_plan(read_plan(out), source.list_refs(), cfg.episodes_per_shard,
                         committed, out.url)
    write_plan(out, update.plan)
    if update.added and committed:
        print(f"[appf] {len(update.added)} new episode(s) planned into shard(s) "
              f"{sorted({update.plan.shard_of(k) for k in update.added})}", file=stream)
    if update.left_committed:
        print(f"[appf] {len(update.left_committed)} planned episode(s) are no longer in the "
              "input; their committed output stays", file=stream)
    return update


def _query_counters(result) -> dict[str, int]:
    try:
        counters = result.metrics().query(MetricsFilter().with_namespace(NS))["counters"]
    except Exception:  # noqa: BLE001 - some runners (Dask) report no metrics
        return {}
    totals: dict[str, int] = {}
    for c in counters:
        totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(c.committed or c.attempted or 0)
    return totals


def _shard_attributes(cfg: JobConfig, source, depth_backend: str, mask_backend: str) -> dict:
    return {
        "appf_schema_version": SCHEMA_VERSION, "appf_code_version": __version__,
        "config_hash": cfg.config_hash(), "source": cfg.source,
        "depth_backend": depth_backend, "mask_backend": mask_backend,
        "mask_provenance": mask_provenance(mask_backend), "store_masks": cfg.store_masks,
        "crop_box": cfg.crop if cfg.crop is not None else source.info.default_crop,
        "n_points": cfg.n_points, "mask_mode": cfg.mask_mode, "fps_method": cfg.fps_method,
        "frame": "robot base", "point_cloud_channels": ["x", "y", "z", "r", "g", "b"],
        "state_layout": "per arm: tcp x, y, z (m), quat x, y, z, w, gripper (0 open, 1 closed)",
    }


def _run_pipeline(cfg: JobConfig, options: PipelineOptions, todo: list, source, backends,
                  attributes: dict, stream: TextIO) -> dict[str, int]:
    out = Location(cfg.out)
    with ProgressMonitor(out, len(todo), staged_counts(out), cfg.progress_every_s, stream) as mon:
        p = beam.Pipeline(options=options)
        runner = str(options.view_as(StandardOptions).runner or "")
        build_pipeline(p, cfg, todo, *backends, source.info.default_crop,
                       attributes, run_inference="Dask" not in runner)
        result = p.run()
        result.wait_until_finish()
        if cfg.progress_every_s > 0:
            print(mon.line(), file=stream)
        return _query_counters(result)


def _finish(out: Location, cfg: JobConfig, plan, attributes: dict) -> dict:
    """Check that every planned shard is committed; write the manifest and the dataset card."""
    commits = read_commits(out)
    missing = sorted(set(plan.shards()) - set(commits))
    if missing:
        raise RuntimeError(f"the pipeline finished but shard(s) {missing} have no commit marker; "
                           f"re-run the same command to resume")
    out.delete_tree(layout.STAGING_DIR)
    provenance = {k: attributes[k] for k in ("depth_backend", "mask_backend", "mask_provenance",
                                             "store_masks", "crop_box", "n_points", "mask_mode",
                                             "fps_method")}
    manifest = manifest_dict(cfg.output_dict(), cfg.config_hash(), [cfg.source], commits,
                             len(plan.index_of), provenance)
    write_manifest(out, manifest)
    write_dataset_card(out, manifest)
    return manifest


def _run_locked(cfg: JobConfig, options: PipelineOptions, source, backends,
                stream: TextIO) -> JobSummary:
    start = time.monotonic()
    out = Location(cfg.out)
    _check_same_job(out, cfg)
    committed = read_commits(out)
    _clean_uncommitted(out, set(committed))
    update = _plan_job(out, cfg, source, stream)
    todo = [r for r in update.refs if cfg.shard_of(r.index) not in committed]
    skipped = len(update.refs) - len(todo)
    if skipped:
        print(f"[appf] resuming: {len(committed)} shard(s) already committed, "
              f"{skipped} episode(s) skipped, {len(todo)} to do", file=stream)
    attributes = _shard_attributes(cfg, source, *backends)
    metrics = _run_pipeline(cfg, options, todo, source, backends, attributes, stream) if todo else {}
    c = _finish(out, cfg, update.plan, attributes)["counts"]
    return JobSummary(
        planned_episodes=c["planned_episodes"], skipped_episodes=skipped, episodes=c["episodes"],
        frames=c["frames"], points=c["points"], sft_records=c["sft_records"],
        failures=c["failures"], failures_by_stage=c["failures_by_stage"], shards=c["shards"],
        seconds=time.monotonic() - start, metrics=metrics,
        notes=[zarr2_hint(cfg.zarr_format, cfg.out)] if c["episodes"] and cfg.zarr_format == 3 else [])


def job_lock(out: Location, break_lock: bool = False):
    """One job per output: an OS lock locally, a lease object on object stores."""
    if out.is_local:
        out.local_path().mkdir(parents=True, exist_ok=True)
        return local_job_lock(out.local_path())  # the kernel drops it when the holder dies
    return object_store_lease(out, break_lock=break_lock)


def run_job(cfg: JobConfig, options: PipelineOptions, stream: TextIO | None = None,
            break_lock: bool = False) -> JobSummary:
    """Run (or resume) the job described by `cfg` with Beam `options`, holding the output's lock
    (`break_lock`: take over an object-store lease whose heartbeat has stopped).

    An I/O failure anywhere (driver or worker) ends the job with an OutputIOError of one line.
    """
    stream = stream or sys.stderr
    source = make_source(cfg.source, cfg.source_options)
    notes: list[str] = []
    backends = resolve_backends(cfg, source.info, notes)
    out = Location(cfg.out)
    try:
        with job_lock(out, break_lock):
            summary = _run_locked(cfg, options, source, backends, stream)
            summary.notes.extend(notes)
            return summary
    except AppfError:
        raise
    except Exception as e:
        if line := describe_io_error(e):
            raise OutputIOError(f"the job on {out.url} stopped: {line}; {RESUME_NOTE}") from e
        raise
