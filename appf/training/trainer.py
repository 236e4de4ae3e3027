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


@dataclass
class _Run:
    """Everything the step loop of one run works with (built by `_build_run`)."""

    cfg: ExpertConfig
    info: DistInfo
    run_dir: Path
    spec: DataSpec
    shard_set: ShardSet
    normalizer: Normalizer
    policy: ExpertPolicy
    net: torch.nn.Module  # the model, DDP-wrapped under torchrun
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    ema: EMAModel | None
    start: int
    init_ref: str | None  # where the weights came from (phase 2: the phase-1 checkpoint)

    def payload(self, step: int) -> dict[str, Any]:
        """The checkpoint of this run at ``step``."""
        model = self.policy.model
        return {"config": self.cfg.to_dict(), "data_spec": self.spec.to_dict(),
                "normalizer": self.normalizer.to_dict(), "model": model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "lr_scheduler": self.lr_scheduler.state_dict(),
                "step": step, "shards": [shard_label(p) for p in self.shard_set.paths], "init": self.init_ref}


def _build_data(shards: str | Path, cfg: ExpertConfig, resume: dict | None, init_ckpt: dict | None
                ) -> tuple[ShardSet, Normalizer]:
    """The shards and the normalizer: a resumed run's own; else fitted here (phase 2 keeps the
    init checkpoint's state/action/guidance statistics and fits the point clouds')."""
    shard_set = ShardSet(find_shards(shards), need_point_cloud=cfg.use_point_cloud)
    for other, what in ((resume, "checkpoint"), (init_ckpt, "--init checkpoint")):
        if other is not None:
            _check_compatible(cfg, shard_set.spec, other, what)
    if resume is not None:
        return shard_set, Normalizer.from_dict(resume["normalizer"])
    base = Normalizer.from_dict(init_ckpt["normalizer"]) if init_ckpt is not None else None
    return shard_set, fit_normalizer(shard_set, cfg.use_point_cloud, cfg.max_norm_frames, base)


def _build_model(cfg: ExpertConfig, spec: DataSpec, normalizer: Normalizer, resume: dict | None,
                 init_ckpt: dict | None, device: torch.device) -> ExpertPolicy:
    """The policy, its weights from the resumed run, else the init checkpoint's EMA, else random."""
    torch.manual_seed(cfg.seed)
    policy = ExpertPolicy(cfg, spec, normalizer)
    if resume is not None:
        policy.model.load_state_dict(resume["model"])
    elif init_ckpt is not None:
        policy.model.load_state_dict(ExpertPolicy.from_checkpoint(init_ckpt, use_ema=True).model.state_dict())
    policy.model.set_phase(cfg.phase)
    policy.model.to(device).train()
    return policy


def _build_optimisation(cfg: ExpertConfig, model: torch.nn.Module
                        ) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer, Any, EMAModel | None]:
    """(trainable parameters, AdamW, LR schedule, EMA or None)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.95, 0.999), eps=1e-8,
                                  weight_decay=cfg.weight_decay)
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                                 num_training_steps=max(cfg.steps, 1))
    ema = EMAModel(model.parameters(), decay=cfg.ema_max_decay, min_decay=0.0, use_ema_warmup=True,
                   inv_gamma=1.0, power=cfg.ema_power) if cfg.use_ema else None
    return trainable, optimizer, lr_scheduler, ema


def _resume_state(run: _Run, resume: dict) -> int:
    """Load the optimiser, schedule and EMA state of a resumed run; the step to continue from."""
    run.optimizer.load_state_dict(resume["optimizer"])
    run.lr_scheduler.load_state_dict(resume["lr_scheduler"])
    if run.ema is not None and resume.get("ema") is not None:
        run.ema.load_state_dict(resume["ema"])
        run.ema.to(run.info.device)
    return int(resume["step"])


def _build_run(shards: str | Path, run_dir: Path, cfg: ExpertConfig, init: str | Path | None,
               info: DistInfo, stream: TextIO | None) -> _Run:
    cfg, resume, init_ckpt = _starting_point(run_dir, cfg, init, stream, info)
    shard_set, normalizer = _build_data(shards, cfg, resume, init_ckpt)
    spec = shard_set.spec
    _say(stream, info, f"{cfg.phase}: {len(shard_set.paths)} shard(s), {shard_set.n_episodes} episodes, "
         f"{shard_set.n_frames} frames; state {spec.state_dim}, action {spec.action_dim}, arms {spec.arms}"
         + (f", {spec.n_points} points" if cfg.use_point_cloud else " (point clouds not read)"))
    policy = _build_model(cfg, spec, normalizer, resume, init_ckpt, info.device)
    model = policy.model
    trainable, optimizer, lr_scheduler, ema = _build_optimisation(cfg, model)
    device_ids = [info.local_rank] if info.device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=device_ids) if info.enabled else model
    init_ref = resume.get("init") if resume is not None else (
        None if init_ckpt is None else init_ckpt["path"])
    run = _Run(cfg, info, run_dir, spec, shard_set, normalizer, policy, net, trainable, optimizer,
               lr_scheduler, ema, 0, init_ref)
    if resume is not None:
        run.start = _resume_state(run, resume)
    return run


def _one_step(run: _Run, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
    """Forward, backward, clip, AdamW, LR schedule, EMA; the (detached) loss. Gradients are
    zeroed in place (set_to_none=False), so their buffers are reused from step to step."""
    cfg, info = run.cfg, run.info
    batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
    loss = run.policy.compute_loss(batch, step_generator(cfg.seed, step, info.rank), module=run.net)
    run.optimizer.zero_grad(set_to_none=False)
    loss.backward()
    if cfg.grad_clip_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.trainable, cfg.grad_clip_norm)
    run.optimizer.step()
    run.lr_scheduler.step()
    if run.ema is not None:
        run.ema.step(run.policy.model.parameters())
    return loss.detach()


class _IntervalMeter:
    """Loss and timing over one logging interval; `flush` logs the interval and starts the next."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.steps, self.data_s, self.t0 = 0.0, 0, 0.0, time.perf_counter()

    def add(self, loss: torch.Tensor, data_s: float) -> None:
        self.loss += float(loss)
        self.steps += 1
        self.data_s += data_s

    def flush(self, run: _Run, step: int, logger: MetricsLogger, stream: TextIO | None) -> float:
        """Log the interval (loss averaged over processes) and return that loss."""
        elapsed = time.perf_counter() - self.t0
        loss = mean_across_processes(run.info, self.loss / self.steps)
        record = {"step": step, "loss": loss,
                  "samples_per_s": self.steps * run.cfg.batch_size * run.info.world_size / elapsed,
                  "data_wait_frac": self.data_s / elapsed, "lr": run.lr_scheduler.get_last_lr()[0],
                  "phase": run.cfg.phase}
        logger.log(record)
        _say(stream, run.info, f"step {step}/{run.cfg.steps} loss {loss:.4g} "
             f"{record['samples_per_s']:.1f} samples/s")
        self.reset()
        return loss


def _open_run_dir(run: _Run, tensorboard: bool) -> MetricsLogger:
    """The metrics logger; the main process also writes the run's normalizer and config."""
    info = run.info
    logger = MetricsLogger(run.run_dir, enabled=info.is_main, tensorboard=tensorboard,
                           resume_step=run.start)
    if info.is_main:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        logger.truncate_after(run.start)
        run.normalizer.save(run.run_dir / "normalizer.json")
        (run.run_dir / "config.json").write_text(json.dumps(run.cfg.to_dict(), indent=1))
    return logger


def _loader(run: _Run) -> DataLoader:
    dataset = ExpertWindowDataset(run.shard_set, run.cfg, run.normalizer)
    cfg, info = run.cfg, run.info
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.steps, cfg.seed, run.start,
                               info.rank, info.world_size)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=cfg.num_workers,
                      pin_memory=info.device.type == "cuda")


def _checkpoint_due(run: _Run, step: int) -> bool:
    return run.info.is_main and (step % run.cfg.checkpoint_every == 0 or step == run.cfg.steps)


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
    run = _build_run(shards, Path(out), cfg, init, info, stream)
    cfg, run_dir = run.cfg, run.run_dir
    loader = _loader(run)
    logger = _open_run_dir(run, tensorboard)
    _say(stream, info, f"{len(loader.dataset)} windows; steps {run.start} -> {cfg.steps}, batch "
         f"{cfg.batch_size} x {info.world_size} process(es) on {info.device}")
    step, last_ckpt, last_loss = run.start, None, None
    meter = _IntervalMeter()
    t_wait = time.perf_counter()
    for batch in loader:
        data_s = time.perf_counter() - t_wait
        meter.add(_one_step(run, batch, step), data_s)
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            last_loss = meter.flush(run, step, logger, stream)
        if _checkpoint_due(run, step):
            last_ckpt = save_checkpoint(checkpoint_path(run_dir, step), run.payload(step))
            prune_checkpoints(run_dir, cfg.keep_checkpoints)
        t_wait = time.perf_counter()
    if info.is_main and step == run.start and latest_checkpoint(run_dir) is None:
        last_ckpt = save_checkpoint(checkpoint_path(run_dir, step), run.payload(step))
    logger.close()
    barrier(info)
    shutdown(info)
    return TrainResult(run_dir, step, last_ckpt or latest_checkpoint(run_dir), last_loss, info.rank)
