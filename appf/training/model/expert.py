"""The APPF action expert: conditioning encoders + the FiLM U-Net denoiser.

Conditioning (the "global condition" of the U-Net) is, per observation step, the point-cloud
feature and the state feature, concatenated over the ``n_obs_steps`` steps, followed by the
guidance feature. Phase 1 (action pre-training) puts a learned null embedding in the point-cloud
slot; phase 2 (point-cloud fine-tuning) encodes the cloud. ``set_phase`` freezes the part that
phase does not use (the point encoder in phase 1, the null embedding in phase 2), so DDP sees
no unused trainable parameter.
"""

from __future__ import annotations

import torch
from torch import nn

from appf.training.config import ExpertConfig
from appf.training.model.point_encoder import PointEncoder
from appf.training.model.unet1d import ConditionalUnet1D
from appf.training.shards import DataSpec


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """DP3's state MLP: Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class APPFExpert(nn.Module):
    def __init__(self, cfg: ExpertConfig, spec: DataSpec):
        super().__init__()
        self.n_obs_steps = cfg.n_obs_steps
        self.point_encoder_precision = cfg.point_encoder_precision
        self.point_encoder = PointEncoder(3, cfg.point_dims, cfg.point_out_dim)
        self.null_point_feature = nn.Parameter(torch.randn(cfg.point_out_dim))
        self.state_mlp = _mlp(spec.state_dim, cfg.state_out_dim)
        self.guidance_mlp = _mlp(spec.guidance_dim, cfg.guidance_out_dim)
        global_cond = cfg.n_obs_steps * (cfg.point_out_dim + cfg.state_out_dim) + cfg.guidance_out_dim
        self.unet = ConditionalUnet1D(spec.action_dim, global_cond, cfg.down_dims, cfg.kernel_size,
                                      cfg.n_groups, cfg.diffusion_step_embed_dim)
        self.set_phase(cfg.phase)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.point_encoder.requires_grad_(phase == "finetune")
        self.null_point_feature.requires_grad_(phase == "pretrain")

    def encode(self, state: torch.Tensor, guidance: torch.Tensor,
               point_cloud: torch.Tensor | None = None) -> torch.Tensor:
        """Global condition (B, G) from normalised state (B, n_obs, S), guidance (B, 7 x arms) and
        point cloud xyz (B, n_obs, N, 3); ``point_cloud=None`` uses the null embedding."""
        B, n_obs = state.shape[:2]
        if point_cloud is None:
            pc = self.null_point_feature.expand(B, n_obs, -1)
        else:
            pc = self.encode_points(point_cloud.flatten(0, 1)).view(B, n_obs, -1)
        per_step = torch.cat([pc, self.state_mlp(state)], dim=-1).flatten(1)
        return torch.cat([per_step, self.guidance_mlp(guidance)], dim=-1)

    def encode_points(self, points: torch.Tensor) -> torch.Tensor:
        """(M, N, 3) xyz -> (M, point_out_dim) float32 features; the encoder runs under bf16
        autocast unless ``point_encoder_precision`` is "float32" (its activations are most of
        a phase-2 step's memory traffic)."""
        if self.point_encoder_precision == "float32":
            return self.point_encoder(points)
        with torch.autocast(points.device.type, dtype=torch.bfloat16):
            return self.point_encoder(points).float()

    def denoise(self, noisy_action: torch.Tensor, timesteps: torch.Tensor | int,
                cond: torch.Tensor) -> torch.Tensor:
        return self.unet(noisy_action, timesteps, cond)

    def forward(self, noisy_action: torch.Tensor, timesteps: torch.Tensor, state: torch.Tensor,
                guidance: torch.Tensor, point_cloud: torch.Tensor | None = None) -> torch.Tensor:
        """One denoising prediction (the training forward; DDP wraps this)."""
        return self.denoise(noisy_action, timesteps, self.encode(state, guidance, point_cloud))
