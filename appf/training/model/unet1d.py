"""A FiLM-conditioned 1D temporal U-Net (diffusion_policy / DP3 ``ConditionalUnet1D``).

Input (B, T, action_dim) noisy actions, a diffusion timestep per sample and a global condition
vector (B, G); output (B, T, action_dim). Each residual block is Conv1d-GroupNorm-Mish twice,
with the first block's output scaled and shifted (FiLM) by a linear map of
``[timestep embedding, global condition]``. T must be divisible by ``2 ** (len(down_dims) - 1)``.
"""

from __future__ import annotations

from typing import Sequence

import math

import torch
from torch import nn


class SinusoidalStepEmbedding(nn.Module):
    """Diffusion-step embedding ``[sin(t w_i), cos(t w_i)]``, ``w_i = 10000 ** (-i / (dim/2 - 1))``
    (DP3's SinusoidalPosEmb; diffusers' ``Timesteps(dim, False, downscale_freq_shift=1)``)."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000) * torch.arange(half) / (half - 1)),
                             persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int):
        super().__init__(nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
                         nn.GroupNorm(n_groups, out_ch), nn.Mish())


class FiLMResidualBlock1D(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block1 = Conv1dBlock(in_ch, out_ch, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        out = self.block2(scale * self.block1(x) + bias)
        return out + self.residual(x)


class ConditionalUnet1D(nn.Module):
    def __init__(self, action_dim: int, global_cond_dim: int, down_dims: Sequence[int] = (512, 1024, 2048),
                 kernel_size: int = 5, n_groups: int = 8, diffusion_step_embed_dim: int = 128):
        super().__init__()
        dsed = diffusion_step_embed_dim
        self.step_encoder = nn.Sequential(
            SinusoidalStepEmbedding(dsed),
            nn.Linear(dsed, 4 * dsed), nn.Mish(), nn.Linear(4 * dsed, dsed))
        cond_dim = dsed + global_cond_dim
        dims = [action_dim, *down_dims]
        in_out = list(zip(dims[:-1], dims[1:]))
        block = lambda i, o: FiLMResidualBlock1D(i, o, cond_dim, kernel_size, n_groups)  # noqa: E731
        self.down = nn.ModuleList()
        for k, (d_in, d_out) in enumerate(in_out):
            last = k == len(in_out) - 1
            self.down.append(nn.ModuleList([
                block(d_in, d_out), block(d_out, d_out),
                nn.Conv1d(d_out, d_out, 3, stride=2, padding=1) if not last else nn.Identity()]))
        mid = dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        for d_in, d_out in reversed(in_out[1:]):
            self.up.append(nn.ModuleList([
                block(2 * d_out, d_in), block(d_in, d_in),
                nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1)]))
        self.final = nn.Sequential(Conv1dBlock(down_dims[0], down_dims[0], kernel_size, n_groups),
                                   nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | int,
                global_cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)                                     # (B, D, T)
        t = torch.as_tensor(timestep, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        cond = torch.cat([self.step_encoder(t).to(x.dtype), global_cond], dim=-1)
        skips = []
        for res1, res2, down in self.down:
            x = res2(res1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for res in self.mid:
            x = res(x, cond)
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(res2(res1(x, cond), cond))
        return self.final(x).transpose(1, 2)
