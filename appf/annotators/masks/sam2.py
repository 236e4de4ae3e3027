"""`sam2` refinement: transformers' Sam2VideoModel seeded with anchor masks and propagated
forward and backward through a camera's frames held in memory, one object id per object.

Frames are processed in windows of `window_frames` with `overlap_frames` shared between
neighbours, so the video state (the model's input frames, float32 at image_size^2, 12 MB each at
1024) stays bounded for long episodes. Each window is seeded with the anchors inside it and, from
the second window on, with the previous window's masks on the overlap frames; a frame's result
comes from the window whose interior holds it.

Preprocessing follows transformers' Sam2VideoVideoProcessor (bilinear resize to the model's
square input, /255, ImageNet mean/std) and mask prompts follow Sam2VideoProcessor (bilinear
antialiased resize, >= 0.5); those processors need torchvision, which has no CPU build for the
pinned torch, so the steps are done here with OpenCV and torch. Outputs: mask logits resized back
to the camera's resolution and thresholded at 0; per-frame presence = sigmoid(object score).

Device: $APPF_DEPTH_DEVICE (auto = a GPU when there is one), as for the learned depth backends;
fp32 throughout. torch and transformers are imported only when a model loads or runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from appf.annotators.depth.runtime import WrapsBuiltModel, import_optional, select_device
from appf.annotators.weights import WeightsNotFoundError, resolve_weights, weight_spec

_INSTALL = "pip install 'transformers>=4.56' torch (see pyproject extra 'depth')"
_IMAGENET_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
_IMAGENET_STD = np.array((0.229, 0.224, 0.225), np.float32)


@dataclass
class RefinedMasks:
    """masks {object id: (T, H, W) bool}; presence {object id: (T,) float in [0, 1]}."""

    masks: dict[int, np.ndarray]
    presence: dict[int, np.ndarray]


def window_ranges(T: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) windows covering 0..T, consecutive ones sharing `overlap` frames."""
    if window <= overlap:
        raise ValueError(f"window_frames ({window}) must exceed overlap_frames ({overlap})")
    out, start = [], 0
    while True:
        stop = min(T, start + window)
        out.append((start, stop))
        if stop == T:
            return out
        start = stop - overlap


def _interior(ranges: list[tuple[int, int]], i: int, overlap: int) -> tuple[int, int]:
    """The frames window i is responsible for: its range minus half the overlap on each shared
    side."""
    a, b = ranges[i]
    lo = a + overlap // 2 if i > 0 else a
    hi = b - (overlap - overlap // 2) if i < len(ranges) - 1 else b
    return lo, hi


class Sam2VideoRefiner(WrapsBuiltModel):
    """Propagates seed masks through a video with SAM 2 (see the module docstring)."""

    name = "sam2"

    def __init__(self, weights: str = "sam2.1-hiera-large", window_frames: int = 64,
                 overlap_frames: int = 8, device: str | None = None):
        spec = weight_spec(weights)
        self.weights_name = weights
        self.weights_id, self.revision = spec.weights_id, spec.revision or "unpinned"
        self.window_frames, self.overlap_frames = window_frames, overlap_frames
        self.device_pref = device
        self.model = None
        self.device = None

    def unavailable_reason(self) -> str | None:
        try:
            resolve_weights(self.weights_name, download=False)
        except WeightsNotFoundError as e:
            return str(e)
        return None

    def load(self) -> None:
        if self.model is not None:
            return
        transformers = import_optional("transformers", self.name, _INSTALL)
        resolved = resolve_weights(self.weights_name)
        self.revision = resolved.revision
        self._attach(transformers.Sam2VideoModel.from_pretrained(str(resolved.directory)))

    def _attach(self, model: Any) -> None:
        self.device = select_device(self.device_pref)
        self.model = model.to(self.device).eval()
        self.image_size = int(model.config.image_size)

    def refine(self, rgb: np.ndarray, seeds: dict[int, dict[int, np.ndarray]]) -> RefinedMasks:
        """rgb (T, H, W, 3) uint8; seeds {object id: {frame: (H, W) bool}} (objects with no seed
        are skipped). Returns masks and presence for every seeded object."""
        T, H, W = rgb.shape[:3]
        seeds = {o: s for o, s in seeds.items() if s}
        masks = {o: np.zeros((T, H, W), bool) for o in seeds}
        presence = {o: np.zeros(T, np.float32) for o in seeds}
        if not seeds:
            return RefinedMasks(masks, presence)
        ranges = window_ranges(T, self.window_frames, self.overlap_frames)
        carry: dict[int, dict[int, np.ndarray]] = {}
        for i, (a, b) in enumerate(ranges):
            local = {o: {f - a: m for f, m in s.items() if a <= f < b} for o, s in seeds.items()}
            for o, frames in carry.items():  # the previous window's result on the overlap
                for f, m in frames.items():
                    local[o].setdefault(f - a, m)
            out, score = self._window(rgb[a:b], {o: s for o, s in local.items() if s})
            lo, hi = _interior(ranges, i, self.overlap_frames)
            for o in out:
                masks[o][lo:hi] = out[o][lo - a:hi - a]
                presence[o][lo:hi] = score[o][lo - a:hi - a]
            if i + 1 < len(ranges):  # the next window starts at b - overlap_frames (> a)
                carry = {o: {f: out[o][f - a] for f in range(b - self.overlap_frames, b)
                             if out[o][f - a].any()} for o in out}
        return RefinedMasks(masks, presence)

    def _pixel_values(self, frames: np.ndarray) -> Any:
        """(T, 3, S, S) float32, filled frame by frame (peak memory: the result + one frame)."""
        import torch

        s = self.image_size
        out = torch.empty((len(frames), 3, s, s), dtype=torch.float32)
        for i, f in enumerate(frames):
            x = cv2.resize(f, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
            out[i] = torch.from_numpy(((x - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1))
        return out

    def _add_mask(self, session: Any, obj_id: int, frame: int, mask: np.ndarray) -> None:
        import torch

        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        m = torch.nn.functional.interpolate(m, size=(self.image_size,) * 2, mode="bilinear",
                                            align_corners=False, antialias=True)
        session.add_mask_inputs(session.obj_id_to_idx(obj_id), frame,
                                (m >= 0.5).float().to(self.device))

    def session(self, frames: np.ndarray) -> Any:
        """SAM 2's video state for `frames` (T, H, W, 3) uint8: the preprocessed frames stay in
        host memory (T x 3 x S x S float32), the tracking state on the model's device."""
        import torch
        from transformers import Sam2VideoInferenceSession

        device = self.device or "cpu"
        return Sam2VideoInferenceSession(
            video=self._pixel_values(frames), video_height=frames.shape[1],
            video_width=frames.shape[2], inference_device=device, video_storage_device="cpu",
            inference_state_device=device, dtype=torch.float32)

    def _window(self, frames: np.ndarray, seeds: dict[int, dict[int, np.ndarray]]):
        import torch

        T, H, W = frames.shape[:3]
        masks = {o: np.zeros((T, H, W), bool) for o in seeds}
        score = {o: np.zeros(T, np.float32) for o in seeds}
        if not seeds:
            return masks, score
        session = self.session(frames)
        obj_ids = sorted(seeds)
        for f in sorted({f for s in seeds.values() for f in s}):
            objs = [o for o in obj_ids if f in seeds[o]]
            for o in objs:
                self._add_mask(session, o, f, seeds[o][f])
            session.obj_with_new_inputs = objs
            with torch.inference_mode():
                self.model(inference_session=session, frame_idx=f)
        start = min(f for s in seeds.values() for f in s)
        with torch.inference_mode():
            for reverse in (False, True):
                for out in self.model.propagate_in_video_iterator(
                        session, start_frame_idx=start, reverse=reverse):
                    self._collect(out, H, W, masks, score)
        return masks, score

    @staticmethod
    def _collect(out: Any, H: int, W: int, masks: dict, score: dict) -> None:
        import torch

        logits = torch.nn.functional.interpolate(out.pred_masks.float(), size=(H, W),
                                                 mode="bilinear", align_corners=False)
        present = torch.sigmoid(out.object_score_logits.float()).reshape(-1)
        for k, o in enumerate(out.object_ids):
            masks[o][out.frame_idx] = (logits[k, 0] > 0).cpu().numpy()
            score[o][out.frame_idx] = float(present[k])
