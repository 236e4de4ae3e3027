"""Ground-truth depth: the simulator's (or sensor's) stored depth, checked and passed through."""

from __future__ import annotations

import numpy as np

from appf.annotators.protocols import DepthBatch, DepthResult


class GroundTruthDepth:
    """Returns `batch.sensor_depth` unchanged; NaN/inf or negative depth is an error (a source
    must map invalid pixels to 0 at ingest)."""

    name = "ground_truth"
    weights_id = ""
    revision = ""

    def load(self) -> None:
        return None

    def annotate(self, batch: DepthBatch) -> DepthResult:
        if batch.sensor_depth is None:
            raise ValueError(
                f"{batch.where}: depth backend 'ground_truth' needs stored depth, and this camera "
                "has none; choose a depth backend that estimates depth (--depth)"
            )
        if batch.K is None:
            raise ValueError(f"{batch.where}: intrinsics missing; ground-truth depth cannot estimate K")
        depth = np.asarray(batch.sensor_depth, dtype=np.float32)
        bad = ~np.isfinite(depth)
        if bad.any():
            b, v, u = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{batch.where}: depth has {int(bad.sum())} NaN/inf value(s), first at batch frame {b} "
                f"pixel (u={u}, v={v}); invalid depth must be 0"
            )
        if (depth < 0).any():
            raise ValueError(f"{batch.where}: negative depth values; depth must be metres >= 0")
        return DepthResult(depth_m=depth, K=np.asarray(batch.K, dtype=np.float64))
