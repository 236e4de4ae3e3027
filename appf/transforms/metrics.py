"""Point-cloud comparison metrics (metres)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["chamfer_distance", "coverage_radius"]


def _xyz(points: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3 or p.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (N, 3) array, got {p.shape}")
    return p[:, :3]


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance in metres: ``(mean_a min_b |a-b| + mean_b min_a |a-b|) / 2``
    (plain, not squared, Euclidean distances; extra columns beyond xyz are ignored)."""
    a, b = _xyz(a, "a"), _xyz(b, "b")
    d_ab, _ = cKDTree(b).query(a, k=1)
    d_ba, _ = cKDTree(a).query(b, k=1)
    return float(0.5 * (d_ab.mean() + d_ba.mean()))


def coverage_radius(cloud: np.ndarray, sample: np.ndarray) -> float:
    """Largest distance (m) from any point of ``cloud`` to its nearest point of ``sample``
    (the quantity farthest point sampling greedily minimises)."""
    cloud, sample = _xyz(cloud, "cloud"), _xyz(sample, "sample")
    d, _ = cKDTree(sample).query(cloud, k=1)
    return float(d.max())
