"""Depth unit conversions, intrinsics under resize/padding, metrics and evaluation-file decoding,
each against numbers worked out by hand."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from appf.annotators.depth.units import (
    depth_m_to_disparity,
    disparity_to_depth_m,
    pad_amounts,
    pad_intrinsics,
    resize_depth_m,
    resize_intrinsics,
    scaled_size,
)
from appf.transforms.depth_metrics import depth_metrics, disparity_metrics
from appf.transforms.stereo_io import decode_depth, decode_disparity, decode_pfm, encode_pfm
from appf.transforms.geometry import project, unproject


def test_disparity_to_depth_hand_checked():
    # z = fx * B / d: 500 px * 0.1 m / 25 px = 2.0 m; 50 px -> 1.0 m; 0 and inf and -3 -> invalid
    d = np.array([25.0, 50.0, 0.0, np.inf, -3.0])
    np.testing.assert_allclose(disparity_to_depth_m(d, 500.0, 0.1), [2.0, 1.0, 0, 0, 0])
    # Middlebury doffs: z = f * B / (d + doffs) = 994.978 * 0.193001 / (40 + 31.086) = 192.0317 / 71.086 = 2.70140 m
    z = disparity_to_depth_m(np.array([40.0]), 994.978, 0.193001, 31.086)
    assert z[0] == pytest.approx(994.978 * 0.193001 / 71.086, rel=1e-6)
    assert z[0] == pytest.approx(2.70140, abs=1e-5)


def test_depth_to_disparity_inverts_and_marks_invalid():
    z = np.array([2.0, 1.0, 0.0, np.nan])
    np.testing.assert_allclose(depth_m_to_disparity(z, 500.0, 0.1), [25.0, 50.0, 0.0, 0.0])
    d = np.array([7.5, 33.25])
    back = depth_m_to_disparity(disparity_to_depth_m(d, 994.978, 0.193, 31.086), 994.978, 0.193,
                                31.086)
    np.testing.assert_allclose(back, d, rtol=1e-5)


def test_intrinsics_under_resize_hand_checked():
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    # halving: fx' = 250, cx' = (319.5 + 0.5) * 0.5 - 0.5 = 159.5 (the centre stays the centre)
    K2 = resize_intrinsics(K, (480, 640), (240, 320))
    np.testing.assert_allclose(K2, [[250, 0, 159.5], [0, 250, 119.5], [0, 0, 1]])
    # a point projects to the same place in the resized image (u' = (u + 0.5) s - 0.5)
    p = np.array([0.3, -0.2, 1.7])
    u, v, _ = project(p, K)
    u2, v2, _ = project(p, K2)
    assert u2 == pytest.approx((u + 0.5) * 0.5 - 0.5)
    assert v2 == pytest.approx((v + 0.5) * 0.5 - 0.5)


def test_padding_amounts_and_intrinsics_hand_checked():
    # 480 x 640 is already a multiple of 32; 100 x 70 -> 128 x 96: 28 rows = 14 + 14, 26 cols = 13 + 13
    assert pad_amounts(480, 640, 32) == (0, 0, 0, 0)
    assert pad_amounts(100, 70, 32) == (14, 14, 13, 13)
    assert pad_amounts(101, 71, 32) == (13, 14, 12, 13)  # odd pixel at the bottom / right
    K = np.array([[500.0, 0, 34.5], [0, 500.0, 49.5], [0, 0, 1]])
    Kp = pad_intrinsics(K, top=14, left=13)
    np.testing.assert_allclose(Kp, [[500, 0, 47.5], [0, 500, 63.5], [0, 0, 1]])
    # unprojecting the padded image's pixel gives the same ray as the original pixel
    z = np.full((1, 1), 2.0)
    ray = unproject(z, K)[0, 0]
    padded = np.zeros((128, 96))
    padded[14, 13] = 2.0
    np.testing.assert_allclose(unproject(padded, Kp)[14, 13], ray)
    assert scaled_size(480, 640, 0.5) == (240, 320)


def test_resize_depth_keeps_holes_out_of_the_average():
    depth = np.full((4, 4), 2.0, np.float32)
    depth[:, :2] = 0.0  # left half invalid
    small = resize_depth_m(depth, (2, 2))
    assert small[0, 1] == pytest.approx(2.0)  # all sources valid: the bilinear mean
    assert small[0, 0] in (0.0, 2.0)  # mixed: nearest, never a 1.0 blend
    big = resize_depth_m(np.array([[1.0, 3.0]], np.float32), (1, 4))
    np.testing.assert_allclose(big, [[1.0, 1.5, 2.5, 3.0]])  # pixel-centre bilinear
    assert resize_depth_m(np.zeros((2, 5, 6), np.float32), (3, 4)).shape == (2, 3, 4)
    # invalid markers never leak out, also when the size does not change
    bad = np.array([[np.nan, np.inf], [-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(resize_depth_m(bad, (2, 2)), [[0, 0], [0, 2.0]])


def test_depth_metrics_hand_checked():
    gt = np.array([1.0, 2.0, 4.0, 0.0, np.inf])
    pred = np.array([1.1, 2.0, 0.0, 3.0, 2.0])  # pixel 2 uncovered; 3 and 4 have no ground truth
    m = depth_metrics(pred, gt)
    assert m["coverage"] == pytest.approx(2 / 3)
    assert m["abs_rel"] == pytest.approx((0.1 / 1.0 + 0.0) / 2)
    assert m["rmse_m"] == pytest.approx(np.sqrt((0.01 + 0.0) / 2))
    assert m["delta1"] == pytest.approx(1.0)
    m2 = depth_metrics(np.array([1.0, 3.0]), np.array([2.0, 2.0]))  # ratios 2 and 1.5
    assert m2["delta1"] == 0.0


def test_disparity_metrics_hand_checked():
    gt = np.array([10.0, 10.0, 10.0, 10.0, np.inf])
    pred = np.array([10.5, 11.5, 13.0, 0.0, 5.0])  # errors 0.5, 1.5, 3.0; one uncovered
    m = disparity_metrics(pred, gt)
    assert m["coverage"] == pytest.approx(0.75)
    assert m["bad1"] == pytest.approx(2 / 3)
    assert m["bad2"] == pytest.approx(1 / 3)
    assert m["bad2_all"] == pytest.approx(2 / 4)
    assert m["epe_px"] == pytest.approx(5.0 / 3)


def test_pfm_png_npz_decoding():
    disp = np.array([[1.5, np.inf], [3.25, 0.0]], np.float32)
    back = decode_pfm(encode_pfm(disp))
    np.testing.assert_array_equal(back, disp)  # row order survives the bottom-up storage
    png16 = cv2.imencode(".png", np.array([[256 * 12, 0]], np.uint16))[1].tobytes()
    np.testing.assert_allclose(decode_disparity(png16, ".png"), [[12.0, 0.0]])
    np.testing.assert_allclose(decode_disparity(png16, "png", png_scale=0.5), [[1536.0, 0.0]])
    buf = io.BytesIO()
    np.savez(buf, disparity=disp)
    np.testing.assert_array_equal(decode_disparity(buf.getvalue(), "npz"), disp)
    depth_png = cv2.imencode(".png", np.array([[1500, 0]], np.uint16))[1].tobytes()
    np.testing.assert_allclose(decode_depth(depth_png, ".png"), [[1.5, 0.0]])
    with pytest.raises(ValueError, match="not a PFM"):
        decode_pfm(b"P6 1 1 255\n")
