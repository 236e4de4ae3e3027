"""`promptda`: PromptDepthAnything depth completion (RGB + sensor-depth prompt -> metric depth),
through transformers' PromptDepthAnythingForDepthEstimation. For RGB-D sources (AgiBot).

Per batch: the image is resized (bicubic) to the model's input size -- the -hf repositories'
preprocessor_config.json: scale by the factor nearer 1 that maps (H, W) onto 756 x 756 keeping
the aspect ratio, each side rounded to a multiple of 14 -- and normalised with ImageNet mean/std;
the prompt is the sensor depth in metres with its holes filled first (the model min-max normalises
the prompt per image, so a single 0 would drag the scale to 0), resized to the prompt size
(short side `prompt_short_side_px`, 192 like the ARKit LiDAR it was trained on). The predicted
depth (metres, bounded by the prompt's min and max) is resized back to the camera's resolution,
so K is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appf.annotators.depth.runtime import (
    BackendUnavailableError,
    WrapsBuiltModel,
    autocast,
    import_optional,
    select_device,
    select_dtype,
)
from appf.annotators.depth.sensor_fill import dense_prompt
from appf.annotators.depth.units import clean_depth_m
from appf.annotators.protocols import DepthBatch, DepthResult
from appf.annotators.weights import resolve_weights, weight_spec

_INSTALL = "pip install 'transformers>=4.50' torch (transformers 5.x needs Python >= 3.11)"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _constrain(value: float, multiple: int) -> int:
    """Round to a multiple (as transformers' DPT-style processors do), at least one multiple."""
    return max(multiple, int(round(value / multiple) * multiple))


def model_input_size(height: int, width: int, size_hw: tuple[int, int] = (756, 756),
                     multiple: int = 14, keep_aspect_ratio: bool = True) -> tuple[int, int]:
    """The (h, w) the image is resized to, following the processor's rule."""
    sh, sw = size_hw[0] / height, size_hw[1] / width
    if keep_aspect_ratio:
        if abs(1 - sw) < abs(1 - sh):
            sh = sw
        else:
            sw = sh
    return _constrain(sh * height, multiple), _constrain(sw * width, multiple)


def prompt_size(height: int, width: int, short_side_px: int) -> tuple[int, int]:
    """(h, w) of the prompt: short side `short_side_px`, the image's aspect ratio."""
    if height <= width:
        return short_side_px, max(1, int(round(short_side_px * width / height)))
    return max(1, int(round(short_side_px * height / width))), short_side_px


def _processor_settings(directory: Path | None) -> dict[str, Any]:
    settings = {"size": (756, 756), "multiple": 14, "keep_aspect_ratio": True,
                "mean": _IMAGENET_MEAN, "std": _IMAGENET_STD}
    path = directory / "preprocessor_config.json" if directory else None
    if path and path.is_file():
        cfg = json.loads(path.read_text())
        size = cfg.get("size") or {}
        settings.update(
            size=(int(size.get("height", 756)), int(size.get("width", 756))),
            multiple=int(cfg.get("ensure_multiple_of") or 1),
            keep_aspect_ratio=bool(cfg.get("keep_aspect_ratio", True)),
            mean=tuple(cfg.get("image_mean", _IMAGENET_MEAN)),
            std=tuple(cfg.get("image_std", _IMAGENET_STD)))
    return settings


class PromptDepthAnythingDepth(WrapsBuiltModel):
    """PromptDepthAnything behind the DepthAnnotator protocol (see the module docstring)."""

    name = "promptda"

    def __init__(self, weights: str = "promptda-vitl", weights_path: str | None = None,
                 device: str | None = None, precision: str | None = None,
                 prompt_short_side_px: int = 192):
        spec = weight_spec(weights)
        self.weights = weights
        self.weights_path = weights_path
        self.weights_id = spec.weights_id
        self.revision = spec.revision or ""
        self.device_pref = device
        self.precision_pref = precision
        self.prompt_short_side_px = int(prompt_short_side_px)
        self._model: Any = None
        self._settings = _processor_settings(None)

    def load(self) -> None:
        if self._model is not None:
            return
        import_optional("torch", self.name, _INSTALL)
        transformers = import_optional("transformers", self.name, _INSTALL)
        if not hasattr(transformers, "PromptDepthAnythingForDepthEstimation"):
            raise BackendUnavailableError(
                f"depth backend 'promptda' needs transformers >= 4.50 (found "
                f"{getattr(transformers, '__version__', '?')}); install it with: {_INSTALL}")
        resolved = resolve_weights(self.weights, self.weights_path)
        model = transformers.PromptDepthAnythingForDepthEstimation.from_pretrained(
            str(resolved.directory))
        self._settings = _processor_settings(resolved.directory)
        self.revision = resolved.revision
        self._attach(model)

    def _attach(self, model: Any) -> None:
        self.device = select_device(self.device_pref)
        self.dtype = select_dtype(self.device, self.precision_pref)
        self._model = model.to(self.device).eval()

    def annotate(self, batch: DepthBatch) -> DepthResult:
        import torch
        import torch.nn.functional as F

        if self._model is None:
            raise RuntimeError("PromptDepthAnythingDepth.annotate called before load()")
        if batch.sensor_depth is None:
            raise ValueError(f"{batch.where}: depth backend 'promptda' needs the sensor depth as its "
                             "prompt and this camera has none; choose another backend with --depth")
        if batch.K is None:
            raise ValueError(f"{batch.where}: intrinsics missing; 'promptda' cannot estimate K")
        rgb = np.asarray(batch.rgb)
        B, H, W = rgb.shape[:3]
        s = self._settings
        h, w = model_input_size(H, W, s["size"], s["multiple"], s["keep_aspect_ratio"])
        ph, pw = prompt_size(H, W, self.prompt_short_side_px)
        prompts = []
        for i in range(B):
            dense = dense_prompt(clean_depth_m(batch.sensor_depth[i]), rgb[i],
                                 f"{batch.where} frame {i}")
            interp = cv2.INTER_AREA if ph < H else cv2.INTER_LINEAR
            p = cv2.resize(dense, (pw, ph), interpolation=interp)
            if p.max() - p.min() < 1e-6:  # the model divides by (max - min)
                p[0, 0] += 1e-3
            prompts.append(p)
        x = torch.from_numpy(rgb).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False,
                          antialias=h < H or w < W)
        mean = torch.tensor(s["mean"], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(s["std"], device=self.device).view(1, 3, 1, 1)
        x = (x - mean) / std
        prompt = torch.from_numpy(np.stack(prompts)[:, None]).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            pred = self._model(pixel_values=x, prompt_depth=prompt).predicted_depth
        pred = F.interpolate(pred.float()[:, None], size=(H, W), mode="bilinear",
                             align_corners=False)[:, 0]
        depth = clean_depth_m(pred.cpu().numpy())
        return DepthResult(depth_m=depth, K=np.asarray(batch.K, dtype=np.float64))
