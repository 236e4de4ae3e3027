"""Compiled (numba) inner loops of the colour-guided filters in `edge_aware`.

Colour weights are exp(-|lab_p - lab_q|^2 / (2 sigma^2)) on OpenCV's 8-bit Lab guide. The guide
holds integers, so the squared distance is an integer and the weights come from a look-up table
(`colour_weight_lut`), computed with numpy's float32 exp: the kernels give the same weights as a
vectorised numpy evaluation. Pixels outside the image count as invalid (weight 0); the guide and the
values are clamped at the border (numpy's "edge" padding).

numba compiles each kernel on its first call in a process (cached on disk next to this file when
the folder is writable); importing this module compiles nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit


def colour_weight_lut(sigma_color: float) -> np.ndarray:
    """float32 weights exp(-d2 / (2 sigma^2)) for integer squared Lab distances d2 = 0, 1, ...,
    up to the first d2 whose weight underflows to 0 (all larger distances weigh 0 too)."""
    inv2s2 = np.float32(1.0 / (2.0 * sigma_color * sigma_color))
    n = int(np.ceil(110.0 / float(inv2s2))) + 2  # float32 exp(-x) is 0 beyond x ~ 103.3
    lut = np.exp(-np.arange(n, dtype=np.float32) * inv2s2)
    zero = np.flatnonzero(lut == 0)
    return lut[: zero[0] + 1] if len(zero) else np.append(lut, np.float32(0))


def lab_int(lab: np.ndarray) -> np.ndarray:
    """The float32 Lab guide as int32 (its values are whole numbers 0..255)."""
    return np.ascontiguousarray(lab, dtype=np.float32).astype(np.int32)


@njit(cache=True, nogil=True, inline="always")
def _weight(lab: np.ndarray, y0: int, x0: int, y1: int, x1: int, lut: np.ndarray) -> np.float32:
    d0 = lab[y0, x0, 0] - lab[y1, x1, 0]
    d1 = lab[y0, x0, 1] - lab[y1, x1, 1]
    d2 = lab[y0, x0, 2] - lab[y1, x1, 2]
    dist2 = d0 * d0 + d1 * d1 + d2 * d2
    return lut[dist2] if dist2 < len(lut) else np.float32(0.0)


@njit(cache=True, nogil=True)
def _gather_window(values, valid, lab, y, x, r, lut, vbuf, wbuf):
    """Values and colour weights (> 0) of the valid pixels in the window around (y, x); count."""
    H, W = values.shape
    n = 0
    for yy in range(y - r, y + r + 1):
        if yy < 0 or yy >= H:
            continue
        for xx in range(x - r, x + r + 1):
            if xx < 0 or xx >= W or not valid[yy, xx]:
                continue
            w = _weight(lab, yy, xx, y, x, lut)
            if w > 0:
                vbuf[n] = values[yy, xx]
                wbuf[n] = w
                n += 1
    return n


_BUCKETS = 16


@njit(cache=True, nogil=True)
def _weighted_select(vbuf, wbuf, n, half, sub_v, sub_w, bucket_w):
    """The smallest value v of vbuf[:n] whose cumulative weight (all weights of values <= v)
    reaches `half`. Bucket selection: spread the values over _BUCKETS equal value ranges, keep
    the first bucket whose cumulative weight reaches `half` (the answer lies in it), subtract the
    weight below it and repeat inside it until one value is left. Every pass is branch-free over
    the values (no data-dependent swaps, unlike a quickselect); vbuf/wbuf are left untouched."""
    m = n
    src_v, src_w = vbuf, wbuf
    while True:
        lo, hi = src_v[0], src_v[0]
        for j in range(1, m):
            lo = min(lo, src_v[j])
            hi = max(hi, src_v[j])
        if hi == lo or m == 1:
            return lo
        scale = _BUCKETS / (np.float64(hi) - np.float64(lo))
        bucket_w[:] = 0.0
        for j in range(m):
            bucket_w[min(int((src_v[j] - lo) * scale), _BUCKETS - 1)] += src_w[j]
        pick, below = -1, 0.0
        for k in range(_BUCKETS):
            if bucket_w[k] > 0:
                pick = k
                if below + bucket_w[k] >= half:
                    break
                below += bucket_w[k]
        half -= below
        kept = 0
        for j in range(m):  # in-place compaction (kept <= j) once src is sub_*
            v, w = src_v[j], src_w[j]
            sub_v[kept] = v
            sub_w[kept] = w
            kept += min(int((v - lo) * scale), _BUCKETS - 1) == pick
        m = kept
        src_v, src_w = sub_v, sub_w


@njit(cache=True, nogil=True)
def weighted_median_kernel(values, valid, lab, ys, xs, radius, lut, med, sup, tot):
    """Fill med/sup/tot (float32, len(ys)) with the colour-weighted median of the valid values
    in the (2r+1)^2 window around each (ys[i], xs[i]), the fraction of weight within 1 of it,
    and the total weight (0 and median 0 where the window has no valid value)."""
    k = (2 * radius + 1) ** 2
    vbuf, sub_v = np.empty(k, np.float32), np.empty(k, np.float32)
    wbuf, sub_w = np.empty(k, np.float32), np.empty(k, np.float32)
    bucket_w = np.empty(_BUCKETS, np.float64)
    for i in range(len(ys)):
        n = _gather_window(values, valid, lab, ys[i], xs[i], radius, lut, vbuf, wbuf)
        if n == 0:
            med[i] = 0.0
            sup[i] = 0.0
            tot[i] = 0.0
            continue
        total = 0.0
        for j in range(n):
            total += wbuf[j]
        m = _weighted_select(vbuf, wbuf, n, 0.5 * total, sub_v, sub_w, bucket_w)
        near = 0.0
        for j in range(n):
            if abs(vbuf[j] - m) <= 1.0:
                near += wbuf[j]
        med[i] = m
        tot[i] = total
        sup[i] = near / max(total, 1e-12)


@njit(cache=True, nogil=True)
def same_surface_mean_kernel(values, lab, radius, tolerance, lut, out):
    """out[y, x] = colour-weighted mean of the valid neighbours within `tolerance` of
    values[y, x] (the pixel itself included); invalid pixels (<= 0) are copied."""
    H, W = values.shape
    for y in range(H):
        for x in range(W):
            v = values[y, x]
            if v <= 0:
                out[y, x] = v
                continue
            num = 0.0
            den = 0.0
            for dy in range(-radius, radius + 1):
                yy = min(max(y + dy, 0), H - 1)
                for dx in range(-radius, radius + 1):
                    xx = min(max(x + dx, 0), W - 1)
                    nv = values[yy, xx]
                    if nv <= 0 or abs(nv - v) > tolerance:
                        continue
                    w = _weight(lab, yy, xx, y, x, lut)
                    num += np.float32(w * nv)
                    den += w
            out[y, x] = num / den if den > 0 else v
