"""Compiled (numba) row scans of the classical stereo post-processing in `classical_stereo`.

Disparities are left-referenced pixels, float32, 0 = invalid: a left pixel x with disparity d
matches the right pixel x - d on the same row. Every kernel works row by row in O(W).

numba compiles each kernel on its first call in a process (cached on disk next to this file when
the folder is writable); importing this module compiles nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _background_row(row: np.ndarray, out: np.ndarray) -> None:
    """out[x] = the background (smaller) of the nearest valid values left and right of x on the
    row, or the one there is (0 where the row has none); valid pixels keep their own value."""
    W = row.shape[0]
    last = np.float32(0.0)
    for x in range(W):
        if row[x] > 0:
            last = row[x]
        out[x] = last
    last = np.float32(0.0)
    for x in range(W - 1, -1, -1):
        v = row[x]
        if v > 0:
            last = v
            continue
        left = out[x]
        if left > 0 and last > 0:
            out[x] = min(left, last)
        elif last > 0:
            out[x] = last


@njit(cache=True, nogil=True)
def background_disparity(disp: np.ndarray) -> np.ndarray:
    """Per pixel, the background estimate of `_background_row` (valid pixels: their own value)."""
    H, W = disp.shape
    out = np.empty((H, W), np.float32)
    for y in range(H):
        _background_row(disp[y], out[y])
    return out


@njit(cache=True, nogil=True)
def occlusion_masks_kernel(disp: np.ndarray, tolerance_px: float, occluded: np.ndarray,
                           outside: np.ndarray) -> None:
    """Classify the invalid pixels of a left disparity map by forward-warping it to the right view.

    Per row, a z-buffer keeps for each right column the largest disparity of the valid left pixels
    that land there (round(x - d)). An invalid left pixel takes its background estimate b (the
    smaller of the nearest valid disparities on its row): it is `outside` when x - b falls left of
    the right image, `occluded` when the right column it lands on shows a nearer surface
    (z > b + tolerance_px); otherwise neither (a plain mismatch)."""
    H, W = disp.shape
    z = np.zeros(W, np.float32)
    bg = np.empty(W, np.float32)
    for y in range(H):
        row = disp[y]
        z[:] = 0
        for x in range(W):
            d = row[x]
            if d > 0:
                xr = int(np.floor(x - d + 0.5))
                if 0 <= xr < W and d > z[xr]:
                    z[xr] = d
        _background_row(row, bg)
        for x in range(W):
            b = bg[x]
            if row[x] > 0 or b <= 0:
                continue
            xr = x - b
            if xr < -0.5:
                outside[y, x] = True
            elif z[int(np.floor(xr + 0.5))] > b + tolerance_px:
                occluded[y, x] = True
