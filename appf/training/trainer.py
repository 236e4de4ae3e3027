"""The expert trainer: phase 1 (action pre-training) and phase 2 (point-cloud fine-tuning).

One loop for both phases: AdamW + a diffusers LR schedule + diffusers' EMAModel, deterministic
batches (:mod:`appf.training.sampler`) and per-step random generators derived from
``(seed, step, rank)``, so a run is reproducible on CPU and a resumed run continues exactly.
Checkpoints go to ``RUN_DIR/checkpoints``, metrics to ``RUN_DIR/metrics.jsonl`` and TensorBoard.
Under torchrun each process trains on its own part of every step (DDP, gradients all-reduced).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from appf.training.checkpoint import (checkpoint_path, latest_checkpoint, load_checkpoint,
                                      prune_checkpoints, save_checkpoint)
from appf.training.config import ARCHITECTURE_FIELDS, ExpertConfig
from appf.training.dataset import ExpertWindowDataset, fit_normalizer
from appf.training.distributed import (DistInfo, barrier, init_distributed, mean_across_processes,
                                      shutdown)
from appf.training.errors import TrainingError
from appf.training.metrics import MetricsLogger
from appf.training.normalizer import Normalizer
from appf.training.policy import ExpertPolicy
from appf.training.sampler import StepBatchSampler
from appf.training.shards import DataSpec, ShardSet, find_shards, shard_label


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    last_loss: float | None  # mean over the last logging interval and all processes
    rank: int = 0


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The CPU generator of one training step (diffusion timesteps and noise, guidance noise)."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def _check_compatible(cfg: ExpertConfig, spec: DataSpec, other: dict[str, Any], what: str) -> None:
    saved = ExpertConfig.from_dict(other["config"])
    diff = [f"{k}: {getattr(saved, k)} there, {getattr(cfg, k)} here" for k in ARCHITECTURE_FIELDS
            if getattr(saved, k) != getattr(cfg, k)]
    o = DataSpec.from_dict(other["data_spec"])
    for k in ("state_dim", "action_dim", "arms"):
        if getattr(o, k) != getattr(spec, k):
            diff.append(f"data {k}: {getattr(o, k)} there, {getattr(spec, k)} in these shards")
    if diff:
        raise TrainingError(f"{what} {other.get('path')} does not match this run: " + "; ".join(diff)
                            + ". Use the same network settings and shards of the same robot.")


def _say(stream: TextIO | None, info: DistInfo, text: str) -> None:
    if stream is not None and info.is_main:
        print(f"[appf train] {text}", file=stream, flush=True)


def _starting_point(run_dir: Path, cfg: ExpertConfig, init: str | Path | None, stream: TextIO | None,
                    info: DistInfo) -> tuple[ExpertConfig, dict | None, dict | None]:
    """(config, checkpoint to resume, checkpoint to start from): the run folder's latest
    checkpoint wins (its config, with the requested total ``steps``); else ``init``."""
    resume_path = latest_checkpoint(run_dir)
    if resume_path is not None:
        resume = load_checkpoint(resume_path)
        saved = ExpertConfig.from_dict(resume["config"])
        if saved.phase != cfg.phase:
            raise TrainingError(f"{run_dir} holds a '{saved.phase}' run; it cannot be resumed as "
                                f"'{cfg.phase}'. Use another --out for the new phase.")
        _say(stream, info, f"resuming {run_dir} from step {resume['step']} ({resume_path.name})"
             + ("; --init is ignored when resuming" if init is not None else ""))
        return saved.replace(steps=cfg.steps), resume, None
    if init is None and cfg.phase == "finetune":
        raise TrainingError("phase 'finetune' starts from a pre-training checkpoint: pass --init "
                            "RUN_DIR (or RUN_DIR/checkpoints/step-N.pt) of an `appf train expert "
                            "--phase pretrain` run")
    return cfg, None, load_checkpoint(init) if init is not None else None


def train_expert(shards: str | Path, out: str | Path, cfg: ExpertConfig, init: str | Path | None = None,
                 device: str | None = None, log: bool = True, stream: TextIO | None = None,
                 tensorboard: bool = True) -> TrainResult:
    """Train (or resume) one expert run in ``out`` from the shards under ``shards``.

    Phase ``finetune`` starts from ``init`` (a phase-1 checkpoint or run folder): its weights
    (EMA), and its state/action/guidance statistics; the point-cloud statistics are fitted here.
    A run folder that already has checkpoints is resumed from the latest one (its config wins,
    except ``steps``, the total to reach). Progress lines go to ``stream`` (default stderr) unless
    ``log`` is false."""
    stream = (stream or sys.stderr) if log else None
    info = init_distributed(device)
    run_dir = Path(out)
    cfg, resume, init_ckpt = _starting_point(run_dir, cfg, init, stream, info)

    shard_set = ShardSet(find_shards(shards), need_point_cloud=cfg.use_point_cloud)
    spec = shard_set.spec
    for other, what in ((resume, "checkpoint"), (init_ckpt, "--init checkpoint")):
        if other is not None:
            _check_compatible(cfg, spec, other, what)
    if resume is not None:
        normalizer = Normalizer.from_dict(resume["normalizer"])
    else:
        base = Normalizer.from_dict(init_ckpt["normalizer"]) if init_ckpt is not None else None
        normalizer = fit_normalizer(shard_set, cfg.use_point_cloud, cfg.max_norm_frames, base)
    _say(stream, info, f"{cfg.phase}: {len(shard_set.paths)} shard(s), {shard_set.n_episodes} episodes, "
         f"{shard_set.n_frames} frames; state {spec.state_dim}, action {spec.action_dim}, arms {spec.arms}"
         + (f", {spec.n_points} points" if cfg.use_point_cloud else " (point clouds not read)"))

    torch.manual_seed(cfg.seed)
    policy = ExpertPolicy(cfg, spec, normalizer)
    model = policy.model
    if resume is not None:
        model.load_state_dict(resume["model"])
    elif init_ckpt is not None:
        model.load_state_dict(ExpertPolicy.from_checkpoint(init_ckpt, use_ema=True).model.state_dict())
    model.set_phase(cfg.phase)
    model.to(info.device).train()

    dataset = ExpertWindowDataset(shard_set, cfg, normalizer)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.95, 0.999), eps=1e-8,
                                  weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                 num_training_steps=max(cfg.steps, 1))
    ema = EMAModel(model.parameters(), decay=cfg.ema_max_decay, min_decay=0.0, use_ema_warmup=True,
                   inv_gamma=1.0, power=cfg.ema_power) if cfg.use_ema else None
    start = 0
    if resume is not None:
        start = int(resume["step"])
        optimizer.load_state_dict(resume["optimizer"])
        lr_scheduler.load_state_dict(resume["lr_scheduler"])
        if ema is not None and resume.get("ema") is not None:
            ema.load_state_dict(resume["ema"])
            ema.to(info.device)
    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=device_ids) if info.enabled else model

    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.steps, cfg.seed, start,
                               info.rank, info.world_size)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=cfg.num_workers,
                        pin_memory=info.device.type == "cuda")
    logger = MetricsLogger(run_dir, enabled=info.is_main, tensorboard=tensorboard, resume_step=start)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        logger.truncate_after(start)
        normalizer.save(run_dir / "normalizer.json")
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    # Where the run's weights came from (phase 2: the phase-1 checkpoint); a resumed run keeps it.
    init_ref = resume.get("init") if resume is not None else (
        None if init_ckpt is None else init_ckpt["path"])

    def payload(step: int) -> dict[str, Any]:
        return {"config": cfg.to_dict(), "data_spec": spec.to_dict(), "normalizer": normalizer.to_dict(),
                "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
                "step": step, "shards": [shard_label(p) for p in shard_set.paths],
                "init": init_ref}

    _say(stream, info, f"{len(dataset)} windows; steps {start} -> {cfg.steps}, batch {cfg.batch_size} "
         f"x {info.world_size} process(es) on {info.device}")
    step, last_ckpt, last_loss = start, None, None
    interval_loss, interval_steps, interval_data_s = 0.0, 0, 0.0
    t_interval = time.perf_counter()
    t_wait = t_interval
    for batch in loader:
        data_s = time.perf_counter() - t_wait
        batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
        loss = policy.compute_loss(batch, step_generator(cfg.seed, step, info.rank), module=net)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip_norm)
        optimizer.step()
        lr_scheduler.step()
        if ema is not None:
            ema.step(model.parameters())
        step += 1
        interval_loss += float(loss.detach())
        interval_steps += 1
        interval_data_s += data_s
        if step % cfg.log_every == 0 or step == cfg.steps:
            elapsed = time.perf_counter() - t_interval
            last_loss = mean_across_processes(info, interval_loss / interval_steps)
            record = {"step": step, "loss": last_loss,
                      "samples_per_s": interval_steps * cfg.batch_size * info.world_size / elapsed,
                      "data_wait_frac": interval_data_s / elapsed, "lr": lr_scheduler.get_last_lr()[0],
                      "phase": cfg.phase}
            logger.log(record)
            _say(stream, info, f"step {step}/{cfg.steps} loss {last_loss:.4g} "
                 f"{record['samples_per_s']:.1f} samples/s")
            interval_loss, interval_steps, interval_data_s = 0.0, 0, 0.0
            t_interval = time.perf_counter()
        if info.is_main and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            last_ckpt = save_checkpoint(checkpoint_path(run_dir, step), payload(step))
            prune_checkpoints(run_dir, cfg.keep_checkpoints)
        t_wait = time.perf_counter()
    if info.is_main and step == start and latest_checkpoint(run_dir) is None:
        last_ckpt = save_checkpoint(checkpoint_path(run_dir, step), payload(step))
    logger.close()
    barrier(info)
    shutdown(info)
    return TrainResult(run_dir, step, last_ckpt or latest_checkpoint(run_dir), last_loss, info.rank)
