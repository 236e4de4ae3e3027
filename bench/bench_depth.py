"""Depth backends on CPU at 640 x 480: frames/s and peak memory per backend (each backend in its
own process), the Beam RunInference path against calling the backend directly on the same frames
(overhead ratio), and frames of two episodes batched together against one episode per batch
(cross-episode batching, as the RunInference depth pass does), all measured in one run.

Learned backends use real-size architectures with random weights (same compute as the real
weights): PromptDepthAnything ViT-S (transformers' default PromptDepthAnythingConfig = the
-vits-hf size; --large for ViT-L) and MoGe-2 ViT-L (the published configs/train/v2.json model
plus the normal head, = moge-2-vitl-normal). FoundationStereo has no package and is not measured.

    python bench/bench_depth.py [--frames 4] [--learned-frames 2] [--large] [--moge-level 9]
                                [--skip moge2] [--runinference-all]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appf.annotators.apply import annotate_episode_depth  # noqa: E402
from appf.annotators.apply_across import annotate_episodes_depth  # noqa: E402
from appf.annotators.depth.evaluate import simulate_sensor_holes  # noqa: E402
from appf.annotators.registry import make_depth_annotator  # noqa: E402
from appf.pipelines.sources.synthetic import SyntheticSource  # noqa: E402

H, W = 480, 640


def moge2_vitl_config() -> dict:
    """MoGe-2 ViT-L as published (microsoft/MoGe configs/train/v2.json) with the normal head."""
    dims = [1024, 256, 128, 64, 32]

    def head(out: int | None, blocks: list[int]) -> dict:
        return {"dim_in": dims, "dim_out": [None, None, None, None, out], "dim_res_blocks": dims,
                "num_res_blocks": blocks, "res_block_in_norm": "none",
                "res_block_hidden_norm": "none",
                "resamplers": ["conv_transpose"] * 3 + ["bilinear"]}

    neck = head(None, [0, 2, 2, 2, 0])
    neck["dim_in"] = [1026, 2, 2, 2, 2]
    return {"encoder": {"backbone": "dinov2_vitl14", "intermediate_layers": [5, 11, 17, 23],
                        "dim_out": 1024},
            "neck": neck, "points_head": head(3, [0, 1, 1, 1, 0]),
            "normal_head": head(3, [0, 1, 1, 1, 0]), "mask_head": head(1, [0, 1, 1, 1, 0]),
            "scale_head": {"dims": [1024, 1024, 1024, 1]}, "remap_output": "exp",
            "num_tokens_range": [1200, 3600]}


def promptda_config(large: bool):
    from transformers import Dinov2Config, PromptDepthAnythingConfig

    if not large:  # the defaults are the ViT-S model
        return PromptDepthAnythingConfig(depth_estimation_type="metric")
    backbone = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                            image_size=518, patch_size=14, out_indices=[5, 12, 18, 24],
                            reshape_hidden_states=False)
    return PromptDepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=1024,
                                     neck_hidden_sizes=[256, 512, 1024, 1024],
                                     fusion_hidden_size=256, depth_estimation_type="metric")


def write_random_weights(backend: str, root: Path, large: bool) -> None:
    """Random real-size weights where the worker would find real ones; sets the env var."""
    import torch

    torch.manual_seed(0)
    if backend == "promptda":
        import json

        from transformers import PromptDepthAnythingForDepthEstimation

        d = root / "promptda"
        PromptDepthAnythingForDepthEstimation(promptda_config(large)).save_pretrained(d)
        (d / "preprocessor_config.json").write_text(json.dumps({
            "size": {"height": 756, "width": 756}, "ensure_multiple_of": 14,
            "keep_aspect_ratio": True}))
        os.environ["APPF_WEIGHTS_PROMPTDA_VITL"] = str(d)
    elif backend == "moge2":
        from moge.model.v2 import MoGeModel

        d = root / "moge2"
        d.mkdir()
        cfg = moge2_vitl_config()
        torch.save({"model_config": cfg, "model": MoGeModel(**cfg).state_dict()}, d / "model.pt")
        os.environ["APPF_WEIGHTS_MOGE_2_VITL_NORMAL"] = str(d)


def cut(ep, frames: int):
    """The first `frames` steps of an episode."""
    part = slice(0, frames)
    steps = dataclasses.replace(ep.steps, **{f.name: getattr(ep.steps, f.name)[part]
                                             for f in dataclasses.fields(ep.steps)})
    cam = ep.cameras["front"]
    cam = dataclasses.replace(cam, rgb=cam.rgb[part], rgb_right=cam.rgb_right[part],
                              depth=cam.depth[part], segmentation=cam.segmentation[part])
    return dataclasses.replace(ep, steps=steps, cameras={"front": cam})


def episode(frames: int):
    """A 640 x 480 synthetic stereo episode cut to `frames` steps, with a simulated sensor depth."""
    src = SyntheticSource(episodes=1, steps=max(16, frames), height=H, width=W, seed=0)
    ep = cut(src.read(src.list_refs()[0]), frames)
    cam = ep.cameras["front"]
    sensor = np.stack([simulate_sensor_holes(d, seed=i) for i, d in enumerate(cam.depth)])
    return dataclasses.replace(ep, cameras={"front": dataclasses.replace(cam, depth=sensor)})


def run_inference(backend: str, ep, batch_frames: int, out_dir: Path) -> float:
    """Seconds for a whole Beam pipeline: read the episode from disk (like a source read: pixels
    do not go through beam.Create, which would pickle and bz2-compress them into the pipeline
    proto) | RunInference(DepthHandler) | write the depth to disk."""
    import apache_beam as beam

    from appf.launch.runners import local_options
    from appf.pipelines.inference import DepthHandler, annotation_pass
    from appf.pipelines.work import EpisodeWork
    from appf.schemas import EpisodeRef

    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / "episode.pkl"
    source.write_bytes(pickle.dumps(EpisodeWork(EpisodeRef(ep.dataset, ep.episode_id, 0), 0, ep)))

    def save(el) -> None:
        if not isinstance(el, EpisodeWork) or getattr(el, "failure", None) is not None:
            raise RuntimeError(f"depth failed in the pipeline: {el}")
        (out_dir / "depth.pkl").write_bytes(pickle.dumps(el.episode.cameras["front"].depth))

    start = time.perf_counter()
    with beam.Pipeline(options=local_options(1)) as p:
        _ = (p | beam.Create([str(source)]) | beam.Map(lambda f: pickle.loads(Path(f).read_bytes()))
             | annotation_pass(DepthHandler(backend, batch_frames))
             | beam.Map(save))
    return time.perf_counter() - start


def bench(backend: str, frames: int, runinference: bool, tmp: Path, moge_level: int,
          repeats: int) -> None:
    """Direct and RunInference timings, alternated `repeats` times; the minimum of each is kept
    (the CPU is shared, so the minimum is the least disturbed run)."""
    ep = episode(frames)
    start = time.perf_counter()
    annotator = make_depth_annotator(backend)
    annotator.load()
    if backend == "moge2":
        annotator.resolution_level = moge_level
    load_s = time.perf_counter() - start
    if backend != "moge2":  # first-call allocations (skipped for MoGe ViT-L: ~40 s a frame)
        annotate_episode_depth(cut(ep, 1), annotator, 1)
    runinference = runinference and not (backend == "moge2" and moge_level != 9)
    direct_s, beam_s, same = float("inf"), float("inf"), True
    for i in range(repeats):
        start = time.perf_counter()
        direct = annotate_episode_depth(ep, annotator, batch_frames=frames)
        direct_s = min(direct_s, time.perf_counter() - start)
        if runinference:
            beam_s = min(beam_s, run_inference(backend, ep, frames, tmp / f"beam-{backend}-{i}"))
            got = pickle.loads((tmp / f"beam-{backend}-{i}" / "depth.pkl").read_bytes())
            same &= np.allclose(got, direct.cameras["front"].depth, rtol=1e-4, atol=1e-5)
    line = (f"{backend:<12} {frames:>3} frames  load {load_s:6.2f} s  direct {direct_s:7.2f} s "
            f"= {frames / direct_s:7.3f} frames/s ({direct_s / frames:6.2f} s/frame)")
    if runinference:
        line += (f"\n{'':<12} RunInference pipeline {beam_s:7.2f} s (start + read + load + "
                 f"inference + write) = {beam_s / (load_s + direct_s):5.2f} x (load + direct), "
                 f"{beam_s - load_s - direct_s:+5.2f} s; same depth as direct: {same}")
    print(line, flush=True)
    if backend != "moge2":
        print(across_episodes(annotator, ep, frames), flush=True)


def across_episodes(annotator, ep, frames: int) -> str:
    """Two episodes of `frames` frames with a model batch of 2 x `frames`: one episode per batch
    (two half-full batches) against frames of both episodes in one batch."""
    start = time.perf_counter()
    alone = [annotate_episode_depth(e, annotator, 2 * frames) for e in (ep, ep)]
    alone_s = time.perf_counter() - start
    start = time.perf_counter()
    together = annotate_episodes_depth([ep, ep], annotator, 2 * frames)
    together_s = time.perf_counter() - start
    same = all(np.allclose(a.cameras["front"].depth, t.cameras["front"].depth, rtol=1e-4,
                           atol=1e-5) for a, t in zip(alone, together))
    return (f"{'':<12} 2 episodes x {frames} frames, model batch {2 * frames}: one episode per "
            f"batch {2 * frames / alone_s:7.3f} frames/s, across episodes "
            f"{2 * frames / together_s:7.3f} frames/s ({alone_s / together_s:4.2f}x); same depth: "
            f"{same}")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4, help="frames for the classical backends")
    ap.add_argument("--learned-frames", type=int, default=2, help="frames for PromptDA")
    ap.add_argument("--moge-frames", type=int, default=1, help="frames for MoGe-2 (ViT-L)")
    ap.add_argument("--moge-level", type=int, default=9, help="MoGe resolution level 0..9 "
                                                               "(9 = the backend's default)")
    ap.add_argument("--large", action="store_true", help="PromptDA ViT-L instead of ViT-S")
    ap.add_argument("--skip", nargs="*", default=[], help="backends to leave out")
    ap.add_argument("--repeats", type=int, default=2,
                    help="alternated direct / RunInference runs; the minimum of each is kept")
    ap.add_argument("--runinference-all", action="store_true",
                    help="also time MoGe-2 through RunInference (another ~100 s per frame)")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one backend, in this process
    args = ap.parse_args()
    if args.only:
        return one_backend(args)
    import torch

    print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads); {W} x {H}; random weights, real-size architectures")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        floor = episode(args.frames)
        floor_s = min(run_inference("ground_truth", floor, args.frames, tmp / f"floor-{i}")
                      for i in range(3))
        print(f"pipeline floor: RunInference with the pass-through 'ground_truth' backend on "
              f"{args.frames} frames: {floor_s:.2f} s", flush=True)
    precision = os.environ.get("APPF_DEPTH_PRECISION", "auto")
    print(f"device cpu (fp32: half precision applies on CUDA only; APPF_DEPTH_PRECISION={precision})")
    for backend in ("sgbm", "sensor_fill", "promptda", "moge2"):
        if backend in args.skip:
            continue
        argv = [a for a in sys.argv[1:] if a != "--only"]
        done = subprocess.run([sys.executable, __file__, *argv, "--only", backend])
        if done.returncode != 0:
            print(f"{backend}: failed (exit {done.returncode})", flush=True)
    print("GPU figures: unmeasured (no GPU was available where this benchmark was run)")
    print("foundation_stereo: not measured (no installable package; see "
          "appf/annotators/depth/foundation_stereo_loader.py)")
    return 0


def one_backend(args) -> int:
    """Run one backend's measurements in this process and print its peak memory."""
    frames, ri = {"sgbm": (args.frames, True), "sensor_fill": (args.frames, True),
                  "promptda": (args.learned_frames, True),
                  "moge2": (args.moge_frames, args.runinference_all)}[args.only]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.only in ("promptda", "moge2"):
            write_random_weights(args.only, tmp, args.large)
        bench(args.only, frames, ri, tmp, args.moge_level,
              1 if args.only == "moge2" else args.repeats)
    print(f"{'':<12} peak RSS of this backend's process: {peak_rss_mib():7.0f} MiB "
          "(model, activations, the episode, and the Beam pipeline when timed)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
