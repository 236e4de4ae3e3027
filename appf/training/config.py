"""The expert's configuration: one typed record, loadable from YAML/JSON, stored in checkpoints.

Defaults follow DP3 (horizon 16, 2 observation steps, 8 action steps, DDPM 100 train steps,
DDIM 10 inference steps, prediction of the clean sample, AdamW 1e-4 / wd 1e-6, cosine schedule
with 500 warm-up steps, EMA power 0.75; U-Net down_dims 512/1024/2048).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appf.schemas.config_io import dataclass_from_dict, load_mapping
from appf.training.errors import TrainingError

PHASES = ("pretrain", "finetune")

# Fields that describe the network; a fine-tuning run must keep them equal to its --init checkpoint.
POINT_ENCODER_PRECISIONS = ("bfloat16", "float32")
ARCHITECTURE_FIELDS = (
    "horizon", "n_obs_steps", "n_action_steps", "point_dims", "point_out_dim", "state_out_dim",
    "guidance_out_dim", "down_dims", "kernel_size", "n_groups", "diffusion_step_embed_dim",
    "num_train_timesteps", "prediction_type", "beta_schedule",
)


@dataclass
class ExpertConfig:
    """Everything one expert training run needs.

    Units: ``guidance_noise_std`` is in normalised units (channels scaled to [-1, 1]);
    ``lr`` per optimiser step; ``batch_size`` per process (global = batch_size x world size).
    """

    phase: str = "pretrain"
    # windows (steps)
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    # network
    point_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    point_out_dim: int = 64
    state_out_dim: int = 64
    guidance_out_dim: int = 64
    down_dims: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128
    # "bfloat16": the point encoder's forward runs under torch.autocast (its Linear layers in
    # bf16; 1.8x faster phase-2 steps on a bf16-capable CPU, same loss curve); "float32": off
    point_encoder_precision: str = "bfloat16"
    # diffusion
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    prediction_type: str = "sample"
    beta_schedule: str = "squaredcos_cap_v2"
    # guidance
    guidance_noise_std: float = 0.1
    # optimisation
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-6
    lr_scheduler: str = "cosine"
    lr_warmup_steps: int = 500
    grad_clip_norm: float = 0.0  # <= 0: no clipping (DP3 clips nothing)
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    use_ema: bool = True
    # data
    preload_point_clouds: bool = True
    max_norm_frames: int = 2000
    num_workers: int = 0
    # bookkeeping
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 500
    keep_checkpoints: int = 3

    def __post_init__(self) -> None:
        self.point_dims = [int(d) for d in self.point_dims]
        self.down_dims = [int(d) for d in self.down_dims]
        problems = []
        if self.phase not in PHASES:
            problems.append(f"phase must be one of {PHASES}, got {self.phase!r}")
        if self.n_obs_steps < 1 or self.n_action_steps < 1:
            problems.append("n_obs_steps and n_action_steps must be >= 1")
        if self.horizon < self.n_obs_steps - 1 + self.n_action_steps:
            problems.append(f"horizon ({self.horizon}) must be >= n_obs_steps - 1 + n_action_steps "
                            f"({self.n_obs_steps - 1 + self.n_action_steps})")
        if self.horizon % (2 ** (len(self.down_dims) - 1)):
            problems.append(f"horizon ({self.horizon}) must be divisible by 2**(len(down_dims)-1) = "
                            f"{2 ** (len(self.down_dims) - 1)} (the U-Net halves it per level)")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd (the U-Net's convolutions keep the horizon "
                            f"length only then), got {self.kernel_size}")
        if any(d % self.n_groups for d in self.down_dims):
            problems.append(f"every down_dims entry must be divisible by n_groups ({self.n_groups})")
        if self.point_encoder_precision not in POINT_ENCODER_PRECISIONS:
            problems.append(f"point_encoder_precision must be one of {POINT_ENCODER_PRECISIONS}, "
                            f"got {self.point_encoder_precision!r}")
        if self.prediction_type not in ("sample", "epsilon"):
            problems.append(f"prediction_type must be 'sample' or 'epsilon', got {self.prediction_type!r}")
        if self.num_inference_steps < 1 or self.num_inference_steps > self.num_train_timesteps:
            problems.append("num_inference_steps must lie in [1, num_train_timesteps]")
        if self.guidance_noise_std < 0:
            problems.append(f"guidance_noise_std must be >= 0, got {self.guidance_noise_std}")
        if self.steps < 0 or self.batch_size < 1:
            problems.append("steps must be >= 0 and batch_size >= 1")
        if self.log_every < 1 or self.checkpoint_every < 1 or self.keep_checkpoints < 1:
            problems.append("log_every, checkpoint_every and keep_checkpoints must be >= 1")
        if problems:
            raise TrainingError("invalid expert config: " + "; ".join(problems))

    @property
    def use_point_cloud(self) -> bool:
        """Phase 2 conditions on the point cloud; phase 1 uses the learned null embedding."""
        return self.phase == "finetune"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExpertConfig":
        return dataclass_from_dict(cls, data, "expert config", TrainingError)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "ExpertConfig":
        """Load YAML or JSON; ``overrides`` that are not None win over the file."""
        return cls.from_dict(load_mapping(path, "expert config", TrainingError, overrides))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "ExpertConfig":
        return self.from_dict({**self.to_dict(), **changes})
