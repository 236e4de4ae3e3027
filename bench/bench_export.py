"""`appf export dp3`: the streaming merge (one shard in memory at a time) against the naive merge
(every shard read into memory, concatenated, written once, as DP3's own writers do), in one run,
on the same committed shards; plus the cost of `--n-points` re-sampling (FPS).

    python bench/bench_export.py [--shards 8] [--episodes-per-shard 4] [--steps 100] [--points 1024]

Figures: frames/s and peak Python-heap memory (tracemalloc, which numpy reports to) of each way.
Goal: the streaming merge's peak memory about one shard's, i.e. ~1/shards of the naive one, at a
comparable rate.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import zarr

from appf.exports.dp3 import DEFAULT_KEYS, committed_parts, export_dp3
from appf.pipelines.processed import STEP_ARRAYS, ProcessedEpisode
from appf.pipelines.sinks.zarr_shards import _compressor, write_shard
from appf.storage import Location, ShardCommit, layout, write_marker


def synthetic_episode(i: int, steps: int, points: int, rng: np.random.Generator) -> ProcessedEpisode:
    """Random arrays with the shard layout's shapes and dtypes (content does not matter here)."""
    arrays = {
        "point_cloud": rng.random((steps, points, 6), dtype=np.float32),
        "point_label": rng.integers(0, 3, (steps, points), dtype=np.uint8),
        "point_count_real": np.full(steps, points, np.int32),
        "state": rng.random((steps, 8), dtype=np.float32),
        "action": rng.random((steps, 8), dtype=np.float32),
        "ee_pose": rng.random((steps, 1, 7), dtype=np.float32),
        "gripper": rng.random((steps, 1), dtype=np.float32),
        "timestamp": np.arange(steps, dtype=np.float64) / 10,
        "keyframe": np.zeros(steps, np.uint8),
    }
    assert set(arrays) == set(STEP_ARRAYS)
    return ProcessedEpisode("bench", f"bench-{i:06d}", i, arrays, pa.table({}), {"action_space": "bench"})


def write_run(out: Path, shards: int, per_shard: int, steps: int, points: int) -> int:
    rng = np.random.default_rng(0)
    loc = Location(out)
    for s in range(shards):
        eps = [synthetic_episode(s * per_shard + k, steps, points, rng) for k in range(per_shard)]
        key = layout.shard_zarr_key(s)
        write_shard(out / key, eps, {"fps_method": "fast", "n_points": points}, zarr_format=3)
        write_marker(loc, ShardCommit(shard=s, path=key, sft_path=layout.sft_key(s),
                                      failures_path=layout.failures_key(s), episodes=per_shard,
                                      frames=per_shard * steps, failures=0, sft_records=0,
                                      points=per_shard * steps * points, checksum=None,
                                      episode_ids=[e.episode_id for e in eps]))
    return shards * per_shard * steps


def naive_merge(out: Path, to: Path) -> None:
    """Every shard in memory, concatenated, one write (the baseline)."""
    parts = committed_parts(out)
    data = {k: np.concatenate([p.open()[f"data/{k}"][:] for p in parts]) for k in DEFAULT_KEYS}
    sizes = np.cumsum([int(p.episode_ends[-1]) for p in parts])
    ends = np.concatenate([p.episode_ends + (0 if i == 0 else sizes[i - 1]) for i, p in enumerate(parts)])
    root = zarr.open_group(str(to), mode="w", zarr_format=2)
    for k, v in data.items():
        root.create_array(f"data/{k}", shape=v.shape, dtype=v.dtype, chunks=(100, *v.shape[1:]),
                          compressors=_compressor(2))[...] = v
    root.create_array("meta/episode_ends", shape=ends.shape, dtype=np.int64,
                      compressors=_compressor(2))[...] = ends


def measure(fn, *args, **kwargs) -> tuple[float, float]:
    """(seconds, peak MiB traced) of one call."""
    tracemalloc.start()
    t = time.perf_counter()
    fn(*args, **kwargs)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--episodes-per-shard", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--resample-to", type=int, default=512)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="appf-bench-export-"))
    try:
        frames = write_run(work / "run", args.shards, args.episodes_per_shard, args.steps, args.points)
        shard_mib = args.episodes_per_shard * args.steps * args.points * 6 * 4 / 2**20
        print(f"run: {args.shards} shards x {args.episodes_per_shard} episodes x {args.steps} frames, "
              f"{args.points} points ({frames} frames; one shard's clouds {shard_mib:.1f} MiB)")
        rows = [("naive merge (all in memory)", *measure(naive_merge, work / "run", work / "naive.zarr")),
                ("appf export dp3 (streaming)", *measure(export_dp3, work / "run", work / "stream.zarr")),
                (f"appf export dp3 --n-points {args.resample_to}",
                 *measure(export_dp3, work / "run", work / "fps.zarr", n_points=args.resample_to))]
        base_s, base_mib = rows[0][1], rows[0][2]
        for name, s, mib in rows:
            print(f"{name:<34} {frames / s:9.0f} frames/s {mib:8.1f} MiB peak   "
                  f"time x{s / base_s:.2f}  memory x{mib / base_mib:.2f} (vs naive)")
        a, b = zarr.open_group(str(work / "naive.zarr"), mode="r"), zarr.open_group(str(work / "stream.zarr"), mode="r")
        same = all(np.array_equal(a[f"data/{k}"][:], b[f"data/{k}"][:]) for k in DEFAULT_KEYS)
        print(f"streaming output equals the naive one: {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
