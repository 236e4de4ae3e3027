"""Frames decoded per second by the real-world sources vs the same files decoded directly.

Writes the test fixtures (tests/fixtures_*.py: DROID raw stereo MP4 + h5, AgiBot AV1 MP4 + depth
PNG + h5, Bridge raw JPEG + PNG + pickles, RLDS TFRecord shards of DROID and both Bridge schemas)
at a chosen size into a temp folder, then times
  source: make_source(...).read(ref) + load every camera's frames (LazyFrames) in batches,
  direct:  PyAV decode of the same MP4s / PIL decode of the same images + h5py reads; for RLDS,
           the same record read and fully decoded by TFDS (features.deserialize_example_np,
           every step's every image, OpenCV), i.e. what a TF-free reader does without LazyFrames.
RLDS fixtures keep the release image sizes (DROID 320x180, rail Bridge 256x256, OXE 640x480);
--height/--width apply to the raw sources only.
Run: python bench/bench_sources.py [--steps 32 --height 240 --width 320 --batch 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appf.pipelines.sources import make_source  # noqa: E402
from bench._timing import best_time, load_all_frames  # noqa: E402




def _direct_video(paths: list[Path]) -> int:
    import av
    n = 0
    for p in paths:
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for f in c.decode(s):
                f.to_ndarray(format="rgb24")
                n += 1
    return n


def _direct_h5(paths: list[Path]) -> None:
    import h5py
    for p in paths:
        with h5py.File(p, "r") as f:
            f.visit(lambda k: f[k][()] if isinstance(f[k], h5py.Dataset) else None)


def _direct_images(paths: list[Path]) -> None:
    from PIL import Image
    for p in paths:
        with Image.open(p) as im:
            np.asarray(im)


def _direct_rlds(src, ref) -> int:
    """The record decoded by TFDS alone: every step, every image feature. Returns images decoded."""
    from appf.pipelines.sources._rlds_io import image_feature_keys
    from appf.pipelines.sources._tfrecord import read_record
    steps = src.ds.features.deserialize_example_np(read_record(ref.uri, ref.option("offset")))["steps"]
    keys = image_feature_keys(src.ds.features["steps"].feature)
    n = 0
    for i in range(len(steps)):
        step = steps[i]  # decodes the step (images included)
        for path in keys:
            v = step
            for k in path:
                v = v[k]
            n += int(v.ndim == 3)
    return n




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    from tests.fixtures_agibot import write_agibot
    from tests.fixtures_bridge import write_bridge_raw
    from tests.fixtures_droid import write_droid_raw
    from tests.fixtures_rlds import write_bridge_rlds, write_droid_rlds

    H, W, T = args.height, args.width, args.steps
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        d = write_droid_raw(tmp / "droid", steps=T, H=H, W=W)
        a = write_agibot(tmp / "agibot", steps=T, H=H, W=W)
        b = write_bridge_raw(tmp / "bridge", steps=T, H=H, W=W)
        dr = write_droid_rlds(tmp / "rlds", shards=(1,), steps=T)
        rail = write_bridge_rlds(tmp / "rlds", "bridge_dataset", steps=T)
        oxe = write_bridge_rlds(tmp / "rlds", "oxe", steps=T)
        cases = {
            "droid_raw": ({"input": str(d.root)},
                          lambda: (_direct_video(sorted(d.episode_dirs[0].glob("recordings/MP4/*.mp4"))),
                                   _direct_h5([d.episode_dirs[0] / "trajectory.h5"]))),
            "agibot": ({"input": str(a.root), "cameras": ["head", "hand_left", "hand_right"]},
                       lambda: (_direct_video(sorted(a.root.glob("observations/*/*/videos/*.mp4"))),
                                _direct_images(sorted(a.root.glob("observations/*/*/depth/*.png"))),
                                _direct_h5(sorted(a.root.glob("proprio_stats/*/*/*.h5"))))),
            "bridge_raw": ({"input": str(b.root)},
                           lambda: _direct_images(sorted(b.traj.glob("images0/*.jpg"))
                                                  + sorted(b.traj.glob("depth_images0/*.png")))),
            "droid_rlds": ({"input": str(dr.dir)}, "rlds"),
            "bridge_rlds": ({"input": str(rail.dir)}, "rlds"),
            "bridge_oxe": ({"input": str(oxe.dir)}, "rlds"),
        }
        print(f"frames: {T} steps per episode, {W}x{H} per view, batch {args.batch}; best of 3")
        print(f"{'source':<11} {'frames':>6} {'source fps':>11} {'direct fps':>11} {'ratio':>6}")
        for name, (opts, direct) in cases.items():
            src = make_source("bridge_rlds" if name == "bridge_oxe" else name, opts)
            ref = src.list_refs()[0]
            n = load_all_frames(src.read(ref), args.batch)
            t_src = best_time(lambda: load_all_frames(src.read(ref), args.batch))
            if direct == "rlds":
                n_dir = _direct_rlds(src, ref)
                t_dir = best_time(lambda: _direct_rlds(src, ref))
            else:
                n_dir, t_dir = n, best_time(direct)
            print(f"{name:<11} {n:>6} {n / t_src:>11.1f} {n_dir / t_dir:>11.1f} {t_dir / t_src:>6.2f}")
        print("frames = camera-steps (a DROID stereo step = one left + one right eye; AgiBot head "
              "step includes its depth PNG); ratio = direct time / source time for the episode. "
              "bridge_rlds (rail): the source loads 3 views (image_2 is zero-filled and left out), "
              "TFDS decodes all 4; its direct fps counts the 4")


if __name__ == "__main__":
    main()
