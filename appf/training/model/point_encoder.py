"""DP3's point encoder (PointNetEncoderXYZ): per-point MLP with LayerNorm, max-pool, projection."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class PointEncoder(nn.Module):
    """(B, N, in_dim) points -> (B, out_dim) feature.

    Per point: ``Linear -> LayerNorm -> ReLU`` for each hidden width (DP3: 64, 128, 256); then a
    max over points and ``Linear -> LayerNorm`` to ``out_dim`` (DP3: 64). Colour is not used."""

    def __init__(self, in_dim: int = 3, hidden: Sequence[int] = (64, 128, 256), out_dim: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.LayerNorm(h), nn.ReLU()]
            d = h
        self.mlp = nn.Sequential(*layers)
        self.projection = nn.Sequential(nn.Linear(d, out_dim), nn.LayerNorm(out_dim))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.projection(self.mlp(points).max(dim=-2).values)
