"""The depth-quality harness: run a depth backend through the DepthAnnotator protocol on cases
with ground truth and score it (no file access: the CLI builds the cases).

Stereo: the backend returns depth z for the pair; z is turned back into the matcher's pixel
disparity d = fx * B / z (exact: the backend computed z = fx * B / d with the same fx and B) and
scored against the ground-truth disparity; with a real fx, baseline and doffs, metric depth
z = fx * B / (d + doffs) is scored too (AbsRel, RMSE, delta1). Without them, placeholder
fx = B = 1 keep the round trip exact and only disparity figures are reported.
RGB-D: the backend's depth is scored against ground-truth depth, on all pixels and on the
sensor's holes alone, next to the raw sensor depth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from appf.annotators.depth.classical_stereo import plain_sgbm_disparity
from appf.annotators.depth.units import depth_m_to_disparity, disparity_to_depth_m
from appf.annotators.protocols import DepthAnnotator, DepthBatch
from appf.transforms.depth_metrics import depth_metrics, disparity_metrics, valid_mask


@dataclass
class StereoCase:
    """A rectified pair with left-referenced ground-truth disparity (px; +inf or 0 = unknown)."""

    name: str
    left: np.ndarray
    right: np.ndarray
    gt_disparity: np.ndarray
    fx_px: float | None = None
    baseline_m: float | None = None
    doffs_px: float = 0.0

    @property
    def metric(self) -> bool:
        return bool(self.fx_px) and bool(self.baseline_m)

    def max_disparity(self) -> float:
        gt = self.gt_disparity[valid_mask(self.gt_disparity)]
        return float(np.ceil(gt.max())) if gt.size else float(self.left.shape[1] // 4)


@dataclass
class RgbdCase:
    """An RGB frame with a sensor depth (holes = 0) and ground-truth depth, metres."""

    name: str
    rgb: np.ndarray
    sensor_depth_m: np.ndarray
    gt_depth_m: np.ndarray
    K: np.ndarray


def set_search_range(annotator: DepthAnnotator, max_disp_px: float) -> None:
    """Give backends that search a disparity range (`max_disp_px` attribute) the case's range."""
    if hasattr(annotator, "max_disp_px"):
        annotator.max_disp_px = float(max_disp_px)


def _placeholder_K(fx: float, h: int, w: int) -> np.ndarray:
    return np.array([[fx, 0.0, (w - 1) / 2], [0.0, fx, (h - 1) / 2], [0.0, 0.0, 1.0]])


def score_disparity(disp_px: np.ndarray, case: StereoCase) -> dict[str, Any]:
    """Disparity (and, for metric cases, depth) metrics of a left disparity map (0 = invalid)."""
    out: dict[str, Any] = disparity_metrics(disp_px, case.gt_disparity)
    if case.metric:
        pred_z = disparity_to_depth_m(np.where(disp_px > 0, disp_px, np.nan), case.fx_px,
                                      case.baseline_m, case.doffs_px)
        gt = np.where(valid_mask(case.gt_disparity), case.gt_disparity, np.nan)
        gt_z = disparity_to_depth_m(gt, case.fx_px, case.baseline_m, case.doffs_px)
        depth = depth_metrics(pred_z, gt_z)
        out.update({k: depth[k] for k in ("abs_rel", "rmse_m", "delta1")})
    return out


def evaluate_stereo(annotator: DepthAnnotator, case: StereoCase,
                    max_disp_px: float | None = None) -> dict[str, Any]:
    """Run `annotator` (loaded) on the pair and score it; adds `seconds`."""
    h, w = case.left.shape[:2]
    fx = case.fx_px or 1.0
    baseline = case.baseline_m or 1.0
    set_search_range(annotator, max_disp_px or case.max_disparity())
    batch = DepthBatch(rgb=case.left[None], K=_placeholder_K(fx, h, w), rgb_right=case.right[None],
                       baseline_m=baseline, where=case.name)
    start = time.perf_counter()
    depth = annotator.annotate(batch).depth_m[0]
    seconds = time.perf_counter() - start
    out = score_disparity(depth_m_to_disparity(depth, fx, baseline), case)
    out["seconds"] = seconds
    return out


def evaluate_plain_sgbm(case: StereoCase, max_disp_px: float | None = None) -> dict[str, Any]:
    """The baseline on the same case and search range: plain cv2.StereoSGBM."""
    start = time.perf_counter()
    disp = plain_sgbm_disparity(case.left, case.right, max_disp_px or case.max_disparity())
    seconds = time.perf_counter() - start
    out = score_disparity(disp, case)
    out["seconds"] = seconds
    return out


def evaluate_rgbd(annotator: DepthAnnotator, case: RgbdCase) -> dict[str, Any]:
    """Depth metrics of the backend on all ground-truth pixels and on the sensor's holes, and of
    the raw sensor depth (its coverage is what completion adds to)."""
    batch = DepthBatch(rgb=case.rgb[None], K=case.K, sensor_depth=case.sensor_depth_m[None],
                       where=case.name)
    start = time.perf_counter()
    pred = annotator.annotate(batch).depth_m[0]
    seconds = time.perf_counter() - start
    holes = ~valid_mask(case.sensor_depth_m)
    gt_holes = np.where(holes, case.gt_depth_m, 0.0)
    out: dict[str, Any] = depth_metrics(pred, case.gt_depth_m)
    out.update({f"holes_{k}": v for k, v in depth_metrics(pred, gt_holes).items()})
    out.update({f"sensor_{k}": v for k, v in depth_metrics(case.sensor_depth_m,
                                                           case.gt_depth_m).items()})
    out["seconds"] = seconds
    return out


def simulate_sensor_holes(depth_m: np.ndarray, seed: int = 0, edge_band_px: int | None = None,
                          blobs: int = 30, max_blob_radius_px: int | None = None) -> np.ndarray:
    """An RGB-D sensor's depth made from exact depth: holes (0) in a band along depth
    discontinuities (shadows of structured light / time-of-flight mixed pixels) and `blobs`
    random elliptical dropouts (absorbing or specular surfaces) with radii up to
    `max_blob_radius_px`; defaults scale with the image (band: shorter side / 160, at least 1;
    radius: 4 % of the shorter side); deterministic for a seed."""
    from scipy import ndimage as ndi

    depth = np.where(valid_mask(depth_m), depth_m, 0.0).astype(np.float32)
    h, w = depth.shape
    if edge_band_px is None:
        edge_band_px = max(1, round(min(h, w) / 160))
    if max_blob_radius_px is None:
        max_blob_radius_px = max(3, round(0.04 * min(h, w)))
    rng = np.random.default_rng(seed)
    jump = np.zeros((h, w), bool)
    rel = 0.03  # a 3 % depth step between neighbours is a discontinuity
    dx = np.abs(np.diff(depth, axis=1)) > rel * np.maximum(depth[:, 1:], depth[:, :-1])
    dy = np.abs(np.diff(depth, axis=0)) > rel * np.maximum(depth[1:], depth[:-1])
    jump[:, 1:] |= dx
    jump[1:] |= dy
    holes = ndi.binary_dilation(jump, iterations=edge_band_px) if edge_band_px > 0 else jump
    yy, xx = np.ogrid[:h, :w]
    for _ in range(blobs):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ay, ax = rng.integers(2, max(3, max_blob_radius_px), size=2)
        holes |= ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0
    return np.where(holes, 0.0, depth).astype(np.float32)
