"""Image-space pre-reduction of the "fast" point-cloud path: about ``candidates`` pixels, uniform in 3D.

The kept-pixel mask (``keep_mask.filtered_keep_mask``) is cut into 8x8-pixel cells. Each cell's
3D footprint per pixel is estimated from its mean kept depth and depth slope
(``z^2 / (fx fy) * sqrt(1 + (fx dz/du / z)^2 + (fy dz/dv / z)^2)``, slope factor capped at 8), and
the cell gets the block size s of ``STRIDES`` (1 to 12 pixels) that puts its candidates about ``h``
metres apart, ``h`` being set by the target count. Per block size, over the bounding rectangle of
its cells (block grid anchored at the rectangle's top-left corner), each s x s block holding a kept
pixel of that block size gives one: the kept pixel nearest the block centre (fixed priority order,
``block_priority``). So thin structures survive, the crop boundary is exact, and far, grazing
surfaces are not under-sampled. Pixels right of / below the last whole cell take its block size.

Picks are listed block size by block size (ascending), blocks in raster order. The picking loop
is compiled (numba, ``_adaptive_picks``): it visits only blocks over cells of their size and
stops at the first kept pixel, where a whole-image OpenCV pass per block size cost 0.7 ms a frame.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from appf.transforms.keep_mask import CELL

__all__ = ["STRIDES", "block_priority", "cell_footprint", "choose_tiers", "adaptive_reduce"]

STRIDES = np.array([1, 2, 3, 4, 6, 8, 12], dtype=np.int64)  # block sizes (pixels), by tier
MAX_SLOPE = 8.0  # cap of the footprint's slope factor (grazing surfaces)
_LOG_MIDPOINTS = np.sqrt(STRIDES[:-1] * STRIDES[1:].astype(np.float64))  # tier boundaries


@lru_cache(maxsize=32)
def block_priority(s: int) -> np.ndarray:
    """(s*s, 2) int64 offsets (dy, dx) in an s x s block, nearest the centre first (ties: raster
    order)."""
    dy, dx = np.mgrid[0:s, 0:s]
    c = (s - 1) / 2.0
    order = np.argsort(((dx - c) ** 2 + (dy - c) ** 2).ravel(), kind="stable")
    offsets = np.stack([dy.ravel()[order], dx.ravel()[order]], axis=1).astype(np.int64)
    offsets.flags.writeable = False
    return offsets


def _offset_table() -> tuple[np.ndarray, np.ndarray]:
    """All tiers' priority offsets in one array, and where each tier's start."""
    parts = [block_priority(int(s)) for s in STRIDES]
    starts = np.cumsum([0] + [len(p) for p in parts[:-1]]).astype(np.int64)
    return np.ascontiguousarray(np.concatenate(parts)), starts


_OFFSETS, _OFFSET_STARTS = _offset_table()


def cell_footprint(cell_count: np.ndarray, cell_depth_sum_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(hc, wc) float64 3D area of one pixel (m^2) per 8x8 cell from its kept-pixel count and
    depth sum (see module doc); 0 where a cell has no kept pixel."""
    n = np.asarray(cell_count, dtype=np.float64)
    hc, wc = n.shape
    fx, fy = float(K[0, 0]), float(K[1, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.asarray(cell_depth_sum_m, dtype=np.float64) / n
        if hc > 1 and wc > 1:
            gv, gu = np.gradient(z, CELL)
            slope = np.sqrt(1.0 + (fx * gu / z) ** 2 + (fy * gv / z) ** 2)
            slope = np.clip(np.nan_to_num(slope, nan=1.0), 1.0, MAX_SLOPE)
        else:
            slope = 1.0
        return np.where(n > 0, z * z / (fx * fy) * slope, 0.0)


def choose_tiers(area: np.ndarray, spacing2: float) -> np.ndarray:
    """(hc, wc) uint8 index into ``STRIDES``: the block size nearest in log (the smaller at a tie)
    to sqrt(spacing2 / area), the side in pixels of a square of ``spacing2`` m^2; 0 where area is 0."""
    with np.errstate(divide="ignore"):
        s = np.sqrt(spacing2 / np.where(area > 0, area, np.inf))
    return np.searchsorted(_LOG_MIDPOINTS, s).astype(np.uint8)


@njit(cache=True, nogil=True)
def _tier_regions(tier, used, n_tiers):
    """Per tier t: whether it is in use, and the cell rows / columns of its region: rows holding
    a cell of tier t (where any cell is used), columns holding a used cell of tier t."""
    hc, wc = tier.shape
    rows = np.zeros((n_tiers, hc), np.bool_)
    cols = np.zeros((n_tiers, wc), np.bool_)
    row_used = np.zeros(hc, np.bool_)
    present = np.zeros(n_tiers, np.bool_)
    for i in range(hc):
        for j in range(wc):
            t = tier[i, j]
            rows[t, i] = True
            if used[i, j]:
                row_used[i] = True
                cols[t, j] = True
                present[t] = True
    for t in range(n_tiers):
        for i in range(hc):
            rows[t, i] &= row_used[i]
    return present, rows, cols


@njit(cache=True, nogil=True, inline="always")
def _tier_at(tier, y, x):
    """Tier of pixel (y, x): its cell's, the last cell row / column extending over the remainder."""
    return tier[min(y // CELL, tier.shape[0] - 1), min(x // CELL, tier.shape[1] - 1)]


@njit(cache=True, nogil=True)
def _pick_block(keep, tier, t, y0, x0, y1, x1, offsets):
    """Flat index of the first pixel of block (y0, x0) (clipped to rows < y1, columns < x1) in
    priority order that is kept and of tier t, or -1."""
    w = keep.shape[1]
    for o in range(offsets.shape[0]):
        y, x = y0 + offsets[o, 0], x0 + offsets[o, 1]
        if y < y1 and x < x1 and keep[y, x] and _tier_at(tier, y, x) == t:
            return y * w + x
    return -1


@njit(cache=True, nogil=True)
def _pick_tier_row(keep, tier, t, s, y0, y1, c0, c1, offsets, out, n_out):
    """Picks of one row of s x s blocks (top y0, bottom y1, blocks from column c0 to c1), only in
    blocks that overlap a cell of tier t; appended to ``out`` from ``n_out``; returns the count."""
    hc, wc = tier.shape
    w = keep.shape[1]
    ca, cb = min(y0 // CELL, hc - 1), min((y1 - 1) // CELL, hc - 1)
    last = -1
    for q in range(min(c0 // CELL, wc - 1), min((c1 - 1) // CELL, wc - 1) + 1):
        has = False
        for i in range(ca, cb + 1):
            has |= tier[i, q] == t
        if not has:
            continue
        xa = max(q * CELL, c0)
        xb = min(w if q == wc - 1 else (q + 1) * CELL, c1)
        for x0 in range(c0 + (xa - c0) // s * s, xb, s):
            if x0 <= last:
                continue
            last = x0
            f = _pick_block(keep, tier, t, y0, x0, y1, min(x0 + s, c1), offsets)
            if f >= 0:
                if n_out == out.size:  # never when the capacity is the kept-pixel count
                    raise ValueError("adaptive_reduce: n_kept is below the number of kept pixels")
                out[n_out] = f
                n_out += 1
    return n_out


@njit(cache=True, nogil=True)
def _adaptive_picks(keep, tier, used, strides, offsets, offset_starts, capacity):
    """Flat indices of one pixel per block, tier by tier (see ``image_reduce``): ``keep`` (h, w)
    uint8; ``tier``, ``used`` per 8x8 cell; block size ``strides[t]`` with priority offsets
    ``offsets[offset_starts[t]:][:s*s]``; ``capacity`` >= the number of picks (kept pixels)."""
    h, w = keep.shape
    hc, wc = tier.shape
    present, rows, cols = _tier_regions(tier, used, strides.size)
    out = np.empty(capacity, np.int64)
    n_out = 0
    for t in range(strides.size):
        cr, cc = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        if not present[t] or cr.size == 0 or cc.size == 0:
            continue
        s = strides[t]
        r0, c0 = cr[0] * CELL, cc[0] * CELL
        r1 = h if cr[-1] == hc - 1 else (cr[-1] + 1) * CELL
        c1 = w if cc[-1] == wc - 1 else (cc[-1] + 1) * CELL
        offs = offsets[offset_starts[t] : offset_starts[t] + s * s]
        for y0 in range(r0, r1, s):
            n_out = _pick_tier_row(keep, tier, t, s, y0, min(y0 + s, r1), c0, c1, offs, out, n_out)
    return out[:n_out]


def adaptive_reduce(
    keep: np.ndarray, cell_count: np.ndarray, area: np.ndarray, spacing2: float, n_kept: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows, cols (int64) of the candidates of ``keep`` (h, w) bool about sqrt(spacing2) metres
    apart; ``cell_count``, ``area`` per 8x8 cell as from ``cell_footprint``; ``n_kept``: kept pixels
    (an upper bound on the picks)."""
    h, w = keep.shape
    hc, wc = cell_count.shape
    tier = choose_tiers(area, spacing2)
    used = np.asarray(cell_count) > 0
    if h > hc * CELL:  # the remainder strips take the last cells' tiers
        used[-1, :] = True
    if w > wc * CELL:
        used[:, -1] = True
    flat = _adaptive_picks(keep.view(np.uint8), tier, used, STRIDES, _OFFSETS, _OFFSET_STARTS, int(n_kept))
    return flat // w, flat % w
