"""Frames per second of the `lerobot` source on a packed v3.0 file vs PyAV alone, and the cost of
decoding in order from the file's frame 0 (what the reader does when timestamps are off the grid).

Writes a DROID-layout v3.0 dataset with the real lerobot 0.4.4 (.venv-lerobot, `make setup`):
EPISODES episodes of LENGTH frames at 180x320 (DROID's LeRobot size) packed by lerobot into one MP4
per camera, then, for the first and the last episode of the file, times
  source:        make_source("lerobot").read(ref) + every frame of one camera in batches of 16;
  direct:        PyAV alone: seek to the episode's first frame, decode its frames to RGB;
  decode order:  the same frames counted from the file's frame 0 (VideoFrames, the fallback).
ratio = source / direct (goal <= 1.2; the last episode shows what seeking saves).
Run: python bench/bench_lerobot.py [--episodes 20 --length 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from appf.pipelines.sources import make_source  # noqa: E402
from bench._timing import best_time  # noqa: E402
from appf.pipelines.sources._real_io import VideoFrames  # noqa: E402
from fixtures_lerobot import FPS, LEROBOT_PY, write_v30  # noqa: E402

KEY = "observation.images.exterior_1_left"




def _source(src, ref, batch: int = 16) -> None:
    ep = src.read(ref)
    rgb = ep.cameras["exterior_1_left"].rgb
    for a in range(0, ep.num_steps, batch):
        np.asarray(rgb[a:a + batch])


def _direct(path: Path, first: int, n: int) -> None:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        c.seek(int(first / FPS / s.time_base), stream=s, backward=True)
        got = 0
        for f in c.decode(s):
            if round(f.time * FPS) >= first:
                f.to_ndarray(format="rgb24")
                got += 1
                if got == n:
                    break


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--length", type=int, default=60)
    args = ap.parse_args()
    if not LEROBOT_PY.exists():
        sys.exit("needs .venv-lerobot (make setup): the packed file is written by lerobot itself")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "droid_bench"
        t = time.perf_counter()
        write_v30(root, Path(tmp), [(args.length, f"task {e}") for e in range(args.episodes)], hw=(180, 320))
        print(f"lerobot 0.4.4 wrote {args.episodes} x {args.length} frames (180x320, 2 cameras) in "
              f"{time.perf_counter() - t:.1f} s")
        src = make_source("lerobot", {"input": str(root), "cameras": ["exterior_1_left"]})
        refs = src.list_refs()
        print(f"{'episode':>10} {'source fps':>11} {'direct fps':>11} {'ratio':>6} {'decode-order fps':>17}")
        for ref in (refs[0], refs[-1]):
            rel, from_s = ref.option("entry").video(KEY)
            first, n = int(round(from_s * FPS)), args.length
            path = root / rel
            t_src = best_time(lambda: _source(src, ref))
            t_dir = best_time(lambda: _direct(path, first, n))
            t_seq = best_time(lambda: VideoFrames(path, ref.episode_id, KEY).frames(first, first + n), repeats=1)
            print(f"{ref.episode_id[-6:]:>10} {n / t_src:11.0f} {n / t_dir:11.0f} {t_src / t_dir:6.2f} "
                  f"{n / t_seq:17.0f}")


if __name__ == "__main__":
    main()
