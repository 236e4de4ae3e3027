"""Fused keep mask (numba): equal to the OpenCV filter chain of ``outliers`` + crop test; exact on
known geometry (step edges, holes, lone pixels, planes)."""

import numpy as np
import pytest

from appf.transforms.keep_mask import CELL, filtered_keep_mask
from appf.transforms.outliers import flying_pixel_mask, isolated_pixel_mask, valid_depth_mask

DEFAULTS = dict(
    near_m=0.05, far_m=5.0, flying_rel_threshold=0.03, flying_abs_threshold_m=0.01, flying_window=3,
    isolated_window=5, isolated_min_neighbors=4,
)


def reference_keep(depth, inner, label_mask=None, planes=None, origin=(0, 0), lo=None, hi=None, **kw):
    """The OpenCV chain (outliers.*) on the whole array, then labels and the float32 crop test on
    the inner rectangle."""
    cfg = {**DEFAULTS, **kw}
    valid = valid_depth_mask(depth, cfg["near_m"], cfg["far_m"])
    keep = flying_pixel_mask(depth, cfg["flying_rel_threshold"], cfg["flying_abs_threshold_m"],
                             cfg["flying_window"], valid=valid)
    keep = isolated_pixel_mask(keep, cfg["isolated_window"], cfg["isolated_min_neighbors"])
    top, bottom, left, right = inner
    keep = keep[top:bottom, left:right].copy()
    if label_mask is not None:
        keep &= label_mask
    if planes is not None:
        d = depth[top:bottom, left:right]
        for i in range(3):
            a = planes[i, origin[0] + top : origin[0] + bottom, origin[1] + left : origin[1] + right]
            coord = a * d
            keep &= (coord >= np.float32(lo[i])) & (coord <= np.float32(hi[i]))
    return keep, valid[top:bottom, left:right]


def noisy_depth(h=53, w=71, seed=0):
    """Two slanted planes with a step, holes, NaN / inf / negative / far values and specks."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w]
    d = (0.8 + 0.002 * u + 0.001 * v).astype(np.float32)
    d[:, w // 2 :] += 0.3
    d += rng.normal(0, 0.004, d.shape).astype(np.float32)
    bad = rng.random(d.shape)
    d[bad < 0.05] = 0.0
    d[(bad >= 0.05) & (bad < 0.06)] = np.nan
    d[(bad >= 0.06) & (bad < 0.065)] = np.inf
    d[(bad >= 0.065) & (bad < 0.07)] = -1.0
    d[(bad >= 0.07) & (bad < 0.075)] = 7.0  # beyond far
    d[(bad >= 0.075) & (bad < 0.08)] = 0.03  # nearer than near
    return d


@pytest.mark.parametrize("fw,iw,min_nb", [(3, 5, 4), (5, 3, 2), (1, 1, 0), (7, 7, 20), (3, 5, 0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_opencv_chain_whole_image(fw, iw, min_nb, seed):
    d = noisy_depth(seed=seed)
    inner = (0, d.shape[0], 0, d.shape[1])
    kw = dict(flying_window=fw, isolated_window=iw, isolated_min_neighbors=min_nb)
    got = filtered_keep_mask(d, inner, **{**DEFAULTS, **kw})
    ref, valid = reference_keep(d, inner, **kw)
    np.testing.assert_array_equal(got.keep, ref)
    assert got.n_kept == ref.sum() == got.counts["in_crop"] == got.counts["filtered"] == got.counts["labelled"]
    assert got.counts["valid"] == valid.sum()


def test_near_zero_and_infinite_far():
    d = noisy_depth(seed=2)
    inner = (0, d.shape[0], 0, d.shape[1])
    kw = dict(near_m=0.0, far_m=np.inf)
    got = filtered_keep_mask(d, inner, **{**DEFAULTS, **kw})
    ref, valid = reference_keep(d, inner, **kw)
    np.testing.assert_array_equal(got.keep, ref)
    assert got.counts["valid"] == valid.sum() == np.count_nonzero(np.isfinite(d) & (d > 0))


def test_inner_rectangle_labels_and_crop_equal_reference():
    """A sub-rectangle (the filters still see the margin around it), a label mask and a crop test
    against planes placed at an offset inside a larger image."""
    rng = np.random.default_rng(5)
    d = noisy_depth(seed=3)
    inner = (6, 40, 9, 60)
    ih, iw = inner[1] - inner[0], inner[3] - inner[2]
    labels = rng.random((ih, iw)) < 0.8
    planes = rng.uniform(-1.0, 1.0, (3, 80, 90)).astype(np.float32)
    origin = (4, 11)
    lo, hi = np.array([-0.4, -0.5, -0.3]), np.array([0.5, 0.3, 0.6])
    got = filtered_keep_mask(d, inner, **DEFAULTS, label_mask=labels, crop_planes=planes, crop_plane_origin=origin,
                             crop_lo=lo, crop_hi=hi)
    ref, valid = reference_keep(d, inner, label_mask=labels, planes=planes, origin=origin, lo=lo, hi=hi)
    np.testing.assert_array_equal(got.keep, ref)
    assert 0 < ref.sum() < labels.sum()
    assert got.counts["valid"] == valid.sum() and got.n_kept == ref.sum()
    assert got.counts["filtered"] >= got.counts["labelled"] >= got.counts["in_crop"] == ref.sum()


def test_step_edge_hole_and_lone_pixel_exact():
    """A 1 m step between columns 9 and 10 flags both columns; a hole removes itself only; a lone
    valid pixel in a hole region is isolated; crop by depth (planes a = (0, 0, 1)): z <= 1.5."""
    d = np.full((24, 20), 1.0, np.float32)
    d[:, 10:] = 2.0
    d[4, 4] = 0.0  # hole: its neighbours stay
    d[14:21, 1:8] = 0.0
    d[17, 4] = 1.0  # lone pixel inside an invalid patch
    planes = np.zeros((3, 24, 20), np.float32)
    planes[2] = 1.0
    got = filtered_keep_mask(d, (0, 24, 0, 20), **DEFAULTS, crop_planes=planes, crop_lo=np.array([-1, -1, 0.0]),
                             crop_hi=np.array([1, 1, 1.5]))
    expect = np.zeros((24, 20), bool)
    expect[:, :9] = True  # left plane, minus the flagged column 9; the right plane is outside the crop
    expect[4, 4] = False
    expect[14:21, 1:8] = False
    np.testing.assert_array_equal(got.keep, expect)
    assert got.counts["valid"] == 24 * 20 - 1 - 49 + 1
    assert got.counts["filtered"] == expect.sum() + 24 * 9  # the right plane minus its flagged column 10


def test_cell_statistics_exact_on_a_plane():
    """Constant depth 1.25 m (exact in binary): every whole 8x8 cell counts 64 kept pixels summing
    to 80 m; partial cells (the 3-pixel strips) are left out."""
    d = np.full((8 * 4 + 3, 8 * 5 + 3), 1.25, np.float32)
    got = filtered_keep_mask(d, (0, d.shape[0], 0, d.shape[1]), **{**DEFAULTS, "isolated_min_neighbors": 0})
    assert got.cell_count.shape == (4, 5) and got.keep.all()
    np.testing.assert_array_equal(got.cell_count, np.full((4, 5), CELL * CELL))
    np.testing.assert_array_equal(got.cell_depth_sum_m, np.full((4, 5), 80.0))
    d[0:8, 0:8] = 0.0  # one empty cell, one cell half filled
    d[8:12, 8:16] = 0.0
    got = filtered_keep_mask(d, (0, d.shape[0], 0, d.shape[1]), **{**DEFAULTS, "isolated_min_neighbors": 0})
    assert got.cell_count[0, 0] == 0 and got.cell_count[1, 1] == 32
    assert got.cell_depth_sum_m[0, 0] == 0.0 and got.cell_depth_sum_m[1, 1] == 40.0


def test_bad_windows_rejected():
    d = np.ones((10, 10), np.float32)
    with pytest.raises(ValueError, match="odd"):
        filtered_keep_mask(d, (0, 10, 0, 10), **{**DEFAULTS, "flying_window": 4})
    with pytest.raises(ValueError, match="isolated_min_neighbors"):
        filtered_keep_mask(d, (0, 10, 0, 10), **{**DEFAULTS, "isolated_min_neighbors": 25})


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (4, 4)])
def test_tiny_images_equal_opencv_chain(shape):
    d = noisy_depth(*shape, seed=4) if min(shape) > 1 else np.linspace(0.5, 0.9, shape[0] * shape[1]).reshape(
        shape).astype(np.float32)
    inner = (0, shape[0], 0, shape[1])
    for min_nb in (0, 1, 3):
        got = filtered_keep_mask(d, inner, **{**DEFAULTS, "isolated_min_neighbors": min_nb})
        ref, _ = reference_keep(d, inner, isolated_min_neighbors=min_nb)
        np.testing.assert_array_equal(got.keep, ref)
        assert got.cell_count.shape == (shape[0] // CELL, shape[1] // CELL)
