"""Per-channel min-max normalisation to [-1, 1] (diffusion_policy's LinearNormalizer, "limits").

``y = scale * x + offset``. A channel whose range is below ``range_eps`` (a constant channel) gets
scale 1 and is centred on 0 instead of being blown up. The statistics are fitted once over the
shards and travel with every checkpoint (``to_dict`` / ``from_dict``, plain JSON numbers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from appf.training.errors import TrainingError

ArrayLike = np.ndarray | torch.Tensor


class Normalizer:
    """Named per-channel affine maps; channels are the last axis of each field."""

    def __init__(self, stats: Mapping[str, Mapping[str, list[float] | np.ndarray]] | None = None):
        self.stats: dict[str, dict[str, np.ndarray]] = {}
        for name, s in (stats or {}).items():
            self.stats[name] = {k: np.asarray(v, dtype=np.float64) for k, v in s.items()}

    @staticmethod
    def limits(data: np.ndarray, range_eps: float = 1e-4) -> dict[str, np.ndarray]:
        """Fit min-max statistics of ``data`` (..., C) to the output range [-1, 1]."""
        x = np.asarray(data, dtype=np.float64).reshape(-1, np.shape(data)[-1])
        if x.shape[0] == 0:
            raise TrainingError("cannot fit normalisation statistics on zero frames")
        if not np.all(np.isfinite(x)):
            raise TrainingError("cannot fit normalisation statistics: the data has non-finite values")
        lo, hi = x.min(axis=0), x.max(axis=0)
        rng = hi - lo
        constant = rng < range_eps
        rng[constant] = 2.0
        scale = 2.0 / rng
        offset = -1.0 - scale * lo
        offset[constant] = -lo[constant]
        return {"scale": scale, "offset": offset, "min": lo, "max": hi}

    def fit(self, name: str, data: np.ndarray) -> None:
        self.stats[name] = self.limits(data)

    def has(self, name: str) -> bool:
        return name in self.stats

    def _params(self, name: str, like: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        if name not in self.stats:
            raise TrainingError(f"no normalisation statistics for {name!r} (have {sorted(self.stats)}); "
                                "the checkpoint or dataset was built without them")
        s = self.stats[name]
        if like.shape[-1] != s["scale"].size:
            raise TrainingError(f"{name}: last axis has {like.shape[-1]} channels, the statistics "
                                f"have {s['scale'].size}")
        if isinstance(like, torch.Tensor):
            return (torch.as_tensor(s["scale"], dtype=like.dtype, device=like.device),
                    torch.as_tensor(s["offset"], dtype=like.dtype, device=like.device))
        return s["scale"].astype(like.dtype), s["offset"].astype(like.dtype)

    def normalize(self, name: str, x: ArrayLike) -> ArrayLike:
        scale, offset = self._params(name, x)
        return x * scale + offset

    def unnormalize(self, name: str, y: ArrayLike) -> ArrayLike:
        scale, offset = self._params(name, y)
        return (y - offset) / scale

    def units_per_normalised(self, name: str) -> np.ndarray:
        """Raw units (e.g. metres) of one normalised unit, per channel: ``1 / scale``."""
        return 1.0 / self.stats[name]["scale"]

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        return {n: {k: v.tolist() for k, v in s.items()} for n, s in self.stats.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Normalizer":
        return cls(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        return cls.from_dict(json.loads(Path(path).read_text()))
