"""`sgbm`: classical stereo depth (one OpenCV semi-global matching pass with OpenCV's left-right
check, edge-aware median, occlusion classification, sub-pixel refinement: `classical_stereo`); no
weights, the embedded default for stereo sources."""

from __future__ import annotations

import numpy as np

from appf.annotators.depth.classical_stereo import StereoParams, classical_disparity
from appf.annotators.depth.units import disparity_to_depth_m
from appf.annotators.protocols import DepthBatch, DepthResult


def require_stereo(batch: DepthBatch, backend: str) -> tuple[np.ndarray, float]:
    """(K, baseline_m) of a stereo batch, or a clear error naming what is missing."""
    missing = [n for n, v in (("rgb_right", batch.rgb_right), ("baseline_m", batch.baseline_m),
                              ("intrinsics K", batch.K)) if v is None]
    if missing:
        raise ValueError(f"{batch.where}: depth backend {backend!r} needs a rectified stereo camera; "
                         f"missing {', '.join(missing)}; choose another backend with --depth")
    if batch.rgb_right.shape != batch.rgb.shape:
        raise ValueError(f"{batch.where}: left {batch.rgb.shape} and right {batch.rgb_right.shape} "
                         "images differ in shape")
    if not batch.baseline_m > 0:
        raise ValueError(f"{batch.where}: baseline_m must be > 0, got {batch.baseline_m}")
    return np.asarray(batch.K, dtype=np.float64), float(batch.baseline_m)


class SgbmStereoDepth:
    """Depth z = fx * B / d from `classical_disparity` per frame. The disparity search range
    covers depths down to `min_depth_m` (max disparity = fx * B / min_depth_m, capped at the
    image width), or up to `max_disp_px` when that is set (evaluation on a known range)."""

    name = "sgbm"
    weights_id = ""
    revision = ""

    def __init__(self, min_depth_m: float = 0.25, params: StereoParams | None = None,
                 max_disp_px: float | None = None):
        if min_depth_m <= 0:
            raise ValueError(f"min_depth_m must be > 0, got {min_depth_m}")
        self.min_depth_m = float(min_depth_m)
        self.max_disp_px = max_disp_px
        self.params = params or StereoParams()

    def load(self) -> None:
        return None

    def annotate(self, batch: DepthBatch) -> DepthResult:
        K, baseline = require_stereo(batch, self.name)
        fx = float(K[0, 0])
        width = batch.rgb.shape[2]
        max_disp = self.max_disp_px or fx * baseline / self.min_depth_m
        max_disp = min(max_disp, float(width - 1))
        depth = np.stack([
            disparity_to_depth_m(classical_disparity(left, right, max_disp, self.params), fx, baseline)
            for left, right in zip(np.asarray(batch.rgb), np.asarray(batch.rgb_right))])
        return DepthResult(depth_m=depth.astype(np.float32), K=K)
