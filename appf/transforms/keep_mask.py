"""Compiled (numba) row-streaming kernels of the per-frame point-cloud stage (``pointcloud``).

``filtered_keep_mask`` computes what ``outliers.valid_depth_mask`` -> ``outliers.flying_pixel_mask``
-> ``outliers.isolated_pixel_mask`` -> label mask -> per-pixel crop test compute with whole-image
OpenCV passes, plus the 8x8-cell statistics of the pre-reduction, streaming over rows with a few
rows of buffers. The whole-image passes (about 15 temporaries the size of the frame) were
memory-bound; here the float rows stay in L1 and each inner loop is a plain element-wise loop that
LLVM vectorises. Same float32 arithmetic as the OpenCV path, so the masks are equal (tests compare
them).

numba compiles each kernel on its first call in a process (cached on disk next to this file when
the folder is writable); importing this module compiles nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from appf.transforms.outliers import check_window

__all__ = ["CELL", "KeepMask", "filtered_keep_mask"]

CELL = 8  # pixels per side of the pre-reduction's statistics cells
_BIG = np.float32(3.0e38)


@njit(cache=True, nogil=True, inline="always")
def _max(a, b):
    return a if a > b else b


@njit(cache=True, nogil=True, inline="always")
def _min(a, b):
    return a if a < b else b


@njit(cache=True, nogil=True)
def _valid_row(d_row, near, far, strict_near, valid_row, hi_row, lo_row):
    """Valid flags (0/1) of a depth row, and its depths with invalid -> 0 (hi) / +big (lo)."""
    for c in range(d_row.size):
        x = d_row[c]
        ok = ((x > near) if strict_near else (x >= near)) & (x <= far) & (x < np.inf)  # NaN: False
        valid_row[c] = ok
        hi_row[c] = x if ok else np.float32(0.0)
        lo_row[c] = x if ok else _BIG


# Loops below index with non-negative offsets only (``a[c + k]``, never ``a[c - k]``): numba's
# negative-index wrap-around check on ``c - k`` stops LLVM from vectorising them (4-7x slower).


@njit(cache=True, nogil=True)
def _window_extrema_row(hi_src, lo_src, r, hi_out, lo_out):
    """hi_out / lo_out = max of hi_src / min of lo_src over c-r .. c+r (clipped at the ends)."""
    w = hi_src.size
    for c in range(w):
        hi_out[c] = hi_src[c]
        lo_out[c] = lo_src[c]
    for k in range(1, min(r, w - 1) + 1):
        for c in range(w - k):
            hi_out[c] = _max(hi_out[c], hi_src[c + k])
            lo_out[c] = _min(lo_out[c], lo_src[c + k])
        for c in range(w - k):
            hi_out[c + k] = _max(hi_out[c + k], hi_src[c])
            lo_out[c + k] = _min(lo_out[c + k], lo_src[c])


@njit(cache=True, nogil=True)
def _combine_rows(ring_hi, ring_lo, r0, r1, col_hi, col_lo):
    """col_hi / col_lo = element-wise max / min of the rings' rows r0..r1 (slot = row % size)."""
    n = ring_hi.shape[0]
    hi, lo = ring_hi[r0 % n], ring_lo[r0 % n]
    for c in range(col_hi.size):
        col_hi[c] = hi[c]
        col_lo[c] = lo[c]
    for rr in range(r0 + 1, r1 + 1):
        hi, lo = ring_hi[rr % n], ring_lo[rr % n]
        for c in range(col_hi.size):
            col_hi[c] = _max(col_hi[c], hi[c])
            col_lo[c] = _min(col_lo[c], lo[c])


@njit(cache=True, nogil=True)
def _flying_row(d_row, valid_row, hi, lo, rel, abs_m, out_row):
    """Keep = valid and (max - min of the window's valid depths) <= max(abs_m, rel * depth)."""
    for c in range(d_row.size):
        thr = _max(d_row[c] * rel, abs_m)
        out_row[c] = valid_row[c] & (hi[c] - lo[c] <= thr)


@njit(cache=True, nogil=True)
def _flying_filter(d, near, far, strict_near, rel, abs_m, fr, valid, flying):
    """Fill ``valid`` and ``flying`` (H, W) uint8 0/1, streaming rows through rings of 2*fr+1 rows
    of row-wise window extrema."""
    h, w = d.shape
    n = 2 * fr + 1
    ring_hi = np.empty((n, w), np.float32)
    ring_lo = np.empty((n, w), np.float32)
    src_hi = np.empty(w, np.float32)
    src_lo = np.empty(w, np.float32)
    for r in range(h + fr):
        if r < h:
            _valid_row(d[r], near, far, strict_near, valid[r], src_hi, src_lo)
            _window_extrema_row(src_hi, src_lo, fr, ring_hi[r % n], ring_lo[r % n])
        ro = r - fr
        if ro >= 0:
            _combine_rows(ring_hi, ring_lo, max(ro - fr, 0), min(ro + fr, h - 1), src_hi, src_lo)
            _flying_row(d[ro], valid[ro], src_hi, src_lo, rel, abs_m, flying[ro])


@njit(cache=True, nogil=True)
def _window_count_row(mask_row, r, out):
    """out[c] = number of ones in mask_row over c-r .. c+r (clipped at the ends)."""
    w = mask_row.size
    for c in range(w):
        out[c] = mask_row[c]
    for k in range(1, min(r, w - 1) + 1):
        for c in range(w - k):
            out[c] += mask_row[c + k]
        for c in range(w - k):
            out[c + k] += mask_row[c]


@njit(cache=True, nogil=True)
def _add_row(acc, row, sign):
    for c in range(acc.size):
        acc[c] += sign * row[c]


@njit(cache=True, nogil=True)
def _count(mask_row):
    s = 0
    for c in range(mask_row.size):
        s += mask_row[c]
    return s


@njit(cache=True, nogil=True)
def _crop_row(d_row, px, py, pz, lo3, hi3, out):
    """out &= (lo3 <= (px, py, pz) * depth <= hi3) on every axis (float32)."""
    lx, ly, lz, hx, hy, hz = lo3[0], lo3[1], lo3[2], hi3[0], hi3[1], hi3[2]
    for c in range(out.size):
        z = d_row[c]
        x, y, zz = px[c] * z, py[c] * z, pz[c] * z
        out[c] &= (x >= lx) & (x <= hx) & (y >= ly) & (y <= hy) & (zz >= lz) & (zz <= hz)


@njit(cache=True, nogil=True)
def _final_row(flying, count, min_count, d_row, planes, prow, pcol, lo3, hi3, use_crop, extra, use_extra, out,
               counts):
    """Isolated-pixel test, labels and crop test of one row of the inner rectangle; adds the
    survivors of each test to counts[1:4]."""
    for c in range(out.size):
        out[c] = flying[c] & (count[c] > min_count)
    counts[1] += _count(out)
    if use_extra:
        for c in range(out.size):
            out[c] &= extra[c]
    counts[2] += _count(out)
    if use_crop:
        iw = out.size
        _crop_row(d_row, planes[0, prow, pcol : pcol + iw], planes[1, prow, pcol : pcol + iw],
                  planes[2, prow, pcol : pcol + iw], lo3, hi3, out)
    counts[3] += _count(out)


@njit(cache=True, nogil=True)
def _add_cell_row(keep_row, d_row, acc_n, acc_z):
    for c in range(keep_row.size):
        k = keep_row[c]
        acc_n[c] += k
        acc_z[c] += d_row[c] if k else np.float32(0.0)


@njit(cache=True, nogil=True)
def _flush_cells(acc_n, acc_z, cell_n, cell_z, j):
    """Sum 8-column groups of the row accumulators into cell row j, then clear them."""
    for q in range(cell_n.shape[1]):
        s_n, s_z = 0, 0.0
        for c in range(q * CELL, (q + 1) * CELL):
            s_n += acc_n[c]
            s_z += acc_z[c]
        cell_n[j, q] = s_n
        cell_z[j, q] = s_z
    acc_n[:] = 0
    acc_z[:] = 0.0


@njit(cache=True, nogil=True)
def _keep_inner(d, valid, flying, ir, min_count, inner, planes, lo3, hi3, use_crop, extra, use_extra, keep, counts,
                cell_n, cell_z):
    """Rows of the inner rectangle (top, left, height, width inside the outer one): isolated test
    (running sum over a ring of 2*ir+1 rows of row-wise window counts), labels, crop test at plane position
    (inner[4] + row, inner[5] + column); counts (valid, filtered, labelled, kept) and 8x8 cell
    sums of the kept pixels (count, depth)."""
    h, w = flying.shape
    top, left, ih, iw, plane_top, plane_left = inner
    n = 2 * ir + 1
    rs, re = max(top - ir, 0), min(top + ih + ir, h)
    c0, c1 = max(left - ir, 0), min(left + iw + ir, w)
    ring = np.empty((n, c1 - c0), np.int32)
    col = np.empty(c1 - c0, np.int32)
    acc_n = np.zeros(iw, np.int32)
    acc_z = np.zeros(iw, np.float32)
    col[:] = 0
    for r in range(rs, re + ir):  # col: running sum of the ring's rows r - 2*ir .. r (clipped)
        if r - n >= rs:
            _add_row(col, ring[r % n], -1)
        if r < re:
            _window_count_row(flying[r, c0:c1], ir, ring[r % n])
            _add_row(col, ring[r % n], 1)
        ro = r - ir
        if ro < top or ro >= top + ih:
            continue
        k = ro - top
        out = keep[k]
        d_row = d[ro, left : left + iw]
        _final_row(flying[ro, left : left + iw], col[left - c0 : left - c0 + iw], min_count, d_row, planes,
                   plane_top + k, plane_left, lo3, hi3, use_crop, extra[k], use_extra, out, counts)
        counts[0] += _count(valid[ro, left : left + iw])
        _add_cell_row(out, d_row, acc_n, acc_z)
        if (k + 1) % CELL == 0 and (k + 1) // CELL <= cell_n.shape[0]:
            _flush_cells(acc_n, acc_z, cell_n, cell_z, (k + 1) // CELL - 1)


@njit(cache=True, nogil=True)
def _filtered_keep(d, near, far, strict_near, rel, abs_m, fr, ir, min_count, inner, planes, lo3, hi3, use_crop,
                   extra, use_extra):
    h, w = d.shape
    valid = np.empty((h, w), np.uint8)
    flying = np.empty((h, w), np.uint8)
    _flying_filter(d, near, far, strict_near, rel, abs_m, fr, valid, flying)
    ih, iw = inner[2], inner[3]
    keep = np.empty((ih, iw), np.uint8)
    counts = np.zeros(4, np.int64)
    cell_n = np.zeros((ih // CELL, iw // CELL), np.int32)
    cell_z = np.zeros((ih // CELL, iw // CELL), np.float64)
    _keep_inner(d, valid, flying, ir, min_count, inner, planes, lo3, hi3, use_crop, extra, use_extra, keep, counts,
                cell_n, cell_z)
    return keep, counts, cell_n, cell_z


@dataclass(frozen=True)
class KeepMask:
    """``keep`` (h, w) bool over the inner rectangle, ``n_kept`` its True pixels; pixel counts in
    it after each test (valid depth, flying + isolated filters, labels, crop); per 8x8 cell of the
    rectangle (from its top-left corner, partial cells left out): kept pixels ``cell_count`` and
    the sum of their depths ``cell_depth_sum_m`` (float64)."""

    keep: np.ndarray
    n_kept: int
    counts: dict[str, int]
    cell_count: np.ndarray
    cell_depth_sum_m: np.ndarray


def filtered_keep_mask(
    depth_m: np.ndarray,
    inner: tuple[int, int, int, int],
    *,
    near_m: float,
    far_m: float,
    flying_rel_threshold: float,
    flying_abs_threshold_m: float,
    flying_window: int,
    isolated_window: int,
    isolated_min_neighbors: int,
    label_mask: np.ndarray | None = None,
    crop_planes: np.ndarray | None = None,
    crop_plane_origin: tuple[int, int] = (0, 0),
    crop_lo: np.ndarray | None = None,
    crop_hi: np.ndarray | None = None,
) -> KeepMask:
    """Keep mask of the ``inner`` rectangle (top, bottom, left, right) of ``depth_m`` (float32
    (H, W) metres, the filters see all of it): ``valid_depth_mask`` (near/far) ->
    ``flying_pixel_mask`` -> ``isolated_pixel_mask`` -> ``label_mask`` (inner-sized bool, optional)
    -> crop: ``crop_lo <= crop_planes[i, y, x] * depth <= crop_hi`` per axis i (float32), where
    (y, x) is the pixel's position plus ``crop_plane_origin``. Thresholds as in ``outliers``."""
    d = np.ascontiguousarray(depth_m, dtype=np.float32)
    fw, iso = check_window(flying_window), check_window(isolated_window)
    if not 0 <= isolated_min_neighbors <= iso * iso - 1:
        raise ValueError(f"isolated_min_neighbors must be in [0, {iso * iso - 1}], got {isolated_min_neighbors}")
    top, bottom, left, right = inner
    ih, iw = bottom - top, right - left
    use_crop, use_labels = crop_planes is not None, label_mask is not None
    planes = np.ascontiguousarray(crop_planes, np.float32) if use_crop else np.zeros((3, 1, 1), np.float32)
    extra = np.ascontiguousarray(label_mask, bool).view(np.uint8) if use_labels else np.zeros((ih, 0), np.uint8)
    lo3 = np.asarray(crop_lo if use_crop else np.zeros(3), np.float32)
    hi3 = np.asarray(crop_hi if use_crop else np.zeros(3), np.float32)
    near = max(float(near_m), 0.0)
    keep, counts, cell_n, cell_z = _filtered_keep(
        d, np.float32(near), np.float32(far_m), near == 0.0, np.float32(flying_rel_threshold),
        np.float32(flying_abs_threshold_m), fw // 2, iso // 2, isolated_min_neighbors,
        np.array([top, left, ih, iw, crop_plane_origin[0] + top, crop_plane_origin[1] + left], np.int64),
        planes, lo3, hi3, use_crop, extra, use_labels,
    )
    names = ("valid", "filtered", "labelled", "in_crop")
    return KeepMask(keep.view(bool), int(counts[3]), dict(zip(names, counts.tolist())), cell_n, cell_z)

