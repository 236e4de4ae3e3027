"""Whole local run: frames/s of the Beam job (`appf reannotate`, local runner, one worker)
against the same pure functions called in a plain Python loop, in one run.

    python bench/bench_pipeline.py [--episodes 16] [--steps 40] [--height 240 --width 320]

Goal: Beam's overhead (loop frames/s / Beam frames/s) at most 1.25x.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from appf.annotators.apply import annotate_episode_depth, annotate_episode_masks
from appf.annotators.registry import make_depth_annotator, make_masker
from appf.launch.runners import local_options
from appf.pipelines.config import JobConfig
from appf.pipelines.job import run_job
from appf.pipelines.process_episode import process_episode
from appf.pipelines.sinks.tables import write_parquet_atomic
from appf.pipelines.sinks.zarr_shards import write_shard
from appf.pipelines.sources import make_source
from appf.schemas import check_episode
import pyarrow as pa


def plain_loop(cfg: JobConfig, out: Path) -> int:
    """Read, annotate, build clouds and SFT rows, write shards and records: no Beam."""
    source = make_source(cfg.source, cfg.source_options)
    depth, masker = make_depth_annotator("ground_truth"), make_masker("ground_truth")
    shards: dict[int, list] = {}
    frames = 0
    for ref in source.list_refs():
        ep = annotate_episode_depth(check_episode(source.read(ref)), depth, cfg.batch_frames)
        labels = annotate_episode_masks(ep, masker)
        pe = process_episode(ep, labels, cfg, ref.index, source.info.default_crop)
        shards.setdefault(cfg.shard_of(ref.index), []).append(pe)
        frames += pe.num_frames
    for shard, eps in shards.items():
        (out / "pointclouds").mkdir(parents=True, exist_ok=True)
        write_shard(out / f"pointclouds/shard-{shard:05d}.zarr", eps, {}, cfg.zarr_format,
                    cfg.chunk_frames)
        write_parquet_atomic(pa.concat_tables([e.sft for e in eps]),
                             out / f"sft/records-{shard:05d}.parquet")
    return frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="appf-bench-"))
    opts = {"episodes": args.episodes, "steps": args.steps, "height": args.height,
            "width": args.width, "seed": 0}
    cfg = JobConfig.from_dict(dict(source="synthetic", source_options=opts, out=str(tmp / "beam"),
                                   progress_every_s=0))
    # warm-up (imports, caches) on one episode each way
    warm = JobConfig.from_dict({**cfg.to_dict(), "out": str(tmp / "warm"),
                                "source_options": {**opts, "episodes": 1}})
    run_job(warm, local_options(1))
    plain_loop(warm, tmp / "warm-loop")

    t0 = time.perf_counter()
    loop_frames = plain_loop(cfg, tmp / "loop")
    t_loop = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = run_job(cfg, local_options(1))
    t_beam = time.perf_counter() - t0
    assert summary.frames == loop_frames, (summary.frames, loop_frames)
    fig = {
        "episodes": args.episodes, "frames": loop_frames, "resolution": f"{args.width}x{args.height}",
        "loop_frames_per_s": loop_frames / t_loop, "beam_frames_per_s": summary.frames / t_beam,
        "beam_overhead_x": t_beam / t_loop,
    }
    print(f"plain loop : {fig['loop_frames_per_s']:8.1f} frames/s ({t_loop:.2f} s)")
    print(f"beam local : {fig['beam_frames_per_s']:8.1f} frames/s ({t_beam:.2f} s, 1 worker)")
    print(f"overhead   : {fig['beam_overhead_x']:.2f}x (goal <= 1.25x)")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
