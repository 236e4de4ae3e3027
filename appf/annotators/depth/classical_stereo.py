"""Classical stereo matching: OpenCV semi-global matching plus the post-processing that makes it
usable as a default depth source (OpenCV + numba, no weights).

`classical_disparity` (ours), one matcher pass:
  1. OpenCV SGBM in its 3-way mode (`MODE_SGBM_3WAY`: left-to-right, right-to-left and
     top-to-bottom paths; pixel-wise Birchfield-Tomasi cost, blockSize 1) on grey images padded on
     the left by the disparity range, so the leftmost columns get a full search. The left-right
     check is OpenCV's own (`disp12MaxDiff`): SGBM derives the right view's disparity from the
     same aggregated cost volume (per right pixel, the cheapest left pixel landing on it) and drops
     left pixels that disagree with it; uniqueness and speckle filters are OpenCV's too;
  2. pixels whose match falls left of the right image (into the padding) are dropped;
  3. a colour-weighted median on the pixels next to a disparity jump (boundaries onto colour
     edges; numba, `edge_aware`);
  4. the invalid pixels are classified by forward-warping the map to the right view (z-buffer,
     `occlusion_masks`): those whose background maps left of the right image take that background
     (the nearest valid disparity on their row); occluded ones (the right view sees a nearer
     surface there) are filled the same way only with `fill_occlusions`, and small holes by a
     colour-weighted median from their rim only with `max_hole_fraction` > 0: on Middlebury both
     add coverage at 24-38% bad-2, so both are off by default (docs/design-notes.md);
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

from appf.annotators.depth import stereo_kernels as kernels
from appf.annotators.depth.edge_aware import (
    fill_by_rings,
    lab_guide,
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
    """Parameters of `classical_disparity` (pixels unless stated). Defaults: chosen on Middlebury
    Motorcycle among a few values (bench/bench_stereo.py, docs/design-notes.md)."""

    block_size: int = 1
    p1: int = 16  # SGBM P1 = p1 * channels * block_size^2
    p2: int = 20  # SGBM P2 = p2 * channels * block_size^2 (OpenCV raises it to at least P1 + 1)
    uniqueness_ratio: int = 10  # percent
    speckle_window: int = 100
    speckle_range: int = 2
    mode: str = "3way"  # a key of _MODES
    lr_max_diff_px: int = 1  # OpenCV's disp12MaxDiff; OpenCV 5.0 treats values <= 0 as 1
    refine_radius: int = 3  # weighted median window (2r+1)^2; 0 disables it
    refine_band_px: int = 1  # ... applied within this distance of a disparity jump
    sigma_color: float = 10.0  # 8-bit Lab units
    max_hole_fraction: float = 0.0  # > 0: fill holes up to this fraction of the image area
    fill_occlusions: bool = False  # fill occluded pixels with their background
    occlusion_tolerance_px: float = 1.0
    subpixel_radius: int = 1  # 0 disables the sub-pixel refinement


def num_disparities(max_disp_px: float) -> int:
    """SGBM's search range: max disparity rounded up to a multiple of 16 (at least 16)."""
    return max(16, int(np.ceil((float(max_disp_px) + 1.0) / 16.0)) * 16)


def _grey(rgb: np.ndarray) -> np.ndarray:
    rgb = np.ascontiguousarray(rgb)
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def sgbm_left(left: np.ndarray, right: np.ndarray, ndisp: int, p: StereoParams) -> np.ndarray:
    """Left-referenced SGBM disparity (OpenCV's left-right check included) with a left margin of
    `ndisp` columns; pixels whose match lies left of the right image are invalid (0)."""
    cn = 1 if left.ndim == 2 else left.shape[2]
    bs = p.block_size
    matcher = cv2.StereoSGBM_create(
        minDisparity=0, numDisparities=ndisp, blockSize=bs, P1=p.p1 * cn * bs * bs,
        P2=p.p2 * cn * bs * bs, disp12MaxDiff=p.lr_max_diff_px,
        uniquenessRatio=p.uniqueness_ratio, speckleWindowSize=p.speckle_window,
        speckleRange=p.speckle_range, mode=_MODES[p.mode])
    lp = cv2.copyMakeBorder(left, 0, 0, ndisp, 0, cv2.BORDER_REPLICATE)
    rp = cv2.copyMakeBorder(right, 0, 0, ndisp, 0, cv2.BORDER_REPLICATE)
    d = matcher.compute(lp, rp)[:, ndisp:].astype(np.float32) / 16.0
    in_right_view = np.arange(d.shape[1], dtype=np.float32)[None, :] - d >= -0.5
    return np.where((d > 0) & in_right_view, d, 0.0).astype(np.float32)


def occlusion_masks(disp: np.ndarray, tolerance_px: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(occluded, outside) masks of the invalid pixels of a left disparity map, by forward-warping
    it to the right view: a pixel's background estimate (the smaller of the nearest valid
    disparities on its row) maps under a nearer surface (occluded) or left of the right image
    (outside). Compiled loop: `stereo_kernels.occlusion_masks_kernel`."""
    disp = np.ascontiguousarray(disp, dtype=np.float32)
    occluded = np.zeros(disp.shape, bool)
    outside = np.zeros(disp.shape, bool)
    kernels.occlusion_masks_kernel(disp, float(tolerance_px), occluded, outside)
    return occluded, outside


def fill_background(disp: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Invalid `target` pixels take the background (smaller) of the nearest valid disparities on
    their row (the one there is, at the image border)."""
    disp = np.ascontiguousarray(disp, dtype=np.float32)
    return np.where(target & (disp <= 0), kernels.background_disparity(disp), disp)


def classical_disparity(left_rgb: np.ndarray, right_rgb: np.ndarray, max_disp_px: float,
                        params: StereoParams = StereoParams()) -> np.ndarray:
    """Disparity (H, W) float32 pixels, 0 = invalid, of a rectified pair (H, W, 3) uint8 RGB."""
    if left_rgb.shape != right_rgb.shape:
        raise ValueError(f"left and right images differ in shape: {left_rgb.shape} vs "
                         f"{right_rgb.shape}")
    p = params
    disp = sgbm_left(_grey(left_rgb), _grey(right_rgb), num_disparities(max_disp_px), p)
    lab = lab_guide(left_rgb)
    if p.refine_radius > 0:
        disp = refine_discontinuities(disp, lab, p.refine_radius, p.sigma_color, p.refine_band_px)
    occluded, outside = occlusion_masks(disp, p.occlusion_tolerance_px)
    disp = fill_background(disp, outside | occluded if p.fill_occlusions else outside)
    max_area = int(p.max_hole_fraction * disp.size)
    if max_area > 0:
        disp = fill_by_rings(disp, lab, small_holes(disp, max_area), max(p.refine_radius, 1),
                             p.sigma_color)
    if p.subpixel_radius > 0:
        disp = smooth_subpixel(disp, lab, p.subpixel_radius, p.sigma_color)
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
