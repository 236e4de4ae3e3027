"""Per-frame point cloud: depth views -> filtered, cropped, fused, FPS-downsampled (n, 6) cloud.

Per view, all in image space until the last moment:
1. if a crop box is given, only the image rectangle its 8 corners project into is processed
   (plus a filter margin, so results equal whole-image filtering);
2. valid depth (near/far, 0/NaN/inf invalid) -> flying-pixel filter -> isolated-pixel filter
   (``appf.transforms.outliers``) -> optional restriction to ``keep_labels``;
3. ``"fast"``: deterministic pre-reduction in image space: the kept pixels are grouped in s x s
   blocks and each block with a kept pixel contributes one (the kept pixel nearest the block
   centre, fixed priority order). ``s`` is the largest integer keeping about
   ``cfg.candidates`` points over all views, so thin structures (any block with a kept pixel) survive.
   ``"exact"``: no reduction (s = 1);
4. only those pixels are unprojected, moved to the base frame (float32) and cropped.
Views are fused and farthest-point sampled to ``n_points`` (padding repeats real points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np

from appf.transforms.crop import CropBox
from appf.transforms.fps import farthest_point_sample
from appf.transforms.outliers import flying_pixel_mask, isolated_pixel_mask, valid_depth_mask

__all__ = ["CloudConfig", "CameraView", "FrameCloud", "EmptyCloudError", "frame_point_cloud"]


class EmptyCloudError(ValueError):
    """No point survived filtering, label restriction and cropping for a frame."""


@dataclass(frozen=True)
class CloudConfig:
    """Settings of the per-frame stage (metres; thresholds documented in ``outliers``)."""

    n_points: int = 1024
    crop: CropBox | None = None
    near_m: float = 0.05
    far_m: float = 5.0
    flying_rel_threshold: float = 0.03
    flying_abs_threshold_m: float = 0.01
    flying_window: int = 3
    isolated_window: int = 5
    isolated_min_neighbors: int = 4
    keep_labels: tuple[int, ...] | None = None  # keep only pixels whose label is in this set
    fps_method: str = "fast"
    candidates: int = 8192  # "fast": approximate points kept by the image-space pre-reduction

    def __post_init__(self) -> None:
        if self.n_points < 1:
            raise ValueError(f"n_points must be >= 1, got {self.n_points}")
        if not 0 <= self.near_m < self.far_m:
            raise ValueError(f"need 0 <= near_m < far_m, got {self.near_m}, {self.far_m}")
        if self.fps_method not in ("fast", "exact"):
            raise ValueError(f"fps_method must be 'fast' or 'exact', got {self.fps_method!r}")
        if self.fps_method == "fast" and self.candidates < self.n_points:
            raise ValueError(f"candidates ({self.candidates}) must be >= n_points ({self.n_points})")
        if self.keep_labels is not None:
            object.__setattr__(self, "keep_labels", tuple(int(x) for x in self.keep_labels))


@dataclass
class CameraView:
    """One camera at one time step. depth (H, W) float32 metres, 0 = invalid; rgb (H, W, 3)
    uint8; K (3, 3) pixels; T_base_cam (4, 4) camera -> base; labels (H, W) uint8 or None."""

    depth_m: np.ndarray
    rgb: np.ndarray
    K: np.ndarray
    T_base_cam: np.ndarray
    labels: np.ndarray | None = None


@dataclass
class FrameCloud:
    """points (n, 6) float32: xyz in the base frame (m) + rgb in [0, 1]; labels (n,) uint8
    (0 without labels); n_real: distinct real points (the rest repeat them)."""

    points: np.ndarray
    labels: np.ndarray
    n_real: int


@dataclass
class _ViewCandidates:
    xyz: np.ndarray  # (k, 3) float32, base frame
    flat: np.ndarray  # (k,) int64 pixel index into the full image (row-major)
    counts: dict[str, int] = field(default_factory=dict)


def _roi(view: CameraView, crop: CropBox | None, margin: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(inner, outer) pixel rectangles (top, bottom, left, right): inner bounds the crop box's
    projection (+1 px), outer adds the filter margin. Whole image when no box or it reaches z <= 0."""
    h, w = view.depth_m.shape
    full = (0, h, 0, w)
    if crop is None:
        return full, full
    T = np.asarray(view.T_base_cam, dtype=np.float64)
    R, t = T[:3, :3], T[:3, 3]
    pc = (crop.corners() - t) @ R  # base -> camera: R^T (p - t)
    if not (pc[:, 2] > 1e-9).all():
        return full, full
    K = np.asarray(view.K, dtype=np.float64)
    u = K[0, 0] * pc[:, 0] / pc[:, 2] + K[0, 1] * pc[:, 1] / pc[:, 2] + K[0, 2]
    v = K[1, 1] * pc[:, 1] / pc[:, 2] + K[1, 2]
    top, bottom = int(math.floor(v.min())) - 1, int(math.ceil(v.max())) + 2
    left, right = int(math.floor(u.min())) - 1, int(math.ceil(u.max())) + 2
    inner = (max(top, 0), min(bottom, h), max(left, 0), min(right, w))
    if inner[0] >= inner[1] or inner[2] >= inner[3]:
        return (0, 0, 0, 0), (0, 0, 0, 0)
    outer = (max(inner[0] - margin, 0), min(inner[1] + margin, h), max(inner[2] - margin, 0), min(inner[3] + margin, w))
    return inner, outer


@lru_cache(maxsize=32)
def _block_priority(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (dy, dx) in an s x s block ordered centre-first, and a uint8 (s, s) weight image
    where a higher weight means higher priority (weight = s*s - rank)."""
    dy, dx = np.mgrid[0:s, 0:s]
    c = (s - 1) / 2.0
    rank_order = np.argsort(((dx - c) ** 2 + (dy - c) ** 2).ravel(), kind="stable")  # ties: raster order
    offsets = np.stack([dy.ravel()[rank_order], dx.ravel()[rank_order]], axis=1)
    weights = np.zeros(s * s, dtype=np.uint8)
    weights[rank_order] = s * s - np.arange(s * s)
    offsets.flags.writeable = False
    weights = weights.reshape(s, s)
    weights.flags.writeable = False
    return offsets, weights


@lru_cache(maxsize=8)
def _weight_image(s: int, h: int, w: int) -> np.ndarray:
    _, wb = _block_priority(s)
    img = np.tile(wb, (-(-h // s), -(-w // s)))[:h, :w].copy()
    img.flags.writeable = False
    return img


def _block_reduce(keep: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows, cols (int64) of one kept pixel per s x s block (blocks anchored at (0, 0))."""
    if s <= 1:
        flat = np.flatnonzero(keep)
        return flat // keep.shape[1], flat % keep.shape[1]
    h, w = keep.shape
    if s * s > 255:
        raise ValueError(f"block size {s} too large (s*s must be <= 255); raise cfg.candidates")
    score = cv2.multiply(keep.view(np.uint8), _weight_image(s, h, w))
    block_max = cv2.dilate(score, np.ones((s, s), np.uint8), anchor=(0, 0))[::s, ::s]
    nz = np.flatnonzero(block_max)
    offsets, _ = _block_priority(s)
    off = offsets[s * s - block_max.ravel()[nz].astype(np.int64)]
    wb = block_max.shape[1]
    return (nz // wb) * s + off[:, 0], (nz % wb) * s + off[:, 1]


def _label_mask(labels: np.ndarray, keep_labels: tuple[int, ...]) -> np.ndarray:
    if labels.dtype == np.uint8:
        lut = np.zeros(256, dtype=bool)
        lut[[x for x in keep_labels if 0 <= x < 256]] = True
        return lut[labels]
    return np.isin(labels, np.asarray(keep_labels))


def _filtered_keep(view: CameraView, cfg: CloudConfig, outer: tuple[int, int, int, int]) -> tuple[np.ndarray, dict[str, int]]:
    top, bottom, left, right = outer
    d = np.asarray(view.depth_m)[top:bottom, left:right]
    if d.dtype != np.float32:
        d = d.astype(np.float32)
    valid = valid_depth_mask(d, cfg.near_m, cfg.far_m)
    keep = flying_pixel_mask(d, cfg.flying_rel_threshold, cfg.flying_abs_threshold_m, cfg.flying_window, valid=valid)
    keep = isolated_pixel_mask(keep, cfg.isolated_window, cfg.isolated_min_neighbors)
    counts = {"valid": int(np.count_nonzero(valid)), "filtered": int(np.count_nonzero(keep))}
    if cfg.keep_labels is not None:
        if view.labels is None:
            raise ValueError("cfg.keep_labels is set but a CameraView has no labels")
        keep &= _label_mask(np.asarray(view.labels)[top:bottom, left:right], cfg.keep_labels)
        counts["labelled"] = int(np.count_nonzero(keep))
    return keep, counts


def _view_candidates(view: CameraView, cfg: CloudConfig, keep: np.ndarray, s: int, origin: tuple[int, int], counts: dict[str, int]) -> _ViewCandidates:
    rows, cols = _block_reduce(keep, s)
    rows = rows + origin[0]
    cols = cols + origin[1]
    w = view.depth_m.shape[1]
    flat = rows * w + cols
    z = np.asarray(view.depth_m).reshape(-1)[flat].astype(np.float32, copy=False)
    K = np.asarray(view.K, dtype=np.float64)
    fx, fy, cx, cy, sk = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    yn = (rows.astype(np.float32) - np.float32(cy)) * np.float32(1.0 / fy)
    xn = (cols.astype(np.float32) - np.float32(cx)) * np.float32(1.0 / fx)
    if sk != 0.0:
        xn -= np.float32(sk / fx) * yn
    T = np.asarray(view.T_base_cam, dtype=np.float32)
    # p_base = R @ (z * [xn, yn, 1]) + t, written out to avoid an (k, 3) camera-frame temporary
    M = np.stack([xn, yn, np.ones_like(xn)], axis=1)
    xyz = (M @ T[:3, :3].T) * z[:, None]
    xyz += T[:3, 3]
    if cfg.crop is not None:
        inside = cfg.crop.contains(xyz)
        xyz, flat = xyz[inside], flat[inside]
    counts["candidates_in_crop"] = int(flat.size)
    return _ViewCandidates(xyz=xyz, flat=flat, counts=counts)


def _empty_message(cfg: CloudConfig, per_view: list[dict[str, int]]) -> str:
    crop = cfg.crop.to_list() if cfg.crop is not None else None
    return (
        f"no point left for this frame: per-view counts {per_view} "
        f"(valid depth in [{cfg.near_m}, {cfg.far_m}] m -> after flying/isolated filters -> after "
        f"keep_labels={cfg.keep_labels} -> inside crop box {crop} (base frame, m)). The crop box or the "
        "label mask left no point: widen or move the crop box (check T_base_cam maps camera to base), "
        "relax keep_labels, the near/far range or the outlier thresholds."
    )


def frame_point_cloud(views: Sequence[CameraView], cfg: CloudConfig) -> FrameCloud:
    """Fuse camera views into one FPS-downsampled (n_points, 6) cloud in the base frame.

    Raises EmptyCloudError (a ValueError) when no point survives, ValueError on bad inputs.
    """
    if len(views) == 0:
        raise ValueError("frame_point_cloud needs at least one CameraView")
    margin = cfg.flying_window // 2 + cfg.isolated_window // 2
    prepared = []
    for view in views:
        d = np.asarray(view.depth_m)
        if d.ndim != 2:
            raise ValueError(f"depth_m must be (H, W), got {d.shape}")
        inner, outer = _roi(view, cfg.crop, margin)
        if inner[1] <= inner[0] or inner[3] <= inner[2]:
            keep = np.zeros((0, 0), dtype=bool)
            prepared.append((view, keep, (0, 0), {"valid": 0, "filtered": 0}))
            continue
        keep, counts = _filtered_keep(view, cfg, outer)
        keep = keep[inner[0] - outer[0] : inner[1] - outer[0], inner[2] - outer[2] : inner[3] - outer[2]]
        prepared.append((view, keep, (inner[0], inner[2]), counts))

    s = 1
    if cfg.fps_method == "fast":
        total = sum(int(np.count_nonzero(k)) for _, k, _, _ in prepared)
        s = max(1, min(15, int(math.sqrt(total / cfg.candidates))))

    cands = [_view_candidates(v, cfg, k, s, o, c) for v, k, o, c in prepared]
    sizes = [c.flat.size for c in cands]
    if sum(sizes) == 0:
        raise EmptyCloudError(_empty_message(cfg, [c.counts for c in cands]))
    xyz = np.concatenate([c.xyz for c in cands]) if len(cands) > 1 else cands[0].xyz
    res = farthest_point_sample(xyz, cfg.n_points, cfg.fps_method)
    return _gather(views, cands, np.cumsum([0] + sizes), xyz, res.indices, res.n_real)


def _gather(views: Sequence[CameraView], cands: list[_ViewCandidates], starts: np.ndarray, xyz: np.ndarray, idx: np.ndarray, n_real: int) -> FrameCloud:
    n = idx.size
    points = np.empty((n, 6), dtype=np.float32)
    points[:, :3] = xyz[idx]
    labels = np.zeros(n, dtype=np.uint8)
    which = np.searchsorted(starts, idx, side="right") - 1
    for i, (view, c) in enumerate(zip(views, cands)):
        sel = np.flatnonzero(which == i)
        if sel.size == 0:
            continue
        flat = c.flat[idx[sel] - starts[i]]
        rgb = np.asarray(view.rgb).reshape(-1, 3)[flat]
        points[sel, 3:] = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
        if view.labels is not None:
            labels[sel] = np.asarray(view.labels).reshape(-1)[flat]
    return FrameCloud(points=points, labels=labels, n_real=n_real)
