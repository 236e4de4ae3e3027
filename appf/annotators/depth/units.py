"""Unit and resolution conversions shared by the depth backends (pure numpy/cv2, no I/O).

Conventions: depth in metres with 0 = invalid; disparity in pixels of the image it was computed
on, left-referenced (a left pixel u matches the right pixel u - d), 0 = invalid; pixel centres at
integer coordinates (see appf.transforms.geometry).
"""

from __future__ import annotations

import cv2
import numpy as np

from appf.transforms.geometry import crop_intrinsics, resize_intrinsics

__all__ = [
    "disparity_to_depth_m",
    "depth_m_to_disparity",
    "pad_amounts",
    "pad_intrinsics",
    "resize_intrinsics",
    "scaled_size",
    "resize_depth_m",
    "clean_depth_m",
]


def disparity_to_depth_m(disparity_px: np.ndarray, fx_px: float, baseline_m: float,
                         doffs_px: float = 0.0) -> np.ndarray:
    """Depth z = fx * B / (d + doffs) in metres (float32).

    `fx_px` is the rectified left focal length at the resolution `disparity_px` was computed at;
    `doffs_px` the x-difference of the principal points (cx_right - cx_left; 0 for most rigs,
    31.086 px for Middlebury Motorcycle). d + doffs <= 0 or non-finite disparity -> depth 0.
    """
    d = np.asarray(disparity_px, dtype=np.float64) + float(doffs_px)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape, dtype=np.float32)
    out[valid] = (float(fx_px) * float(baseline_m) / d[valid]).astype(np.float32)
    return out


def depth_m_to_disparity(depth_m: np.ndarray, fx_px: float, baseline_m: float,
                         doffs_px: float = 0.0) -> np.ndarray:
    """Disparity d = fx * B / z - doffs in pixels (float32); invalid depth (<= 0, non-finite) -> 0."""
    z = np.asarray(depth_m, dtype=np.float64)
    valid = np.isfinite(z) & (z > 0)
    out = np.zeros(z.shape, dtype=np.float32)
    out[valid] = (float(fx_px) * float(baseline_m) / z[valid] - float(doffs_px)).astype(np.float32)
    return out


def pad_amounts(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding that brings (H, W) up to multiples of `multiple`,
    split evenly with the odd pixel at the bottom/right (centred, like FoundationStereo's padder)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    ph = (-height) % multiple
    pw = (-width) % multiple
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def pad_intrinsics(K: np.ndarray, top: int, left: int) -> np.ndarray:
    """Intrinsics of an image padded by `top` rows and `left` columns: cx + left, cy + top."""
    return crop_intrinsics(K, -top, -left)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(H', W') = round(scale * (H, W)), at least 1 pixel each."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_depth_m(depth_m: np.ndarray, to_hw: tuple[int, int]) -> np.ndarray:
    """Resize depth (H, W) or (B, H, W) in metres to `to_hw` without mixing invalid (0) pixels in.

    Bilinear where every contributing source pixel is valid, nearest elsewhere (so a pixel next to
    a hole or an image edge keeps a measured value or stays 0 instead of being averaged with 0).
    """
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim == 3:
        return np.stack([resize_depth_m(d, to_hw) for d in depth]) if len(depth) else \
            np.zeros((0, *to_hw), np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) or (B, H, W), got {depth.shape}")
    h, w = int(to_hw[0]), int(to_hw[1])
    depth = clean_depth_m(depth)  # NaN / inf / negative -> 0 on every path, resized or not
    if depth.shape == (h, w):
        return depth
    valid = (depth > 0).astype(np.float32)
    lin = cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR)
    support = cv2.resize(valid, (w, h), interpolation=cv2.INTER_LINEAR)
    near = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.where(support >= 1.0 - 1e-6, lin, near).astype(np.float32)


def clean_depth_m(depth_m: np.ndarray) -> np.ndarray:
    """float32 copy with NaN, inf and negative values set to 0 (invalid)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)

