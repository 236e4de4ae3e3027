"""Image-space depth outlier filters (OpenCV morphology; no point cloud needed).

All masks are boolean (H, W). Depth is in metres with 0 (or NaN / inf) meaning invalid.

Thresholds (defaults):
- ``flying_pixel_mask``: a pixel sits on a depth discontinuity when, within its ``window`` x
  ``window`` neighbourhood (3x3), ``max - min`` of the *valid* depths exceeds
  ``max(abs_threshold_m, rel_threshold * depth)`` = max(1 cm, 3 % of its depth). A flat or gently
  slanted surface varies by well under 3 % over two pixels, while the mixed "flying" pixels between a
  foreground edge and the background (and the edge pixels on both sides) are flagged.
- ``isolated_pixel_mask``: a valid pixel is kept when at least ``min_neighbors`` (4) of the other
  ``window**2 - 1`` (24 for 5x5) pixels around it are valid; specks and single pixels are removed.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["valid_depth_mask", "flying_pixel_mask", "isolated_pixel_mask", "depth_range", "check_window"]

_BIG = np.float32(3.0e38)


def check_window(window: int) -> int:
    """``window`` as an int; ValueError unless it is a positive odd number of pixels."""
    window = int(window)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of pixels, got {window}")
    return window


def valid_depth_mask(depth_m: np.ndarray, near_m: float = 0.0, far_m: float = np.inf) -> np.ndarray:
    """True where ``near_m <= depth <= far_m`` and depth > 0 and finite (metres)."""
    d = np.asarray(depth_m)
    lo = max(float(near_m), 0.0)
    m = (d > 0) if lo == 0.0 else (d >= lo)  # NaN compares False
    if np.isfinite(far_m):
        m &= d <= far_m
    else:
        m &= d < np.inf
    return m


def depth_range(depth_m: np.ndarray, valid: np.ndarray, window: int = 3) -> np.ndarray:
    """``max - min`` of valid depths in each ``window`` x ``window`` neighbourhood (metres, float32).

    Pixels whose neighbourhood holds no valid depth get a negative value (never flagged).
    """
    window = check_window(window)
    d = np.ascontiguousarray(depth_m, dtype=np.float32)
    m = np.ascontiguousarray(valid, dtype=bool).view(np.uint8)
    kernel = np.ones((window, window), np.uint8)
    hi = cv2.dilate(cv2.bitwise_and(d, d, mask=m), kernel)  # invalid -> 0
    lo_src = np.full(d.shape, _BIG, np.float32)  # invalid -> +big
    cv2.copyTo(d, m, lo_src)
    hi -= cv2.erode(lo_src, kernel)
    return hi


def flying_pixel_mask(
    depth_m: np.ndarray,
    rel_threshold: float = 0.03,
    abs_threshold_m: float = 0.01,
    window: int = 3,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Keep mask: True for valid pixels that are NOT at a depth discontinuity (see module doc).

    ``valid`` defaults to ``valid_depth_mask(depth_m)``; invalid pixels are False in the result and
    are ignored inside neighbourhoods.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if valid is None:
        valid = valid_depth_mask(d)
    rng = depth_range(d, valid, window)
    thr = d * np.float32(rel_threshold)
    np.maximum(thr, np.float32(abs_threshold_m), out=thr)
    return valid & (rng <= thr)


def isolated_pixel_mask(valid: np.ndarray, window: int = 5, min_neighbors: int = 4) -> np.ndarray:
    """Keep mask: True for valid pixels with >= ``min_neighbors`` valid pixels among the other
    ``window**2 - 1`` in their neighbourhood (outside the image counts as invalid)."""
    window = check_window(window)
    if not 0 <= min_neighbors <= window * window - 1:
        raise ValueError(f"min_neighbors must be in [0, {window * window - 1}], got {min_neighbors}")
    v = np.asarray(valid, dtype=bool)
    if min_neighbors == 0:
        return v.copy()
    src = v.view(np.uint8)
    ddepth = -1 if window * window <= 255 else cv2.CV_16U
    count = cv2.boxFilter(src, ddepth, (window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return v & (count > min_neighbors)  # count includes the pixel itself
