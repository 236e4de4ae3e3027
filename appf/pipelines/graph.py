"""The Beam graph (DESIGN §3), thin wrappers around the pure stages.

Model-free backends (ground truth, classical depth): refs -> Reshuffle -> one fused step (read,
depth, masks, point clouds, keyframes, SFT rows, staged per episode) -> GroupByKey(shard) -> one
writer per shard -> commit marker. Only small descriptors leave the fused step, and no torch or
RunInference is imported.
Learned backends (or `model_copies`): read -> RunInference(depth) -> RunInference(masks) -> point
clouds ... as above; RunInference batches episodes so frames of several episodes share a model
batch. On the DaskRunner (whose translation of RunInference drops elements) the learned path is
the fused step too, with the model loaded once per worker process.
A failed episode is an `EpisodeWork` that carries its `FailedEpisode` through the later stages
untouched and lands in its shard's failures table. The chain is linear (no tagged outputs), which every runner,
the DaskRunner included, executes.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from appf.annotators.registry import make_depth_annotator, make_masker
from appf.pipelines.config import JobConfig
from appf.pipelines.episode_steps import (
    depth_step, loaded_depth_annotator, loaded_masker, masks_step, read_step,
)
from appf.pipelines.process_episode import StageError, process_episode
from appf.pipelines.processed import (
    FailedEpisode, StagedEpisode, action_semantics, load_staged, save_staged,
)
from appf.pipelines.sinks.tables import failures_table, parquet_bytes
from appf.pipelines.sinks.zarr_shards import encode_shard
from appf.pipelines.sources import make_source
from appf.pipelines.work import EpisodeWork
from appf.schemas import SFT_SCHEMA, EpisodeRef
from appf.storage import (
    Location, ShardCommit, layout, object_entry, objects_digest, write_marker, write_store_objects,
)

NS = "appf"


def _count(name: str, n: int = 1) -> None:
    Metrics.counter(NS, name).inc(n)


def count_pass(work: EpisodeWork, stage: str) -> None:
    """Count the frames a pass annotated, or the episode if it failed in this pass."""
    if work.failure is not None:
        if work.failure.stage == stage:
            _count(f"failures_{stage}")
    else:
        _count(f"frames_{stage}", work.episode.num_steps)


def stage_episode(el: EpisodeWork, cfg: JobConfig, out: Location, default_crop,
                  provenance: dict[str, Any]) -> tuple[int, StagedEpisode | FailedEpisode]:
    """Point clouds + keyframes + SFT rows of one episode, staged under the output location;
    returns (shard, descriptor): a failure record when this or an earlier stage failed."""
    if el.failure is None:
        try:
            pe = process_episode(el.episode, el.labels, cfg, el.ref.index, default_crop, provenance)
        except StageError as e:
            _count(f"failures_{e.stage}")
            el = el.fail(e.stage, e.error)
        else:
            path = layout.staged_key(el.shard, pe.index, pe.num_frames)
            save_staged(pe, out, path)
            _count("episodes_processed")
            _count("frames_processed", pe.num_frames)
            return el.shard, StagedEpisode(el.shard, pe.index, pe.dataset, pe.episode_id,
                                           str(path), pe.num_frames, pe.num_points)
    failure = el.failure
    out.write_text(layout.staged_key(failure.shard, failure.index, 0, failed=True),
                   json.dumps(failure.__dict__))
    return failure.shard, failure


class ReadEpisode(beam.DoFn):
    """Source read + validation; the source object is built once per worker."""

    def __init__(self, cfg: JobConfig):
        self.cfg = cfg
        self.source = None

    def setup(self) -> None:
        self.source = make_source(self.cfg.source, self.cfg.source_options)

    def process(self, ref: EpisodeRef) -> Iterable[EpisodeWork]:
        work = read_step(self.source, ref, self.cfg.shard_of(ref.index))
        _count("failures_read" if work.failure else "episodes_read")
        yield work


class CountPass(beam.DoFn):
    """Counts the frames a pass annotated and the episodes that failed in it."""

    def __init__(self, stage: str):
        self.stage = stage

    def process(self, el):
        count_pass(el, self.stage)
        yield el


class ProcessAndStage(beam.DoFn):
    """Point clouds + keyframes + SFT rows of one episode, staged under the output location;
    emits (shard, descriptor)."""

    def __init__(self, cfg: JobConfig, default_crop, provenance: dict[str, Any]):
        self.cfg, self.default_crop, self.provenance = cfg, default_crop, provenance
        self.out: Location | None = None

    def setup(self) -> None:
        self.out = Location(self.cfg.out)

    def process(self, el):
        yield stage_episode(el, self.cfg, self.out, self.default_crop, self.provenance)


class AnnotateAndStage(beam.DoFn):
    """The fused per-episode step: read, depth, masks, point clouds, SFT rows, staging; emits only
    (shard, descriptor). Annotators are loaded once per process."""

    def __init__(self, cfg: JobConfig, depth_backend: str, mask_backend: str, default_crop,
                 provenance: dict[str, Any]):
        self.cfg, self.default_crop, self.provenance = cfg, default_crop, provenance
        self.depth_backend, self.mask_backend = depth_backend, mask_backend
        self.source = self.depth = self.masker = self.out = None

    def setup(self) -> None:
        self.out = Location(self.cfg.out)
        self.source = make_source(self.cfg.source, self.cfg.source_options)
        self.depth = loaded_depth_annotator(self.depth_backend)
        if self.mask_backend != "none":
            self.masker = loaded_masker(self.mask_backend)

    def process(self, ref: EpisodeRef):
        work = read_step(self.source, ref, self.cfg.shard_of(ref.index))
        _count("failures_read" if work.failure else "episodes_read")
        work = depth_step(work, self.depth, self.cfg.batch_frames)
        count_pass(work, "depth")
        if self.masker is not None:
            work = masks_step(work, self.masker)
            count_pass(work, "masks")
        yield stage_episode(work, self.cfg, self.out, self.default_crop, self.provenance)


class WriteShard(beam.DoFn):
    """The one writer of a shard unit: zarr store, SFT records, failures table, then the commit
    marker listing every object with its checksum (appf.storage.commits)."""

    def __init__(self, cfg: JobConfig, attributes: dict[str, Any]):
        self.cfg, self.attributes = cfg, attributes
        self.out: Location | None = None

    def setup(self) -> None:
        self.out = Location(self.cfg.out)

    def process(self, keyed) -> Iterable[ShardCommit]:
        shard, items = keyed
        out = self.out
        if out.exists(layout.marker_key(shard)):  # a retried bundle: already committed
            return
        # A runner may deliver a duplicate of an element (retries, recomputation): keep one.
        items = sorted({(type(x).__name__, x.index): x for x in items}.values(),
                       key=lambda x: x.index)
        ok = [x for x in items if isinstance(x, StagedEpisode)]
        written = {x.index for x in ok}  # an attempt that succeeded wins over one that failed
        failed = [x for x in items if isinstance(x, FailedEpisode) and x.index not in written]
        episodes = [load_staged(out, x.path) for x in ok]
        semantics = action_semantics(episodes) if episodes else {}
        objects = self._write_store(shard, episodes, semantics) if episodes else {}
        sft = pa.concat_tables([e.sft for e in episodes]) if episodes else SFT_SCHEMA.empty_table()
        for key, table in ((layout.sft_key(shard), sft),
                           (layout.failures_key(shard), failures_table(failed))):
            data = parquet_bytes(table)
            out.write_bytes(key, data)
            objects[key] = object_entry(data)
        by_stage: dict[str, int] = {}
        for f in failed:
            by_stage[f.stage] = by_stage.get(f.stage, 0) + 1
        zarr_key = layout.shard_zarr_key(shard) if episodes else None
        commit = ShardCommit(
            shard=shard, path=zarr_key, sft_path=layout.sft_key(shard),
            failures_path=layout.failures_key(shard), episodes=len(episodes),
            frames=sum(e.num_frames for e in episodes), failures=len(failed),
            sft_records=sft.num_rows, points=sum(e.num_points for e in episodes),
            checksum=objects_digest(objects, zarr_key + "/") if zarr_key else None,
            episode_ids=[e.episode_id for e in episodes],
            failed_episode_ids=[f.episode_id for f in failed], failures_by_stage=by_stage,
            objects=objects, **semantics)
        write_marker(out, commit)  # last: the commit point; staging is removed by the driver
        _count("shards_written")
        _count("episodes_written", commit.episodes)
        _count("points_written", commit.points)
        yield commit

    def _write_store(self, shard: int, episodes, semantics: dict) -> dict[str, dict]:
        """Write the shard's zarr store; returns its objects' entries (key -> sha256, bytes)."""
        key = layout.shard_zarr_key(shard)
        attrs = {**self.attributes, "shard": shard, **semantics,
                 "episode_provenance": {e.episode_id: e.provenance for e in episodes}}
        encoded = encode_shard(episodes, attrs, self.cfg.zarr_format, self.cfg.chunk_frames)
        try:
            write_store_objects(self.out, key, encoded)
        except FileExistsError:
            # A concurrent attempt renamed its complete, identical store into place first
            # (the driver removes uncommitted stores before a run, so no stale one is here).
            _count("duplicate_shard_attempts")
        return {f"{key}/{k}": object_entry(v) for k, v in sorted(encoded.items())}


def needs_runinference(cfg: JobConfig, depth_backend: str, mask_backend: str) -> bool:
    """True when a backend has weights (a model worth batching across episodes) or the job asks
    for shared model copies: only then does the graph use RunInference (and import torch)."""
    has_weights = bool(make_depth_annotator(depth_backend).weights_id) or (
        mask_backend != "none" and bool(make_masker(mask_backend).weights_id))
    return has_weights or bool(cfg.model_copies)


def _learned_passes(work, cfg: JobConfig, depth_backend: str, mask_backend: str):
    from appf.pipelines.inference import DepthHandler, MaskHandler, annotation_pass  # torch

    per_batch = cfg.episodes_per_batch
    depth = DepthHandler(depth_backend, cfg.batch_frames, cfg.model_copies, per_batch)
    work = (work | "Depth" >> annotation_pass(depth)
            | "CountDepth" >> beam.ParDo(CountPass("depth")).with_output_types(EpisodeWork))
    if mask_backend == "none":
        return work
    masks = MaskHandler(mask_backend, model_copies=cfg.model_copies, episodes_per_batch=per_batch)
    return (work | "Masks" >> annotation_pass(masks)
            | "CountMasks" >> beam.ParDo(CountPass("masks")).with_output_types(EpisodeWork))


def build_pipeline(p: beam.Pipeline, cfg: JobConfig, refs: list[EpisodeRef], depth_backend: str,
                   mask_backend: str, default_crop, attributes: dict[str, Any],
                   run_inference: bool = True):
    """Attach the job's transforms to `p`; returns the PCollection of shard commits.

    `run_inference=False` (runners whose RunInference translation is broken: Dask) always uses
    the fused step; otherwise learned backends go through RunInference (see the module doc).
    """
    provenance = {"depth_backend": depth_backend, "mask_backend": mask_backend}
    refs_pc = (p | "EpisodeRefs" >> beam.Create(refs, reshuffle=False)
               | "Reshuffle" >> beam.Reshuffle())
    if run_inference and needs_runinference(cfg, depth_backend, mask_backend):
        work = refs_pc | "Read" >> beam.ParDo(ReadEpisode(cfg)).with_output_types(EpisodeWork)
        work = _learned_passes(work, cfg, depth_backend, mask_backend)
        staged = work | "PointCloudsAndSFT" >> beam.ParDo(
            ProcessAndStage(cfg, default_crop, provenance))
    else:
        staged = refs_pc | "AnnotateAndStage" >> beam.ParDo(
            AnnotateAndStage(cfg, depth_backend, mask_backend, default_crop, provenance))
    return (
        staged
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(WriteShard(cfg, attributes))
    )
