"""Frames per second of the simulator-release readers vs the same files decoded directly.

Writes the test fixtures (tests/fixtures_sim.py: RoboTwin classic HDF5 with JPEG frames, CALVIN
per-frame npz, RLBench packed PNGs + pickle, ManiSkill3 h5 with gzip observations) at 128 and
256 px into a temp folder, then times
  source: make_source(...).read(ref) + every frame of RGB and depth (LazyFrames in batches),
  direct: the same arrays with the libraries alone (h5py + cv2.imdecode, numpy.load, PIL + the
          24-bit depth unpack, h5py), no conversions.
ratio = source time / direct time: the overhead appf's conversions add (goal <= 1.2).
Run: python bench/bench_sim_sources.py [--steps 32 --batch 8]
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
from tests import fixtures_sim as fx  # noqa: E402




def _direct_robotwin(path: Path) -> None:
    import cv2
    import h5py
    with h5py.File(path, "r") as f:
        for blob in f["observation/head_camera/rgb"][:]:
            cv2.imdecode(np.frombuffer(bytes(blob), np.uint8), cv2.IMREAD_COLOR)
        f["observation/head_camera/depth"][:]


def _direct_calvin(split: Path) -> None:
    for p in sorted(split.glob("episode_*.npz")):
        with np.load(p) as z:
            z["rgb_static"], z["depth_static"]


def _direct_rlbench(folder: Path) -> None:
    from PIL import Image
    for p in sorted((folder / "front_rgb").glob("*.png")):
        np.asarray(Image.open(p).convert("RGB"))
    for p in sorted((folder / "front_depth").glob("*.png")):
        a = np.asarray(Image.open(p)).astype(np.int64)
        (a[..., 0] * 65536 + a[..., 1] * 256 + a[..., 2]) / (2 ** 24 - 1)


def _direct_maniskill(path: Path) -> None:
    import h5py
    with h5py.File(path, "r") as f:
        f["traj_0/obs/sensor_data/base_camera/rgb"][:], f["traj_0/obs/sensor_data/base_camera/depth"][:]




def _cases(tmp: Path, size: int, steps: int) -> dict:
    rec = fx.record(seed=1, steps=steps, H=size, W=size)
    K, T_cam, cfg = fx.calvin_camera(size, size)
    calvin_rec = fx.record(seed=2, steps=steps, H=size, W=size, K=K, T_base_cam=T_cam)
    twin = fx.write_robotwin(tmp / "twin", rec)
    split = fx.write_calvin(tmp / "calvin", calvin_rec, cfg, lang_window=None)
    rlb = fx.write_rlbench(tmp / "rlb", rec)
    ms = fx.write_maniskill(tmp / "ms", rec)
    return {"robotwin": ({"input": str(twin)}, lambda: _direct_robotwin(twin)),
            "calvin": ({"input": str(split)}, lambda: _direct_calvin(split)),
            "rlbench": ({"input": str(tmp / "rlb")}, lambda: _direct_rlbench(rlb)),
            "maniskill": ({"input": str(ms)}, lambda: _direct_maniskill(ms))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    print(f"{args.steps} steps, one camera (RGB + depth), batch {args.batch}; best of 3")
    print(f"{'source':<10} {'px':>4} {'source fps':>11} {'direct fps':>11} {'source/direct time':>19}")
    for size in (128, 256):
        with tempfile.TemporaryDirectory() as tmp:
            for name, (opts, direct) in _cases(Path(tmp), size, args.steps).items():
                src = make_source(name, opts)
                ref = src.list_refs()[0]
                n = load_all_frames(src.read(ref), args.batch)
                t_src = best_time(lambda: load_all_frames(src.read(ref), args.batch))
                t_dir = best_time(direct)
                print(f"{name:<10} {size:>4} {n / t_src:>11.1f} {n / t_dir:>11.1f} {t_src / t_dir:>19.2f}")
    print("frames = camera-steps, each one RGB image + one depth map; direct = the same decode "
          "with the libraries alone (no unit/axis conversion, no validation)")


if __name__ == "__main__":
    main()
