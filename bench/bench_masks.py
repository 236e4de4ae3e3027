"""Mask stages on CPU: frames/s of each stage, the mask pass's share of an episode's processing
time, tracking overhead per frame against the SAM 2 pass, and the SAM 2 video state of a long
episode processed whole vs in windows -- all measured in one run.

Stages: temporal-consistency tracking (two objects, 640 x 480, 30% of frames corrupted); the
kinematic robot prompt (pybullet Panda, 640 x 480); SAM 2 through transformers' Sam2VideoModel
with random weights at two sizes: the tests' micro architecture (image 128) and the real
Hiera-T size (Sam2VideoConfig() defaults = sam2.1-hiera-tiny, 39M params, image 1024; random
weights cost what real ones do). RoboEngine has no package and no weights here: not measured
(the share uses the tests' stand-in for its answers, so it counts tracking + SAM 2 only).

Memory: the video state SAM 2 keeps for a `--long-frames` (500) frame 640 x 480 episode at the
real model's 1024 x 1024 input, built whole vs window by window (64 frames, 8 overlap), each in
its own process (peak RSS); the network is not run for that (too slow on CPU), so it is the frame
store only, the dominant term.

    python bench/bench_masks.py [--frames 48] [--sam2-frames 6] [--real-frames 3] [--long-frames 500]
                                [--skip-real] [--memory-only]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from appf.annotators.apply import mask_batch  # noqa: E402
from appf.annotators.masks.prompted import PromptedVideoMasker  # noqa: E402
from appf.annotators.masks.sam2 import Sam2VideoRefiner, window_ranges  # noqa: E402
from appf.pipelines.config import JobConfig  # noqa: E402
from appf.pipelines.process_episode import process_episode  # noqa: E402
from appf.pipelines.sources.synthetic import SyntheticSource  # noqa: E402
from appf.transforms.mask_corruption import Corruption, corrupt_masks  # noqa: E402
from appf.transforms.mask_tracking import track_masks  # noqa: E402
from appf.transforms.synthetic_scene import CUBE_ID, ROBOT_ID  # noqa: E402

H, W = 480, 640


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def bench_tracking(frames: int) -> float:
    """Seconds per frame for two objects."""
    src = SyntheticSource(episodes=1, steps=frames, height=H, width=W, stereo=False)
    seg = np.asarray(src.read(src.list_refs()[0]).cameras["front"].segmentation)
    noisy = [corrupt_masks(seg == i, Corruption(dropout=0.15, flicker=0.15), seed=i)[0]
             for i in (ROBOT_ID, CUBE_ID)]
    _, dt = _timed(lambda: [track_masks(m) for m in noisy])
    print(f"tracking          {frames / dt:8.2f} frames/s   ({1000 * dt / frames:.1f} ms/frame, "
          f"2 objects, {W}x{H})")
    return dt / frames


def bench_kinematic(frames: int) -> float | None:
    try:
        from appf.annotators.masks.kinematic import RobotSilhouette
        from appf.annotators.protocols import MaskBatch
        from appf.transforms.synthetic_scene import look_at
    except ImportError:
        print("kinematic         not measured (pybullet missing)")
        return None
    f = (H / 2) / np.tan(np.radians(30))
    K = np.array([[f, 0, W / 2 - 0.5], [0, f, H / 2 - 0.5], [0, 0, 1.0]])
    q0 = np.array([0.0, -0.4, 0.0, -2.2, 0.0, 1.9, 0.8])
    q = q0 + np.linspace(0, 0.5, frames)[:, None]
    batch = MaskBatch(rgb=np.zeros((frames, H, W, 3), np.uint8), K=K,
                      T_base_cam=np.repeat(look_at((1.4, 0.6, 0.9), (0.3, 0, 0.35))[None], frames, 0),
                      joint_positions=q, gripper=np.zeros(frames))
    sil = RobotSilhouette()
    sil.load()
    masks, dt = _timed(sil.silhouettes, batch)
    print(f"kinematic prompt  {frames / dt:8.2f} frames/s   (pybullet TinyRenderer, {W}x{H}, "
          f"robot on {masks.mean():.0%} of pixels)")
    return dt / frames


def bench_sam2(model, label: str, frames: int) -> float:
    from mask_helpers import two_squares_video

    rgb, gt = two_squares_video(T=frames, h=H, w=W)
    refiner = Sam2VideoRefiner.from_model(model)
    _, dt = _timed(refiner.refine, rgb, {1: {0: gt[1][0]}, 2: {0: gt[2][0]}})
    n = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"sam2 {label:<12} {frames / dt:8.3f} frames/s   ({dt / frames:.2f} s/frame, 2 objects, "
          f"{n:.1f}M params, image {model.config.image_size})")
    return dt / frames


def bench_share(model, episodes: int, steps: int) -> None:
    """Per-episode stage times of the plain pipeline loop with the masks pass = stand-in
    RoboEngine answers + tracking + SAM 2 (the micro model)."""
    from mask_helpers import StandInRoboEngine

    src = SyntheticSource(episodes=episodes, steps=steps, height=240, width=320, stereo=False)
    cfg = JobConfig(n_points=1024)
    times = {"read": 0.0, "masks": 0.0, "pointcloud+sft": 0.0}
    for ref in src.list_refs():
        ep, dt = _timed(src.read, ref)
        times["read"] += dt
        stand_in = StandInRoboEngine()
        cam = ep.cameras["front"]
        seg = np.asarray(cam.segmentation)
        stand_in.add(np.asarray(cam.rgb), "robot", seg == ROBOT_ID)
        stand_in.add(np.asarray(cam.rgb), "cube", seg == CUBE_ID)
        masker = PromptedVideoMasker("roboengine+sam2", segmenter=stand_in,
                                     refiner=Sam2VideoRefiner.from_model(model))
        result, dt = _timed(masker.masks, mask_batch(ep, "front"))
        times["masks"] += dt
        _, dt = _timed(process_episode, ep, {"front": result.labels}, cfg, ref.index,
                       src.info.default_crop)
        times["pointcloud+sft"] += dt
    total = sum(times.values())
    print(f"share of episode time ({episodes} x {steps} frames, 320x240, micro SAM 2): "
          + ", ".join(f"{k} {v / total:.0%} ({v:.1f} s)" for k, v in times.items()))


def memory_probe(mode: str, frames: int, window: int, overlap: int) -> None:
    """Child process: build SAM 2's frame store for `frames` 640x480 frames at 1024 x 1024,
    whole or window by window; print the peak RSS in MB."""
    refiner = Sam2VideoRefiner(weights="sam2.1-hiera-tiny")
    refiner.image_size = 1024
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    video = np.broadcast_to(frame, (frames, H, W, 3))  # a view: the episode itself costs nothing
    ranges = [(0, frames)] if mode == "whole" else window_ranges(frames, window, overlap)
    for a, b in ranges:
        session = refiner.session(video[a:b])
        del session
    print(_peak_rss_mb())


def _peak_rss_mb() -> float:
    """This process image's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which keeps the
    forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_memory(frames: int) -> None:
    rss = {}
    for mode in ("baseline", "window", "whole"):
        n = 1 if mode == "baseline" else frames
        out = subprocess.run([sys.executable, __file__, "--_memory-probe", mode if mode != "baseline"
                              else "whole", "--long-frames", str(n)],
                             capture_output=True, text=True, check=True)
        rss[mode] = float(out.stdout.strip().splitlines()[-1])
    base = rss["baseline"]
    print(f"memory, {frames}-frame episode, SAM 2 frame store at 1024x1024 (peak RSS above a "
          f"1-frame process of {base:.0f} MB): whole {rss['whole'] - base:.0f} MB, windows of 64 "
          f"(8 overlap) {rss['window'] - base:.0f} MB, ratio "
          f"{(rss['whole'] - base) / max(1.0, rss['window'] - base):.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=48, help="tracking / kinematic frames")
    ap.add_argument("--sam2-frames", type=int, default=6, help="frames for the micro SAM 2")
    ap.add_argument("--real-frames", type=int, default=3, help="frames for the Hiera-T size")
    ap.add_argument("--long-frames", type=int, default=500, help="episode length for memory")
    ap.add_argument("--skip-real", action="store_true", help="skip the real-size SAM 2")
    ap.add_argument("--memory-only", action="store_true", help="only the memory measurement")
    ap.add_argument("--_memory-probe", dest="memory_probe", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe, args.long_frames, 64, 8)
        return
    if args.memory_only:
        bench_memory(args.long_frames)
        return
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    from mask_helpers import tiny_sam2_model

    torch.manual_seed(0)
    track_s = bench_tracking(args.frames)
    bench_kinematic(args.frames)
    micro = tiny_sam2_model()
    micro_s = bench_sam2(micro, "micro", args.sam2_frames)
    print(f"tracking overhead: {track_s / micro_s:.1%} of the micro SAM 2 pass per frame")
    if not args.skip_real:
        real_s = bench_sam2(Sam2VideoModel(Sam2VideoConfig()).eval(), "hiera-t size",
                            args.real_frames)
        print(f"tracking overhead: {track_s / real_s:.2%} of the Hiera-T-size SAM 2 pass per frame")
    bench_share(micro, episodes=2, steps=16)
    bench_memory(args.long_frames)


if __name__ == "__main__":
    main()
