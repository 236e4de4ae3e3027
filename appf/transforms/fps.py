"""Deterministic farthest point sampling (FPS) on xyz coordinates (fpsample, single-threaded C++).

Rules shared by both methods:
- coordinates only, compared in float32 (fpsample computes in float32); non-finite input raises;
- exact duplicate points are removed first (the first occurrence is kept);
- when fewer than ``n`` distinct points exist, every distinct point is selected once and the output
  is padded by cycling through the selected indices (real points, never zeros); ``n_real`` counts the
  distinct points selected (``min(n, distinct)``).

Methods:
- ``"exact"``: true greedy FPS (``fpsample.fps_sampling``) starting at the first (deduplicated)
  point, i.e. input index 0 -- the same set DP3 gets from pytorch3d with ``random_start_point=False``.
- ``"fast"``: ``fpsample.bucket_fps_kdline_sampling`` (QuickFPS; kd-tree height 5 below 32k
  points, else 7). It is exact greedy FPS too, so its coverage equals ``"exact"``'s, but it starts
  from ``start_idx=0`` of fpsample's *internal kd-tree order*, not input index 0: the start point is
  fixed (deterministic) yet the selected set differs from ``"exact"``'s. About 10x faster than
  ``"exact"`` at 100k points (measured ~25 ms vs ~250 ms, one core).

No generic pre-reduction happens here: a voxel grid (sort-based) cost as much as QuickFPS itself on
100k points. Image-derived clouds are pre-reduced cheaply in image space instead
(``appf.transforms.pointcloud``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import fpsample
import numpy as np

__all__ = ["FpsResult", "farthest_point_sample", "unique_point_indices"]

_METHODS = ("fast", "exact")
_H1 = np.uint64(0x9E3779B97F4A7C15)
_H2 = np.uint64(0xC2B2AE3D27D4EB4F)
_H3 = np.uint64(0x165667B19E3779F9)


@dataclass(frozen=True)
class FpsResult:
    """``indices``: int64 (n,) into the input points; ``n_real``: distinct points among them."""

    indices: np.ndarray
    n_real: int


def _as_xyz32(points_xyz: np.ndarray) -> np.ndarray:
    p = np.asarray(points_xyz)
    if p.ndim != 2 or p.shape[1] < 3:
        raise ValueError(f"points must have shape (M, 3) (extra columns are ignored), got {p.shape}")
    p = np.ascontiguousarray(p[:, :3], dtype=np.float32)
    if p.shape[0] and not np.isfinite(p).all():
        raise ValueError("points contain NaN or inf; filter invalid depth before sampling")
    return p


def unique_point_indices(xyz32: np.ndarray) -> np.ndarray:
    """Sorted int64 indices of the first occurrence of every distinct row of a float32 (M, 3) array.

    A 64-bit hash sort finds candidate groups; only hash collisions are compared exactly.
    """
    xyz32 = np.asarray(xyz32, dtype=np.float32)[:, :3]
    m = xyz32.shape[0]
    bits = np.ascontiguousarray(xyz32 + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0
    h = bits[:, 0].astype(np.uint64) * _H1
    h ^= bits[:, 1].astype(np.uint64) * _H2
    h ^= bits[:, 2].astype(np.uint64) * _H3
    hs = np.sort(h)
    if not (hs[1:] == hs[:-1]).any():  # common case: no equal hash, hence no duplicate
        return np.arange(m, dtype=np.int64)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    eq = hs[1:] == hs[:-1]
    grouped = np.zeros(m, dtype=bool)
    grouped[1:] |= eq
    grouped[:-1] |= eq
    cand = np.sort(order[grouped])
    rows = np.ascontiguousarray(bits[cand]).view(np.dtype((np.void, 12))).ravel()
    _, first = np.unique(rows, return_index=True)
    keep = np.ones(m, dtype=bool)
    keep[cand] = False
    keep[cand[first]] = True
    return np.flatnonzero(keep).astype(np.int64)


def _kdline_height(n_pts: int) -> int:
    h = 5 if n_pts < 32768 else 7
    return max(1, min(h, int(math.log2(n_pts))))


def _greedy(xyz32: np.ndarray, k: int, method: str) -> np.ndarray:
    m = xyz32.shape[0]
    if k >= m:
        k = m
    if m == 1:
        return np.zeros(1, dtype=np.int64)
    if method == "exact" or m < 4:
        idx = fpsample.fps_sampling(xyz32, k, start_idx=0)
    else:
        idx = fpsample.bucket_fps_kdline_sampling(xyz32, k, _kdline_height(m), start_idx=0)
    return np.asarray(idx, dtype=np.int64)


def farthest_point_sample(
    points_xyz: np.ndarray,
    n: int = 1024,
    method: str = "fast",
) -> FpsResult:
    """Select ``n`` indices of ``points_xyz`` (M, 3+) by farthest point sampling (see module doc).

    Raises ValueError for M == 0, n < 1 or an unknown method.
    """
    if method not in _METHODS:
        raise ValueError(f"unknown FPS method {method!r}; use one of {_METHODS}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    xyz = _as_xyz32(points_xyz)
    if xyz.shape[0] == 0:
        raise ValueError("farthest_point_sample got an empty point cloud (M == 0); nothing to sample")
    cand = unique_point_indices(xyz)
    sub = xyz[cand] if cand.size != xyz.shape[0] else xyz
    sel = cand[_greedy(sub, n, method)]
    n_real = int(sel.size)
    if n_real < n:
        sel = np.resize(sel, n)
    return FpsResult(indices=sel.astype(np.int64, copy=False), n_real=n_real)


def resample_frames(point_cloud: np.ndarray, point_count_real: np.ndarray, n: int,
                    method: str = "fast") -> tuple[np.ndarray, np.ndarray]:
    """Re-sample stored clouds to ``n`` points per frame by FPS over each frame's real points.

    ``point_cloud`` (T, M, C) with, per frame, ``point_count_real[t]`` real points first (the rest
    is padding). Returns ``indices`` (T, n) int64 into axis 1 and ``n_real`` (T,) int32 (distinct
    real points selected; a frame with fewer than ``n`` pads by repeating them, like the writer).
    """
    cloud = np.asarray(point_cloud)
    real = np.asarray(point_count_real).reshape(-1)
    if cloud.ndim != 3 or real.shape[0] != cloud.shape[0]:
        raise ValueError(f"expected point_cloud (T, M, C) and point_count_real (T,), got "
                         f"{cloud.shape} and {real.shape}")
    indices = np.empty((cloud.shape[0], n), dtype=np.int64)
    n_real = np.empty(cloud.shape[0], dtype=np.int32)
    for t in range(cloud.shape[0]):
        m = int(min(max(real[t], 1), cloud.shape[1]))
        res = farthest_point_sample(cloud[t, :m, :3], n, method)
        indices[t], n_real[t] = res.indices, res.n_real
    return indices, n_real
