"""Axis-aligned workspace crop box in the robot base frame (metres)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["CropBox"]


def _triple(value: Sequence[float], name: str) -> tuple[float, float, float]:
    vals = tuple(float(v) for v in value)
    if len(vals) != 3:
        raise ValueError(f"CropBox.{name} needs 3 values (x, y, z) in metres, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"CropBox.{name} must be finite, got {vals}")
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class CropBox:
    """Box ``min_xyz <= p <= max_xyz`` (inclusive on every face), base frame, metres."""

    min_xyz: tuple[float, float, float]
    max_xyz: tuple[float, float, float]

    def __post_init__(self) -> None:
        lo = _triple(self.min_xyz, "min_xyz")
        hi = _triple(self.max_xyz, "max_xyz")
        bad = [axis for axis, a, b in zip("xyz", lo, hi) if not a < b]
        if bad:
            raise ValueError(
                f"CropBox needs min < max on every axis; violated on {', '.join(bad)}: "
                f"min_xyz={lo}, max_xyz={hi} (metres, base frame)"
            )
        object.__setattr__(self, "min_xyz", lo)
        object.__setattr__(self, "max_xyz", hi)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask (N,) of points (N, 3) inside the box, faces included."""
        p = np.asarray(points)
        if p.ndim != 2 or p.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {p.shape}")
        dtype = p.dtype if p.dtype in (np.float32, np.float64) else np.float64
        lo = np.asarray(self.min_xyz, dtype=dtype)
        hi = np.asarray(self.max_xyz, dtype=dtype)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]
        m = (x >= lo[0]) & (x <= hi[0])
        m &= (y >= lo[1]) & (y <= hi[1])
        m &= (z >= lo[2]) & (z <= hi[2])
        return m

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3), float64."""
        lo, hi = self.min_xyz, self.max_xyz
        return np.array(
            [[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)],
            dtype=np.float64,
        )

    def to_list(self) -> list[list[float]]:
        """JSON form ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``."""
        return [list(self.min_xyz), list(self.max_xyz)]

    @classmethod
    def from_list(cls, value: Sequence[Sequence[float]]) -> "CropBox":
        """Inverse of :meth:`to_list`; also accepts a flat ``[xmin, ymin, zmin, xmax, ymax, zmax]``."""
        vals = list(value)
        if len(vals) == 6 and all(isinstance(v, (int, float)) for v in vals):
            return cls(tuple(vals[:3]), tuple(vals[3:]))  # type: ignore[arg-type]
        if len(vals) != 2:
            raise ValueError(
                "CropBox.from_list expects [[xmin, ymin, zmin], [xmax, ymax, zmax]] "
                f"or 6 numbers, got {value!r}"
            )
        return cls(tuple(vals[0]), tuple(vals[1]))  # type: ignore[arg-type]
