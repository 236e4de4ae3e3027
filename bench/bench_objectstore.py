"""Object store vs local disk: frames/s of the same job (`appf reannotate`, local runner, one
worker) writing to an S3-speaking server on loopback (moto, through s3fs) and to a local
directory, measured alternately in one run; also the cost of staging one episode under the
output (write + read back) on each, against the time to process that episode.

    python bench/bench_objectstore.py [--episodes 16] [--steps 40] [--height 240 --width 320] [--repeats 2]

Goal: S3 within 1.3x of local (local frames/s / S3 frames/s <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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
from appf.pipelines.processed import load_staged, save_staged
from appf.pipelines.sources import make_source
from appf.schemas import check_episode
from appf.storage import Location, read_markers
from appf.storage.loopback_s3 import loopback_s3, new_bucket


def timed_job(cfg: JobConfig, out: str) -> tuple[float, int]:
    job = JobConfig.from_dict({**cfg.to_dict(), "out": out})
    t0 = time.perf_counter()
    summary = run_job(job, local_options(1))
    return time.perf_counter() - t0, summary.frames


def staging_round_trip(cfg: JobConfig, urls: dict[str, str]) -> dict[str, float]:
    """Seconds per episode to process it, and to stage it (write + read back) at each URL."""
    source = make_source(cfg.source, cfg.source_options)
    depth, masker = make_depth_annotator("ground_truth"), make_masker("ground_truth")
    ref = source.list_refs()[0]
    t0 = time.perf_counter()
    ep = annotate_episode_depth(check_episode(source.read(ref)), depth, cfg.batch_frames)
    pe = process_episode(ep, annotate_episode_masks(ep, masker), cfg, ref.index,
                         source.info.default_crop)
    fig = {"process_episode_s": time.perf_counter() - t0}
    for name, url in urls.items():
        loc = Location(url)
        t0 = time.perf_counter()
        save_staged(pe, loc, "_staging/probe.npz")
        load_staged(loc, "_staging/probe.npz")
        fig[f"stage_round_trip_{name}_s"] = time.perf_counter() - t0
        fig["staged_mb"] = loc.size("_staging/probe.npz") / 1e6
    return fig


def output_bytes(url: str) -> int:
    return sum(int(e["bytes"]) for c in read_markers(Location(url)).values()
               for e in c.objects.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    tmp = Path(tempfile.mkdtemp(prefix="appf-bench-os-"))
    opts = {"episodes": args.episodes, "steps": args.steps, "height": args.height,
            "width": args.width, "seed": 0}
    cfg = JobConfig.from_dict(dict(source="synthetic", source_options=opts, out=str(tmp / "x"),
                                   progress_every_s=0))
    with loopback_s3() as endpoint:
        bucket = new_bucket("bench")
        warm = JobConfig.from_dict({**cfg.to_dict(), "source_options": {**opts, "episodes": 1}})
        timed_job(warm, str(tmp / "warm"))
        timed_job(warm, f"{bucket}/warm")
        local_s, s3_s = [], []
        for i in range(args.repeats):  # alternate, so that machine noise hits both
            t, frames = timed_job(cfg, str(tmp / f"local-{i}"))
            local_s.append(t)
            t, frames_s3 = timed_job(cfg, f"{bucket}/run-{i}")
            s3_s.append(t)
            assert frames == frames_s3, (frames, frames_s3)
        written = output_bytes(f"{bucket}/run-0")
        staging = staging_round_trip(cfg, {"local": str(tmp / "probe"), "s3": f"{bucket}/probe"})
    t_local, t_s3 = statistics.median(local_s), statistics.median(s3_s)
    fig = {"episodes": args.episodes, "frames": frames, "resolution": f"{args.width}x{args.height}",
           "endpoint": endpoint, "output_mb": written / 1e6, "local_runs_s": local_s,
           "s3_runs_s": s3_s, "local_frames_per_s": frames / t_local,
           "s3_frames_per_s": frames / t_s3, "s3_slowdown_x": t_s3 / t_local, **staging}
    print(f"local dir     : {fig['local_frames_per_s']:8.1f} frames/s (median of {local_s})")
    print(f"loopback S3   : {fig['s3_frames_per_s']:8.1f} frames/s (median of {s3_s})")
    print(f"output        : {fig['output_mb']:.1f} MB of committed objects per run")
    print(f"S3 / local    : {fig['s3_slowdown_x']:.2f}x slower (goal <= 1.3x)")
    print(f"staging       : {staging['staged_mb']:.1f} MB per episode; write + read back "
          f"{staging['stage_round_trip_local_s'] * 1e3:.0f} ms local, "
          f"{staging['stage_round_trip_s3_s'] * 1e3:.0f} ms S3, vs "
          f"{staging['process_episode_s'] * 1e3:.0f} ms to process the episode")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
