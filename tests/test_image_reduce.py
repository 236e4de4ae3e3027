"""Image-space pre-reduction: block priority, footprints and tiers on known geometry, and the
compiled picking loop against the whole-image OpenCV implementation it replaced."""

import cv2
import numpy as np
import pytest

from appf.transforms.image_reduce import STRIDES, adaptive_reduce, block_priority, cell_footprint, choose_tiers

CELL = 8


def reference_block_reduce(keep: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous OpenCV way: priority weights (s*s - rank) times the mask, block max by an s x s
    dilation anchored at the block's corner, sampled every s pixels."""
    if s <= 1:
        flat = np.flatnonzero(keep)
        return flat // keep.shape[1], flat % keep.shape[1]
    h, w = keep.shape
    offsets = block_priority(s)
    weights = np.zeros((s, s), np.uint8)
    weights[offsets[:, 0], offsets[:, 1]] = s * s - np.arange(s * s)
    tile = np.tile(weights, (-(-h // s), -(-w // s)))[:h, :w]
    score = cv2.multiply(np.ascontiguousarray(keep).view(np.uint8), np.ascontiguousarray(tile))
    block_max = cv2.dilate(score, np.ones((s, s), np.uint8), anchor=(0, 0))[::s, ::s]
    nz = np.flatnonzero(block_max)
    off = offsets[s * s - block_max.ravel()[nz].astype(np.int64)]
    wb = block_max.shape[1]
    return (nz // wb) * s + off[:, 0], (nz % wb) * s + off[:, 1]


def reference_adaptive_reduce(keep, n, tier):
    """The previous per-tier loop: per-pixel tiers (nearest resize + replicated remainder), one
    masked block reduction per tier over its cells' bounding rectangle."""
    h, w = keep.shape
    hc, wc = n.shape
    tier_px = cv2.resize(tier, (wc * CELL, hc * CELL), interpolation=cv2.INTER_NEAREST)
    tier_px = cv2.copyMakeBorder(tier_px, 0, h - hc * CELL, 0, w - wc * CELL, cv2.BORDER_REPLICATE)
    used = n > 0
    if h > hc * CELL:
        used[-1, :] = True
    if w > wc * CELL:
        used[:, -1] = True
    rows, cols = [], []
    for t in np.unique(tier[used]):
        cr = np.flatnonzero((tier == t).any(axis=1) & used.any(axis=1))
        cc = np.flatnonzero(((tier == t) & used).any(axis=0))
        r0, c0 = cr[0] * CELL, cc[0] * CELL
        r1 = h if cr[-1] == hc - 1 else (cr[-1] + 1) * CELL
        c1 = w if cc[-1] == wc - 1 else (cc[-1] + 1) * CELL
        sub = keep[r0:r1, c0:c1] & (tier_px[r0:r1, c0:c1] == t)
        r, c = reference_block_reduce(sub, int(STRIDES[t]))
        rows.append(r + r0)
        cols.append(c + c0)
    return np.concatenate(rows), np.concatenate(cols)


def test_block_priority_centre_first_ties_in_raster_order():
    assert block_priority(1).tolist() == [[0, 0]]
    assert block_priority(2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    p3 = block_priority(3).tolist()
    assert p3[0] == [1, 1] and p3[1:5] == [[0, 1], [1, 0], [1, 2], [2, 1]] and sorted(p3) == sorted(
        [[i, j] for i in range(3) for j in range(3)])


def test_cell_footprint_fronto_parallel_and_slanted_planes():
    K = np.array([[500.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    n = np.full((4, 5), 64)
    area = cell_footprint(n, n * 2.0, K)  # 2 m everywhere: one pixel covers (2/500) x (2/400) m
    np.testing.assert_allclose(area, np.full((4, 5), 4.0 / (500 * 400)), rtol=1e-12)
    # depth rising 0.01 m per pixel along u: slope factor sqrt(1 + (fx * 0.01 / z)^2), z per cell
    z = 2.0 + 0.01 * CELL * np.arange(5)[None, :].repeat(4, 0)
    area = cell_footprint(n, n * z, K)
    np.testing.assert_allclose(area, z * z / (500 * 400) * np.minimum(np.sqrt(1 + (5.0 / z) ** 2), 8.0), rtol=1e-12)
    empty = n.copy()
    empty[1, 2] = 0
    assert cell_footprint(empty, empty * 2.0, K)[1, 2] == 0.0


def test_choose_tiers_nearest_in_log():
    spacing2 = 1.0
    side = np.array([[1.0, 1.3, 1.5, 2.0, 2.4, 2.5, 3.0, 12.0, 100.0]])
    area = np.c_[[[0.0]], spacing2 / side**2]  # area 0 (no kept pixel) first
    # boundaries: sqrt(1*2)=1.41, sqrt(2*3)=2.45, sqrt(3*4)=3.46, ... sqrt(8*12)=9.80
    assert choose_tiers(area, spacing2).tolist() == [[0, 0, 0, 1, 1, 1, 2, 2, 6, 6]]


def test_uniform_blocks_take_block_centres():
    """All 16x16 pixels kept at block size 4: one pick per block, at offset (1, 1)."""
    keep = np.ones((16, 16), bool)
    n = np.full((2, 2), 64)
    area = np.full((2, 2), 1e-6)
    rows, cols = adaptive_reduce(keep, n, area, spacing2=16e-6, n_kept=256)  # side 4 px
    assert rows.tolist() == np.repeat([1, 5, 9, 13], 4).tolist()
    assert cols.tolist() == np.tile([1, 5, 9, 13], 4).tolist()


@pytest.mark.parametrize("shape", [(64, 80), (67, 83), (13, 9)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_picks_equal_opencv_reference(shape, seed):
    """Random sparse masks and random tiers (remainder strips, empty cells, all block sizes)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    keep = rng.random(shape) < rng.uniform(0.05, 0.9)
    keep[: h // 3, : w // 4] = False  # some empty cells
    hc, wc = h // CELL, w // CELL
    n = keep[: hc * CELL, : wc * CELL].reshape(hc, CELL, wc, CELL).sum(axis=(1, 3))
    area = np.where(n > 0, np.exp(rng.uniform(np.log(1 / 225), np.log(4.0), (hc, wc))), 0.0)  # sides 0.5-15 px
    tier = choose_tiers(area, 1.0)
    assert len(np.unique(tier[n > 0])) >= min(3, (n > 0).sum())
    rows, cols = adaptive_reduce(keep, n, area, 1.0, int(keep.sum()))
    ref_rows, ref_cols = reference_adaptive_reduce(keep, n, tier)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(cols, ref_cols)
    assert keep[rows, cols].all() and len(set(zip(rows.tolist(), cols.tolist()))) == rows.size


def test_capacity_below_kept_pixels_is_an_error():
    keep = np.ones((16, 16), bool)
    with pytest.raises(ValueError, match="n_kept"):
        adaptive_reduce(keep, np.full((2, 2), 64), np.full((2, 2), 1e-6), spacing2=1e-6, n_kept=10)
