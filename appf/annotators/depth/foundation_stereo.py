"""`foundation_stereo`: FoundationStereo learned stereo (DROID), from a source checkout (see
foundation_stereo_loader for what the worker image needs).

Per batch: both views are resized by `scale` (the inference resolution; K is rescaled with them),
padded with replicated borders, centred, to multiples of 32, run together, and the disparity is
unpadded; pixels whose match falls outside the right view are invalid (as in the reference demo);
depth = fx * B / disparity with fx of the rectified left camera *at the inference resolution*,
then resized back to the camera's resolution without mixing in invalid pixels, so K is unchanged.
On GPU it runs under fp16 autocast like the reference demo (APPF_DEPTH_PRECISION overrides).
"""

from __future__ import annotations

import os
from typing import Any

import cv2
import numpy as np

from appf.annotators.depth.foundation_stereo_loader import load_foundation_stereo
from appf.annotators.depth.runtime import PRECISION_ENV, autocast, select_device, select_dtype
from appf.annotators.depth.sgbm import require_stereo
from appf.annotators.depth.units import (
    disparity_to_depth_m,
    pad_amounts,
    resize_depth_m,
    resize_intrinsics,
    scaled_size,
)
from appf.annotators.protocols import DepthBatch, DepthResult
from appf.annotators.weights import resolve_weights, weight_spec

PAD_MULTIPLE = 32


def _resize_views(views: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    h, w = hw
    if views.shape[1:3] == (h, w):
        return views
    interp = cv2.INTER_AREA if h < views.shape[1] else cv2.INTER_LINEAR
    return np.stack([cv2.resize(v, (w, h), interpolation=interp) for v in views])


class FoundationStereoDepth:
    """FoundationStereo behind the DepthAnnotator protocol (see the module docstring)."""

    name = "foundation_stereo"

    def __init__(self, weights: str = "foundation-stereo-vitl", weights_path: str | None = None,
                 code_dir: str | None = None, valid_iters: int | None = None, scale: float = 1.0,
                 device: str | None = None, precision: str | None = None):
        spec = weight_spec(weights)
        self.weights = weights
        self.weights_path = weights_path
        self.code_dir = code_dir
        self.weights_id = spec.weights_id
        self.revision = spec.revision or ""
        self.valid_iters = valid_iters
        self.scale = float(scale)
        self.device_pref = device
        # the reference demo runs under fp16 autocast; $APPF_DEPTH_PRECISION still overrides
        self.precision_pref = precision or os.environ.get(PRECISION_ENV) or "fp16"
        self._model: Any = None

    @classmethod
    def from_model(cls, model: Any, weights_id: str = "in-memory", revision: str = "",
                   **kwargs: Any) -> "FoundationStereoDepth":
        """Wrap an already built model with the FoundationStereo contract (tests, benchmarks)."""
        self = cls(**kwargs)
        self.weights_id, self.revision = weights_id, revision
        self._attach(model, self.valid_iters or 32)
        return self

    def load(self) -> None:
        if self._model is not None:
            return
        resolved = resolve_weights(self.weights, self.weights_path)
        model, iters = load_foundation_stereo(self.code_dir, resolved.directory)
        self.revision = resolved.revision
        self._attach(model, self.valid_iters or iters)

    def _attach(self, model: Any, valid_iters: int) -> None:
        self.device = select_device(self.device_pref)
        self.dtype = select_dtype(self.device, self.precision_pref)
        self.valid_iters = int(valid_iters)
        self._model = model.to(self.device).eval()

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Left disparity (B, h, w) float32 pixels of a (B, h, w, 3) uint8 pair at this size."""
        import torch
        import torch.nn.functional as F

        B, h, w = left.shape[:3]
        top, bottom, lft, rgt = pad_amounts(h, w, PAD_MULTIPLE)

        def tensor(x: np.ndarray) -> Any:
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2).float()
            return F.pad(t, (lft, rgt, top, bottom), mode="replicate")

        with torch.inference_mode(), autocast(self.device, self.dtype):
            disp = self._model(tensor(left), tensor(right), iters=self.valid_iters, test_mode=True)
        disp = disp.float()[:, 0, top:top + h, lft:lft + w].cpu().numpy()
        outside = np.arange(w)[None, None, :] - disp < 0  # match left of the right view
        return np.where(np.isfinite(disp) & (disp > 0) & ~outside, disp, 0.0).astype(np.float32)

    def annotate(self, batch: DepthBatch) -> DepthResult:
        if self._model is None:
            raise RuntimeError("FoundationStereoDepth.annotate called before load()")
        K, baseline = require_stereo(batch, self.name)
        left, right = np.asarray(batch.rgb), np.asarray(batch.rgb_right)
        H, W = left.shape[1:3]
        hw = scaled_size(H, W, self.scale)
        K_inf = resize_intrinsics(K, (H, W), hw)
        disp = self.disparity(_resize_views(left, hw), _resize_views(right, hw))
        depth = disparity_to_depth_m(disp, float(K_inf[0, 0]), baseline)
        return DepthResult(depth_m=resize_depth_m(depth, (H, W)), K=K)
