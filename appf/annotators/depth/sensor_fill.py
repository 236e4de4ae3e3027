"""`sensor_fill`: edge-aware completion of a sensor's depth (RGB-D sources); no weights.

Measured pixels are kept as they are; every hole pixel takes the depth of the nearest measured
pixel left, right, above or below it whose colour is most like its own (weighted by 1 / distance),
so holes are filled from the surface they belong to rather than averaged across an edge; a final
colour-weighted median over the filled pixels removes the streaks of that scan.
"""

from __future__ import annotations

import numpy as np

from appf.annotators.depth.edge_aware import directional_fill, lab_guide, weighted_median_at
from appf.annotators.depth.units import clean_depth_m
from appf.annotators.protocols import DepthBatch, DepthResult


def complete_depth(depth_m: np.ndarray, rgb: np.ndarray, max_distance_px: float | None = None,
                   sigma_color: float = 10.0, smooth_radius: int = 3) -> np.ndarray:
    """Complete one depth map (H, W) metres (0 / NaN / inf = hole) guided by its RGB (H, W, 3).

    Holes farther than `max_distance_px` from any measurement along a row or column stay 0
    (None fills every hole that has a measurement on its row or column). Returns float32 metres.
    """
    depth = clean_depth_m(depth_m)
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth {depth.shape} and image {rgb.shape[:2]} differ in size")
    holes = depth <= 0
    if not holes.any() or holes.all():
        return depth
    lab = lab_guide(rgb)
    filled = directional_fill(depth, lab, sigma_color, max_distance_px)
    if smooth_radius > 0:
        ys, xs = np.nonzero(holes & (filled > 0))
        if len(ys):
            med, _, tot = weighted_median_at(filled, filled > 0, lab, ys, xs, smooth_radius,
                                             sigma_color)
            ok = tot > 0
            filled[ys[ok], xs[ok]] = med[ok]
    return filled.astype(np.float32)


def dense_prompt(depth_m: np.ndarray, rgb: np.ndarray, where: str = "") -> np.ndarray:
    """A hole-free depth map (what PromptDepthAnything needs as its prompt): `complete_depth`
    with no distance limit, then the nearest measurement for anything left. Raises if the frame
    has no valid depth at all."""
    depth = clean_depth_m(depth_m)
    if not (depth > 0).any():
        raise ValueError(f"{where}: the sensor depth of this frame has no valid pixel; "
                         "cannot build a depth prompt")
    out = complete_depth(depth, rgb)
    rest = out <= 0
    if rest.any():
        from scipy import ndimage as ndi

        idx = ndi.distance_transform_edt(rest, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    return out


class SensorDepthCompletion:
    """Completes `batch.sensor_depth` frame by frame (see `complete_depth`); K passes through."""

    name = "sensor_fill"
    weights_id = ""
    revision = ""

    def __init__(self, max_distance_px: float | None = 64.0, sigma_color: float = 10.0):
        self.max_distance_px = max_distance_px
        self.sigma_color = sigma_color

    def load(self) -> None:
        return None

    def annotate(self, batch: DepthBatch) -> DepthResult:
        if batch.sensor_depth is None:
            raise ValueError(f"{batch.where}: depth backend 'sensor_fill' completes a sensor's depth "
                             "and this camera has none; choose another backend with --depth")
        if batch.K is None:
            raise ValueError(f"{batch.where}: intrinsics missing; 'sensor_fill' cannot estimate K")
        depth = np.stack([complete_depth(d, rgb, self.max_distance_px, self.sigma_color)
                          for d, rgb in zip(np.asarray(batch.sensor_depth), np.asarray(batch.rgb))])
        return DepthResult(depth_m=depth, K=np.asarray(batch.K, dtype=np.float64))
