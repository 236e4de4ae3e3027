"""`moge2`: MoGe-2 monocular metric depth (BridgeV2 and chosen simulators), from MoGe's own model
class (PyPI `dlr-moge`, an exact repackaging of microsoft/MoGe; optional extra).

One forward pass per batch at the camera's resolution (MoGe resizes to its token grid inside and
returns maps at the input size, so no padding and no resize back). The affine point map is turned
into metric depth as MoGe's `infer` does -- z shift from `recover_focal_shift`, times the metric
scale of the scale head, masked by the validity head -- with one difference: the focal length is
shared by the whole batch. With calibrated K it comes from fx; without calibration it is the
median of the per-frame estimates, and the batch's pixel K is built from MoGe's normalised
intrinsics (fx_px = fx_n * W, cx_px = 0.5 * W - 0.5: MoGe's uv puts pixel centres at (i + 0.5) / W).
Within an episode, annotate_episode_depth hands the first batch's K to the later batches, so one
camera keeps one K.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from appf.annotators.depth.runtime import (
    WrapsBuiltModel, autocast, import_optional, select_device, select_dtype,
)
from appf.annotators.depth.units import clean_depth_m
from appf.annotators.protocols import DepthBatch, DepthResult
from appf.annotators.weights import resolve_weights, weight_spec

_INSTALL = ("pip install --no-deps dlr-moge==2.0.0 dlr-utils3d==1.3 (plus torch, scipy, "
            "opencv-python-headless, huggingface_hub); never the unrelated PyPI 'utils3d'")


def focal_from_fx(fx_px: float, height: int, width: int) -> float:
    """MoGe's focal (relative to half the image diagonal) for a pixel focal length fx."""
    aspect = width / height
    return 2.0 * (fx_px / width) * aspect / math.sqrt(1.0 + aspect * aspect)


def pixel_intrinsics(focal: float, height: int, width: int) -> np.ndarray:
    """Pixel K for MoGe's focal, principal point at the image centre."""
    aspect = width / height
    diag = math.sqrt(1.0 + aspect * aspect)
    fx_n = focal / 2.0 * diag / aspect
    fy_n = focal / 2.0 * diag
    return np.array([[fx_n * width, 0.0, 0.5 * width - 0.5],
                     [0.0, fy_n * height, 0.5 * height - 0.5],
                     [0.0, 0.0, 1.0]])


class MoGe2Depth(WrapsBuiltModel):
    """MoGe-2 behind the DepthAnnotator protocol (see the module docstring)."""

    name = "moge2"

    def __init__(self, weights: str = "moge-2-vitl-normal", weights_path: str | None = None,
                 device: str | None = None, precision: str | None = None,
                 resolution_level: int = 9, num_tokens: int | None = None):
        spec = weight_spec(weights)
        self.weights = weights
        self.weights_path = weights_path
        self.weights_id = spec.weights_id
        self.revision = spec.revision or ""
        self.device_pref = device
        self.precision_pref = precision
        if not 0 <= resolution_level <= 9:
            raise ValueError(f"resolution_level must be in 0..9, got {resolution_level}")
        self.resolution_level = resolution_level
        self.num_tokens = num_tokens
        self._model: Any = None

    def load(self) -> None:
        if self._model is not None:
            return
        import_optional("torch", self.name, _INSTALL)
        v2 = import_optional("moge.model.v2", self.name, _INSTALL)
        resolved = resolve_weights(self.weights, self.weights_path)
        model = v2.MoGeModel.from_pretrained(str(Path(resolved.directory) / "model.pt"))
        self.revision = resolved.revision
        self._attach(model)

    def _attach(self, model: Any) -> None:
        geometry = import_optional("moge.utils.geometry_torch", self.name, _INSTALL)
        self._recover_focal_shift = geometry.recover_focal_shift
        self.device = select_device(self.device_pref)
        self.dtype = select_dtype(self.device, self.precision_pref)
        self._model = model.to(self.device).eval()

    def tokens(self) -> int:
        if self.num_tokens:
            return int(self.num_tokens)
        lo, hi = self._model.num_tokens_range
        return int(lo + self.resolution_level / 9 * (hi - lo))

    def annotate(self, batch: DepthBatch) -> DepthResult:
        import torch

        if self._model is None:
            raise RuntimeError("MoGe2Depth.annotate called before load()")
        rgb = np.asarray(batch.rgb)
        B, H, W = rgb.shape[:3]
        x = torch.from_numpy(rgb).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            with autocast(self.device, self.dtype):
                out = self._model.forward(x, num_tokens=self.tokens())
            points = out["points"].float()
            scale = out.get("metric_scale")
            if scale is None:
                raise ValueError(f"{batch.where}: this MoGe checkpoint has no metric scale head "
                                 "(MoGe-1 is scale-invariant); use MoGe-2 weights")
            scale = scale.float()
            mask = out["mask"].float() > 0.5 if "mask" in out else None
            if batch.K is not None:
                K = np.asarray(batch.K, dtype=np.float64)
                focal = torch.full((B,), focal_from_fx(float(K[0, 0]), H, W), device=points.device)
            else:
                per_frame, _ = self._recover_focal_shift(points, mask)
                focal = per_frame.median().expand(B).clone()
                if not (math.isfinite(float(focal[0])) and float(focal[0]) > 0):
                    raise ValueError(f"{batch.where}: MoGe's focal-length estimate for this batch is "
                                     f"not positive ({float(focal[0]):.4g}); cannot build K for a "
                                     "camera without calibration")
                K = pixel_intrinsics(float(focal[0]), H, W)
            _, shift = self._recover_focal_shift(points, mask, focal=focal)
            z = points[..., 2] + shift.to(points.device)[:, None, None]
            valid = torch.isfinite(z) & (z > 0)
            if mask is not None:
                valid &= mask
            depth = torch.where(valid, z * scale[:, None, None], torch.zeros_like(z))
        return DepthResult(depth_m=clean_depth_m(depth.cpu().numpy()), K=K)
