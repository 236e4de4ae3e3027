"""Colour-guided (edge-aware) filters for disparity and depth maps (numpy/cv2; the per-pixel
window loops are compiled with numba in `edge_aware_kernels`).

A map holds one value per pixel (disparity in pixels or depth in metres), 0 = invalid. The guide
is the RGB image (H, W, 3) uint8 of the same view; weights are Gaussian in CIE-Lab colour
distance (8-bit Lab units), so values propagate along a surface and not across an object boundary.
"""

from __future__ import annotations

import cv2
import numpy as np

from appf.annotators.depth import edge_aware_kernels as kernels


def lab_guide(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> OpenCV 8-bit Lab as float32 (H, W, 3): every channel in [0, 255],
    the units of every `sigma_color` here."""
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB).astype(np.float32)


def weighted_median_at(values: np.ndarray, valid: np.ndarray, lab: np.ndarray, ys: np.ndarray,
                       xs: np.ndarray, radius: int, sigma_color: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour-weighted median of the valid values in a (2r+1)^2 window around each (ys, xs).

    Returns (median, support, total): `support` is the fraction of weight within 1 unit of the
    median (a confidence), `total` the summed weight (0 where the window holds no valid value;
    the median is then 0). Compiled loop: `edge_aware_kernels.weighted_median_kernel`.
    """
    n = len(ys)
    med, sup, tot = (np.zeros(n, np.float32) for _ in range(3))
    if n:
        kernels.weighted_median_kernel(
            np.ascontiguousarray(values, dtype=np.float32), np.ascontiguousarray(valid, dtype=bool),
            kernels.lab_int(lab), np.asarray(ys, np.int64), np.asarray(xs, np.int64), int(radius),
            kernels.colour_weight_lut(sigma_color), med, sup, tot)
    return med, sup, tot


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def dilate_cross(mask: np.ndarray, iterations: int = 1) -> np.ndarray:
    """Binary dilation by the 3x3 cross, `iterations` times (outside the image counts as False):
    scipy.ndimage.binary_dilation's default, through OpenCV (an order of magnitude faster)."""
    return cv2.dilate(mask.astype(np.uint8), _CROSS, iterations=int(iterations)) > 0


def refine_discontinuities(disp: np.ndarray, lab: np.ndarray, radius: int = 7,
                           sigma_color: float = 10.0, band_px: int = 3,
                           jump_px: float = 1.0) -> np.ndarray:
    """Colour-weighted median on the valid pixels within `band_px` of a disparity jump (> jump_px):
    moves object boundaries onto colour edges (undoes the foreground fattening of window matching).
    """
    valid = disp > 0
    gx = np.abs(np.diff(disp, axis=1, append=disp[:, -1:]))
    gy = np.abs(np.diff(disp, axis=0, append=disp[-1:]))
    jumps = (gx > jump_px) | (gy > jump_px)
    near = dilate_cross(jumps, band_px) & valid
    ys, xs = np.nonzero(near)
    out = disp.copy()
    if len(ys):
        med, _, tot = weighted_median_at(disp, valid, lab, ys, xs, radius, sigma_color)
        keep = tot > 0
        out[ys[keep], xs[keep]] = med[keep]
    return out


def nearest_along_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For every pixel, the nearest valid value to its left and right on the same row and the
    distances to them in pixels (value 0 and distance 2**30 where there is none)."""
    H, W = values.shape
    valid = values > 0
    cols = np.broadcast_to(np.arange(W)[None, :], (H, W))
    left = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right = np.fliplr(np.minimum.accumulate(np.fliplr(np.where(valid, cols, W)), axis=1))
    rows = np.arange(H)[:, None]
    vl = np.where(left >= 0, values[rows, np.clip(left, 0, W - 1)], 0.0)
    vr = np.where(right < W, values[rows, np.clip(right, 0, W - 1)], 0.0)
    far = 1 << 30
    return vl, vr, np.where(left >= 0, cols - left, far), np.where(right < W, right - cols, far)


def small_holes(values: np.ndarray, max_area_px: int) -> np.ndarray:
    """Mask of invalid pixels in 4-connected holes of at most `max_area_px` pixels."""
    holes = (values <= 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=4)
    small = stats[:, cv2.CC_STAT_AREA] <= max_area_px
    return small[labels] & (holes > 0)


def fill_by_rings(values: np.ndarray, lab: np.ndarray, target: np.ndarray, radius: int = 7,
                  sigma_color: float = 10.0, max_rings: int = 64) -> np.ndarray:
    """Fill the `target` pixels from the outside in, one ring per pass, each with the
    colour-weighted median of the valid values around it."""
    out = values.copy()
    todo = target & (out <= 0)
    for _ in range(max_rings):
        if not todo.any():
            break
        valid = out > 0
        ring = todo & dilate_cross(valid)
        ys, xs = np.nonzero(ring)
        if not len(ys):
            break
        med, _, tot = weighted_median_at(out, valid, lab, ys, xs, radius, sigma_color)
        ok = tot > 0
        out[ys[ok], xs[ok]] = med[ok]
        todo[ys[ok], xs[ok]] = False
    return out


def smooth_subpixel(values: np.ndarray, lab: np.ndarray, radius: int = 2,
                    sigma_color: float = 10.0, tolerance: float = 1.0) -> np.ndarray:
    """Sub-pixel refinement: colour-weighted mean over the neighbours whose value lies within
    `tolerance` of the pixel's own (same surface), which averages out the quantisation and
    pixel-locking noise of the matcher without crossing depth edges. Invalid pixels stay 0.
    Compiled loop: `edge_aware_kernels.same_surface_mean_kernel`."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    out = np.empty_like(values)
    kernels.same_surface_mean_kernel(values, kernels.lab_int(lab), int(radius), float(tolerance),
                                     kernels.colour_weight_lut(sigma_color), out)
    return out


def directional_fill(values: np.ndarray, lab: np.ndarray, sigma_color: float = 10.0,
                     max_distance_px: float | None = None) -> np.ndarray:
    """Fill every invalid pixel from the nearest valid pixels left, right, above and below it,
    weighting each candidate by colour similarity (Gaussian, sigma_color in Lab units) and by
    1 / distance; a pixel takes the candidate of largest weight (no blending across an edge).
    Pixels farther than `max_distance_px` from every candidate stay 0 (None: no limit)."""
    out = values.astype(np.float32).copy()
    holes = out <= 0
    if not holes.any() or not (~holes).any():
        return out
    H, W = out.shape
    cand_v, cand_w = [], []
    inv2s2 = 1.0 / (2.0 * sigma_color * sigma_color)
    for transpose in (False, True):
        v = out.T if transpose else out
        L = lab.transpose(1, 0, 2) if transpose else lab
        vl, vr, dl, dr = nearest_along_rows(v)
        cols = np.arange(v.shape[1])[None, :]
        rows = np.arange(v.shape[0])[:, None]
        for val, dist, sign in ((vl, dl, -1), (vr, dr, 1)):
            src = np.clip(cols + sign * np.minimum(dist, v.shape[1]), 0, v.shape[1] - 1)
            diff = L[rows, src] - L
            w = np.exp(-np.einsum("hwc,hwc->hw", diff, diff) * inv2s2) / np.maximum(dist, 1)
            ok = val > 0
            if max_distance_px is not None:
                ok &= dist <= max_distance_px
            w = np.where(ok, w, 0.0)
            if transpose:
                val, w = val.T, w.T
            cand_v.append(val)
            cand_w.append(w + ok.T * 1e-30 if transpose else w + ok * 1e-30)
    V = np.stack(cand_v)
    Wt = np.stack(cand_w)
    best = np.argmax(Wt, axis=0)
    chosen = np.take_along_axis(V, best[None], 0)[0]
    has = np.take_along_axis(Wt, best[None], 0)[0] > 0
    out[holes & has] = chosen[holes & has]
    return out
