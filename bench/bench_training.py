"""Throughput of the APPF expert's two phases and of its loader, measured in one run.

    python bench/bench_training.py [--batch 32] [--points 1024] [--down-dims 256 512 1024]
                                   [--iters 5] [--threads 2] [--json FILE]

Shards: the real pipeline (synthetic source, ``--episodes`` x ``--episode-steps`` frames,
``--points`` points per frame, Zarr format 3) written once into ``--shards`` (default a temp dir).

- model step: forward + backward + AdamW step of the expert on pre-fetched batches, phase 1
  (null point-cloud embedding, point encoder frozen) against phase 2 (point encoder on the
  clouds), same network and batch size;
- loader: ``ExpertWindowDataset[batch indices]`` (the DataLoader's fetch): phase 1 low-dimensional
  arrays only; phase 2 with point clouds preloaded in memory; phase 2 reading them from the Zarr
  shards per batch (``preload_point_clouds: false``).

Samples/s are per process on this machine's CPU (``--threads`` torch threads); the ratios are the
figures to read: phase 1 / phase 2 step throughput, loader / model-step throughput (> 1: the
loader keeps up with one process).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from appf.training.config import ExpertConfig
from appf.training.dataset import ExpertWindowDataset, fit_normalizer
from appf.training.policy import ExpertPolicy
from appf.training.shards import ShardSet, find_shards


def build_shards(out: Path, episodes: int, steps: int, points: int) -> float:
    """Run the pipeline once (bench code may use it to make shards); returns seconds (0 if reused)."""
    if (out / "pointclouds").is_dir():
        return 0.0
    from appf.launch.runners import local_options
    from appf.pipelines.config import JobConfig
    from appf.pipelines.job import run_job

    t = time.perf_counter()
    cfg = JobConfig.from_dict(dict(
        source="synthetic", source_options={"episodes": episodes, "steps": steps, "height": 240,
                                            "width": 320, "seed": 0},
        out=str(out), episodes_per_shard=4, n_points=points, progress_every_s=0))
    run_job(cfg, local_options(1))
    return time.perf_counter() - t


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], iters: int, rounds: int = 2, warmup: int = 1,
                device: torch.device = torch.device("cpu")) -> dict[str, float]:
    """Median seconds per call of each function. Functions take turns in blocks (``rounds`` blocks
    each, so load changes on a shared machine hit all alike); each block starts with ``warmup``
    untimed calls (the first call after a switch pays for cold caches and memory) and times
    ``iters`` calls."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            for i in range(warmup + iters):
                _sync(device)
                t = time.perf_counter()
                fn()
                _sync(device)
                if i >= warmup:
                    times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def train_step(policy: ExpertPolicy, batch: dict, device: torch.device) -> Callable[[], None]:
    """One forward + backward + AdamW step of ``policy`` on a fixed batch."""
    model = policy.model.to(device).train()
    batch = {k: v.to(device) for k, v in batch.items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        loss = policy.compute_loss(batch, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def saved_activation_bytes(policy: ExpertPolicy, batch: dict, device: torch.device) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one loss (activation memory)."""
    total, seen = 0, set()
    params = {p.data_ptr() for p in policy.model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = (t.data_ptr(), t.numel())
        if t.data_ptr() not in params and key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy.compute_loss(batch, torch.Generator().manual_seed(0))
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=Path, help="reuse/write shards here (default: a temp dir)")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--episode-steps", type=int, default=40)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--down-dims", type=int, nargs="+", default=[256, 512, 1024],
                    help="U-Net widths (DP3: 512 1024 2048)")
    ap.add_argument("--iters", type=int, default=3,
                    help="timed calls per block (2 blocks per measurement, each after 1 warm-up call)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.shards or Path(tmp) / "out"
        build_s = build_shards(out, args.episodes, args.episode_steps, args.points)
        cfg1 = ExpertConfig(phase="pretrain", down_dims=args.down_dims, batch_size=args.batch)
        cfg2 = cfg1.replace(phase="finetune")
        shards1 = ShardSet(find_shards(out))
        shards2 = ShardSet(find_shards(out), need_point_cloud=True)
        norm = fit_normalizer(shards2, use_point_cloud=True)
        ds1 = ExpertWindowDataset(shards1, cfg1, norm)
        ds2 = ExpertWindowDataset(shards2, cfg2, norm)
        ds2_lazy = ExpertWindowDataset(shards2, cfg2.replace(preload_point_clouds=False), norm)
        rng = np.random.default_rng(0)
        draw = lambda: rng.integers(0, len(ds1), args.batch)  # noqa: E731
        idx = draw()

        torch.manual_seed(0)
        p1 = ExpertPolicy(cfg1, shards1.spec, norm)
        p2 = ExpertPolicy(cfg2, shards2.spec, norm)
        p2.model.load_state_dict(p1.model.state_dict())
        p2.model.set_phase("finetune")
        n_params = sum(p.numel() for p in p1.model.parameters())
        n_pc = sum(p.numel() for p in p1.model.point_encoder.parameters())

        a1 = saved_activation_bytes(p1, ds1[idx], device) / args.batch
        a2 = saved_activation_bytes(p2, ds2[idx], device) / args.batch
        step = interleaved({"phase1": train_step(p1, ds1[idx], device),
                            "phase2": train_step(p2, ds2[idx], device)}, args.iters, device=device)
        load = interleaved({"phase1": lambda: ds1[draw()], "phase2": lambda: ds2[draw()],
                            "phase2_zarr": lambda: ds2_lazy[draw()]}, max(10, args.iters))
        s1, s2 = step["phase1"], step["phase2"]
        l1, l2, l2z = load["phase1"], load["phase2"], load["phase2_zarr"]

    B = args.batch
    fig = {
        "device": str(device), "torch_threads": args.threads, "cpu_count": os.cpu_count(),
        "batch": B, "points": args.points, "down_dims": args.down_dims,
        "params": n_params, "point_encoder_params": n_pc,
        "shards": {"episodes": shards1.n_episodes, "frames": shards1.n_frames, "windows": len(ds1),
                   "build_s": round(build_s, 1)},
        "model_samples_per_s": {"phase1": B / s1, "phase2": B / s2},
        "activation_mb_per_sample": {"phase1": a1 / 2**20, "phase2": a2 / 2**20},
        "loader_samples_per_s": {"phase1": B / l1, "phase2_preloaded": B / l2, "phase2_zarr": B / l2z},
    }
    fig["ratios"] = {
        "phase1_over_phase2_step": s2 / s1,
        "phase2_over_phase1_activation_memory": a2 / a1,
        "loader_over_model_phase1": s1 / l1,
        "loader_over_model_phase2_preloaded": s2 / l2,
        "loader_over_model_phase2_zarr": s2 / l2z,
    }
    m, ld, r = fig["model_samples_per_s"], fig["loader_samples_per_s"], fig["ratios"]
    print(f"shards: {shards1.n_episodes} episodes, {shards1.n_frames} frames, {len(ds1)} windows, "
          f"{args.points} points/frame (built in {build_s:.1f} s)")
    print(f"expert: down_dims {args.down_dims}, {n_params / 1e6:.1f} M parameters "
          f"(point encoder {n_pc / 1e3:.0f} k); batch {B}; {device}, {args.threads} torch threads")
    print(f"model step   phase 1 (no point cloud) {m['phase1']:9.1f} samples/s")
    print(f"model step   phase 2 (point cloud)    {m['phase2']:9.1f} samples/s"
          f"   -> phase 1 is {r['phase1_over_phase2_step']:.2f}x faster per step")
    act = fig["activation_mb_per_sample"]
    print(f"activations kept for backward: phase 1 {act['phase1']:.2f} MB/sample, phase 2 "
          f"{act['phase2']:.2f} MB/sample -> {r['phase2_over_phase1_activation_memory']:.1f}x "
          "(the batch that fits in memory shrinks by this factor)")
    print(f"loader       phase 1 (low-dim only)   {ld['phase1']:9.0f} samples/s"
          f"   -> {r['loader_over_model_phase1']:.0f}x the phase-1 model step's")
    print(f"loader       phase 2 (clouds in RAM)  {ld['phase2_preloaded']:9.0f} samples/s"
          f"   -> {r['loader_over_model_phase2_preloaded']:.0f}x the phase-2 model step's")
    print(f"loader       phase 2 (clouds in Zarr) {ld['phase2_zarr']:9.0f} samples/s"
          f"   -> {r['loader_over_model_phase2_zarr']:.1f}x the phase-2 model step's")
    print(f"phase-1 loader / phase-2 Zarr loader: {ld['phase1'] / ld['phase2_zarr']:.0f}x")
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
