"""Simulator replay: frames/s of the `robosuite` source vs robosuite's own render loop, and of a
whole `reannotate` job from a robosuite demo file with 1 and 2 workers.

1. Replay + render, 2 cameras (agentview + robot0_eye_in_hand), RGB + depth + segmentation, on
   the Lift demo shipped in robosuite 1.4.0, at each --sizes:
     appf:     RobosuiteSource.read(ref) with a warm replay worker (env built by a first read):
               stored-model load, replay, npz transfer over the pipe, conversions, Episode;
     baseline: bench/sim_render_loop.py in .venv-sim: the same model load and the plain
               set_state / forward / render loop over the same states.
   The ratio appf / baseline is the overhead appf adds (goal <= 1.2x).
2. `reannotate` (local runner, ground-truth depth and masks, 1024 points) over the demo file's
   3 demos with --job-stride, with 1 and 2 workers.
Run: python bench/bench_sim.py [--frames 40 --sizes 128 256 --job-stride 8 --no-job]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appf.pipelines.sources.robosuite import RobosuiteSource  # noqa: E402
from appf.simreplay.client import shipped_demos_dir, sim_python  # noqa: E402

CAMERAS = ["agentview", "robot0_eye_in_hand"]
ROOT = Path(__file__).resolve().parents[1]


def bench_replay(lift: Path, size: int, frames: int, stride: int) -> None:
    stop = frames * stride
    src = RobosuiteSource(input=str(lift), cameras=CAMERAS, height=size, width=size,
                          demos=["demo_1"], stride=stride, stop=stop)
    ref = src.list_refs()[0]
    src.read(ref)  # warm: builds this size's env in the replay worker
    t0 = time.perf_counter()
    ep = src.read(ref)
    appf_s = time.perf_counter() - t0
    cmd = [str(sim_python()), str(ROOT / "bench" / "sim_render_loop.py"), str(lift), "demo_1",
           str(size), str(size), str(stride), str(stop), *CAMERAS]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    base = json.loads(out.stdout.strip().splitlines()[-1])
    base_s = base["load_s"] + base["loop_s"]
    n = ep.num_steps
    assert n == base["frames"], (n, base)
    print(f"{size:>4} px  {n} frames x 2 cameras:  appf source {n / appf_s:6.2f} frames/s "
          f"({appf_s:.2f} s)  robosuite loop {n / base_s:6.2f} frames/s ({base_s:.2f} s = load "
          f"{base['load_s']:.2f} + loop {base['loop_s']:.2f})  overhead {appf_s / base_s:.2f}x")


def bench_job(lift: Path, stride: int, workers: int) -> float:
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    with tempfile.TemporaryDirectory() as tmp:
        cfg = JobConfig.from_dict(dict(
            source="robosuite", out=str(Path(tmp) / "out"), workers=workers, progress_every_s=0,
            source_options={"input": str(lift), "cameras": CAMERAS, "height": 128, "width": 128,
                            "stride": stride}))
        s = run_job(cfg, local_options(workers))
    rate = s.frames / s.seconds
    print(f"reannotate, {workers} worker(s): {s.episodes} episodes, {s.frames} frames in "
          f"{s.seconds:.1f} s = {rate:.2f} frames/s (failures {s.failures})")
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40, help="states replayed per measurement")
    p.add_argument("--stride", type=int, default=12, help="state stride of the replay measurement")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--job-stride", type=int, default=8, help="state stride of the reannotate job")
    p.add_argument("--no-job", action="store_true", help="skip the reannotate measurement")
    args = p.parse_args()
    lift = shipped_demos_dir() / "lift" / "demo.hdf5"
    print(f"robosuite Lift demo {lift}")
    for size in args.sizes:
        bench_replay(lift, size, args.frames, args.stride)
    if not args.no_job:
        one = bench_job(lift, args.job_stride, 1)
        two = bench_job(lift, args.job_stride, 2)
        print(f"2 workers / 1 worker: {two / one:.2f}x")


if __name__ == "__main__":
    main()
