"""CropBox and image-space depth filters."""

import json

import numpy as np
import pytest

from appf.transforms.crop import CropBox
from appf.transforms.outliers import flying_pixel_mask, isolated_pixel_mask, valid_depth_mask

BOX = CropBox((0.0, -1.0, 0.5), (1.0, 1.0, 2.0))


def test_crop_contains_inclusive_boundaries():
    pts = np.array(
        [
            [0.0, -1.0, 0.5],  # min corner: inside
            [1.0, 1.0, 2.0],  # max corner: inside
            [0.5, 0.0, 1.0],  # interior
            [1.0 + 1e-9, 0.0, 1.0],  # just outside in x
            [0.5, -1.0 - 1e-9, 1.0],  # just outside in y
            [0.5, 0.0, 2.0 + 1e-9],  # just outside in z
            [-0.1, 0.0, 1.0],
        ]
    )
    np.testing.assert_array_equal(BOX.contains(pts), [True, True, True, False, False, False, False])
    np.testing.assert_array_equal(BOX.contains(pts.astype(np.float32))[:3], [True, True, True])


def test_crop_json_round_trip_and_validation():
    text = json.dumps(BOX.to_list())
    assert json.loads(text) == [[0.0, -1.0, 0.5], [1.0, 1.0, 2.0]]
    assert CropBox.from_list(json.loads(text)) == BOX
    assert CropBox.from_list([0, -1, 0.5, 1, 1, 2]) == BOX
    with pytest.raises(ValueError, match="min < max.*y"):
        CropBox((0, 1, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="3 values"):
        CropBox((0, 0), (1, 1))
    with pytest.raises(ValueError, match="finite"):
        CropBox((0, 0, float("nan")), (1, 1, 1))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        BOX.contains(np.zeros((3, 2)))
    with pytest.raises(AttributeError):
        BOX.min_xyz = (0, 0, 0)  # frozen


def test_valid_depth_mask():
    d = np.array([[0.0, np.nan, np.inf, -1.0, 0.04, 0.05, 1.0, 5.0, 5.01]], np.float32)
    np.testing.assert_array_equal(
        valid_depth_mask(d, 0.05, 5.0)[0], [False, False, False, False, False, True, True, True, False]
    )
    np.testing.assert_array_equal(valid_depth_mask(d)[0], [False, False, False, False, True, True, True, True, True])


def _step_depth():
    d = np.full((20, 20), 1.0, np.float32)
    d[:, 10:] = 2.0  # a 1 m step between columns 9 and 10
    return d


def test_flying_pixels_flag_step_edge_not_flat_regions():
    keep = flying_pixel_mask(_step_depth())
    # both sides of the discontinuity are flagged with a 3x3 window ...
    assert not keep[:, 9].any() and not keep[:, 10].any()
    # ... and everything else is kept
    assert keep[:, :9].all() and keep[:, 11:].all()


def test_flying_pixel_in_between_and_slanted_plane():
    d = _step_depth()
    d[5, 10] = 1.5  # a mixed "flying" pixel
    assert not flying_pixel_mask(d)[5, 10]
    # a plane slanted by 2 mm per pixel at 1 m is below max(1 cm, 3 %): nothing flagged
    slant = (1.0 + 0.002 * np.arange(40, dtype=np.float32))[None, :].repeat(30, axis=0)
    assert flying_pixel_mask(slant).all()
    # a small step just above the absolute threshold is flagged
    small = np.full((10, 10), 0.2, np.float32)
    small[:, 5:] = 0.2 + 0.012
    assert not flying_pixel_mask(small)[:, 4:6].any()


def test_flying_ignores_invalid_neighbours():
    d = np.full((9, 9), 1.0, np.float32)
    d[4, 4] = 0.0  # a hole: invalid, but its neighbours are not discontinuities
    keep = flying_pixel_mask(d)
    assert not keep[4, 4]
    assert keep.sum() == 80


def test_isolated_pixel_removed():
    valid = np.zeros((15, 15), bool)
    valid[2:8, 2:8] = True  # a solid patch
    valid[12, 12] = True  # a lone pixel
    valid[12, 2] = valid[12, 3] = True  # a pair: 1 neighbour each
    keep = isolated_pixel_mask(valid, window=5, min_neighbors=4)
    assert not keep[12, 12] and not keep[12, 2] and not keep[12, 3]
    np.testing.assert_array_equal(keep[2:8, 2:8], True)  # the patch corner has 8 neighbours
    assert keep.sum() == 36
    # min_neighbors=1 keeps the pair but still drops the lone pixel
    keep1 = isolated_pixel_mask(valid, window=5, min_neighbors=1)
    assert keep1[12, 2] and keep1[12, 3] and not keep1[12, 12]
    with pytest.raises(ValueError, match="odd"):
        isolated_pixel_mask(valid, window=4)
