"""Classical stereo matching: OpenCV semi-global matching plus the post-processing that makes it
usable as a default depth source (pure numpy/cv2, no weights).

`classical_disparity` (ours):
  1. SGBM (8-path "HH4", pixel-wise Birchfield-Tomasi cost) on grey images padded on the left by
     the disparity range, so the leftmost columns get a full search instead of being invalid;
  2. the same matcher with the right view as reference, and a left-right consistency check
     (|d_L(u) - d_R(u - d_L(u))| <= lr_max_diff_px), which also classifies the rejected pixels
     into occluded (the right view sees something nearer) and out of the right view;
  3. a colour-weighted median around disparity jumps (boundaries onto colour edges);
  4. hole filling: occluded pixels take the background (smaller) of the nearest valid disparities
     on their row; small remaining holes are filled by colour-weighted median from their rim;
     large unmatched regions stay invalid;
  5. sub-pixel refinement: a colour-weighted mean over same-surface neighbours, on top of SGBM's
     own 1/16-pixel parabola fit.
`plain_sgbm_disparity` is the baseline it is measured against: cv2.StereoSGBM with the usual
parameters and nothing else.

Disparities are in pixels, left-referenced, float32, 0 = invalid.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appf.annotators.depth.edge_aware import (
    fill_by_rings,
    lab_guide,
    nearest_along_rows,
    refine_discontinuities,
    small_holes,
    smooth_subpixel,
)

_MODES = {
    "sgbm": cv2.STEREO_SGBM_MODE_SGBM,
    "hh": cv2.STEREO_SGBM_MODE_HH,
    "hh4": cv2.STEREO_SGBM_MODE_HH4,
    "3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY,
}


@dataclass(frozen=True)
class StereoParams:
    """Parameters of `classical_disparity` (pixels unless stated)."""

    block_size: int = 1
    p1: int = 8  # SGBM P1 = p1 * channels * block_size^2 (OpenCV's recommended scaling)
    p2: int = 32  # SGBM P2 = p2 * channels * block_size^2
    uniqueness_ratio: int = 10  # percent
    speckle_window: int = 100
    speckle_range: int = 2
    mode: str = "hh4"
    lr_max_diff_px: float = 1.0
    refine_radius: int = 5
    refine_band_px: int = 2
    sigma_color: float = 10.0  # 8-bit Lab units
    max_hole_fraction: float = 3e-4  # holes up to this fraction of the image area are filled
    fill_occlusions: bool = True
    subpixel_radius: int = 2  # 0 disables the sub-pixel refinement


def num_disparities(max_disp_px: float) -> int:
    """SGBM's search range: max disparity rounded up to a multiple of 16 (at least 16)."""
    return max(16, int(np.ceil((float(max_disp_px) + 1.0) / 16.0)) * 16)


def _grey(rgb: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb)
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _sgbm(left: np.ndarray, right: np.ndarray, ndisp: int, p: StereoParams) -> np.ndarray:
    """Left-referenced SGBM disparity with a left margin of `ndisp` columns; < 0 = invalid."""
    cn = 1 if left.ndim == 2 else left.shape[2]
    bs = p.block_size
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=ndisp, blockSize=bs, P1=p.p1 * cn * bs * bs,
        P2=p.p2 * cn * bs * bs, disp12MaxDiff=-1, uniquenessRatio=p.uniqueness_ratio,
        speckleWindowSize=p.speckle_window, speckleRange=p.speckle_range, mode=_MODES[p.mode])
    lp = cv2.copyMakeBorder(left, 0, 0, ndisp, 0, cv2.BORDER_REPLICATE)
    rp = cv2.copyMakeBorder(right, 0, 0, ndisp, 0, cv2.BORDER_REPLICATE)
    d = matcher.compute(lp, rp)[:, ndisp:].astype(np.float32) / 16.0
    return np.where(d > 0, d, 0.0).astype(np.float32)


def _right_disparity(left: np.ndarray, right: np.ndarray, ndisp: int, p: StereoParams) -> np.ndarray:
    """Right-referenced disparity: the same matcher on the mirrored pair (right view as reference)."""
    flipped = _sgbm(np.ascontiguousarray(np.fliplr(right)), np.ascontiguousarray(np.fliplr(left)),
                    ndisp, p)
    return np.fliplr(flipped)


def fill_occlusions(disp: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """Invalid `occluded` pixels take the background (smaller) of the nearest valid disparities
    on their row (the one there is, at the image border)."""
    vl, vr, _, _ = nearest_along_rows(disp)
    background = np.where((vl > 0) & (vr > 0), np.minimum(vl, vr), np.maximum(vl, vr))
    return np.where(occluded & (disp <= 0), background, disp).astype(np.float32)


def left_right_check(d_left: np.ndarray, d_right: np.ndarray, max_diff_px: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(consistent, occluded, outside) masks for a left disparity map given the right-referenced
    one (a right pixel u matches the left pixel u + d). `occluded`: the right view sees a nearer
    surface at the match; `outside`: the match falls left of the right image."""
    H, W = d_left.shape
    xr = np.arange(W)[None, :] - d_left
    inside = xr >= 0
    xi = np.clip(np.round(xr).astype(np.int64), 0, W - 1)
    dr = np.take_along_axis(d_right, xi, axis=1)
    has = d_left > 0
    consistent = has & inside & (dr > 0) & (np.abs(d_left - dr) <= max_diff_px)
    occluded = has & inside & (dr > d_left + max_diff_px)
    return consistent, occluded, has & ~inside


def classical_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disp_px: float,
                        params: StereoParams = StereoParams()) -> np.ndarray:
    """Disparity (H, W) float32 pixels, 0 = invalid, of a rectified pair (H, W, 3) uint8 RGB."""
    if left_rgb.shape != right_rgb.shape:
        raise ValueError(f"left and right images differ in shape: {left_rgb.shape} vs {right_rgb.shape}")
    ndisp = num_disparities(max_disp_px)
    gl, gr = _grey(left_rgb), _grey(right_rgb)
    d_left = _sgbm(gl, gr, ndisp, params)
    d_right = _right_disparity(gl, gr, ndisp, params)
    ok, occluded, outside = left_right_check(d_left, d_right, params.lr_max_diff_px)
    disp = np.where(ok, d_left, 0.0).astype(np.float32)
    lab = lab_guide(left_rgb)
    if params.refine_radius > 0:
        disp = refine_discontinuities(disp, lab, params.refine_radius, params.sigma_color,
                                      params.refine_band_px)
    if params.fill_occlusions:
        disp = fill_occlusions(disp, occluded | outside)
    max_area = int(params.max_hole_fraction * disp.size)
    if max_area > 0:
        disp = fill_by_rings(disp, lab, small_holes(disp, max_area), params.refine_radius,
                             params.sigma_color)
    if params.subpixel_radius > 0:
        disp = smooth_subpixel(disp, lab, params.subpixel_radius, params.sigma_color)
    return disp


def plain_sgbm_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disp_px: float,
                         block_size: int = 5) -> np.ndarray:
    """The baseline: cv2.StereoSGBM on the RGB pair with the usual parameters (P1 = 8*3*bs^2,
    P2 = 32*3*bs^2, disp12MaxDiff 1, uniqueness 10, speckle 100/2, 5-path mode), nothing else.
    Disparity (H, W) float32 pixels, 0 = invalid (OpenCV leaves the leftmost numDisparities
    columns invalid)."""
    ndisp = num_disparities(max_disp_px)
    bs = block_size
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=ndisp, blockSize=bs, P1=8 * 3 * bs * bs,
        P2=32 * 3 * bs * bs, disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=100,
        speckleRange=2)
    d = matcher.compute(np.ascontiguousarray(left_rgb), np.ascontiguousarray(right_rgb))
    d = d.astype(np.float32) / 16.0
    return np.where(d > 0, d, 0.0).astype(np.float32)
