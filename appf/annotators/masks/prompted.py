"""The real-data masker: initial per-frame masks (RoboEngine's text prompts and/or the kinematic
robot silhouette) -> temporal-consistency tracking (appf.transforms.mask_tracking) -> optional
SAM 2 refinement seeded with the tracking's anchor frames -> labels.

Object ids: 1 = the robot; 2, 3, ... = the task objects named in the instruction (RoboEngine
only). Robot masks from both prompt sources are united before tracking; the kinematic
silhouette alone is not tracked (it is rendered, not detected: exact and flicker-free). Labels: robot pixels
LABEL_ROBOT, then task-object pixels LABEL_TASK_OBJECT (a grasped object stays an object).
Confidence per frame: the least confident object's (SAM 2 presence where refined, else the
tracking confidence).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appf.annotators.masks.roboengine import ROBOT_PROMPT, task_object_nouns
from appf.annotators.protocols import LABEL_ROBOT, LABEL_TASK_OBJECT, MaskBatch, MaskResult
from appf.transforms.mask_tracking import TrackedMasks, TrackingConfig, track_masks

ROBOT_ID = 1


class PromptedVideoMasker:
    """See the module docstring. `segmenter` (TextPromptedSegmenter with load()), `kinematic`
    (RobotSilhouette with load()) and `refiner` (Sam2VideoRefiner) are each optional; at least
    one prompt source is needed."""

    def __init__(self, name: str, segmenter: Any = None, kinematic: Any = None,
                 refiner: Any = None, tracking: TrackingConfig = TrackingConfig(),
                 max_objects: int = 3):
        if segmenter is None and kinematic is None:
            raise ValueError(f"mask backend {name!r}: needs RoboEngine or the kinematic prompt")
        self.name, self.segmenter, self.kinematic, self.refiner = name, segmenter, kinematic, refiner
        self.tracking, self.max_objects = tracking, max_objects
        parts = [p for p in (segmenter, kinematic, refiner) if p is not None]
        self.weights_id = "+".join(getattr(p, "weights_id", "") or p.__class__.__name__
                                   for p in parts)
        self.revision = "+".join(getattr(p, "revision", "") or "-" for p in parts)

    def unavailable_reason(self) -> str | None:
        """Why a part cannot load here, without loading anything (None: all configured)."""
        reasons = [r for p in (self.segmenter, self.kinematic, self.refiner)
                   if p is not None and hasattr(p, "unavailable_reason")
                   and (r := p.unavailable_reason())]
        return "; ".join(reasons) or None

    def load(self) -> None:
        for part in (self.segmenter, self.kinematic, self.refiner):
            if part is not None and hasattr(part, "load"):
                part.load()

    def _initial(self, batch: MaskBatch) -> dict[int, np.ndarray]:
        rgb = np.asarray(batch.rgb)
        T, H, W = rgb.shape[:3]
        initial: dict[int, np.ndarray] = {ROBOT_ID: np.zeros((T, H, W), bool)}
        if self.kinematic is not None:
            initial[ROBOT_ID] |= self.kinematic.silhouettes(batch)
        if self.segmenter is not None:
            prompts = [ROBOT_PROMPT] + task_object_nouns(batch.instruction, self.max_objects)
            for k, prompt in enumerate(prompts):
                masks = np.stack([self.segmenter.segment(rgb[t], prompt) for t in range(T)])
                obj = ROBOT_ID if k == 0 else ROBOT_ID + k
                initial[obj] = initial.get(obj, np.zeros_like(masks)) | masks
        return initial

    def _track(self, masks: np.ndarray) -> TrackedMasks:
        """Tracking cleans a detector's per-frame masks; the kinematic silhouette alone is
        rendered, not detected, so it is kept whole, anchored every `anchor_every` frames."""
        if self.segmenter is not None:
            return track_masks(masks, self.tracking)
        T = len(masks)
        return TrackedMasks(masks, np.ones(T, np.float32), np.ones(T, bool),
                            list(range(0, T, self.tracking.anchor_every)))

    def _refine(self, rgb: np.ndarray, tracked: dict[int, TrackedMasks]):
        seeds = {o: {a: tr.masks[a] for a in tr.anchors} for o, tr in tracked.items()}
        refined = self.refiner.refine(rgb, seeds)
        masks = {o: refined.masks.get(o, tr.masks) for o, tr in tracked.items()}
        conf = {o: refined.presence.get(o, tr.confidence) for o, tr in tracked.items()}
        return masks, conf

    def masks(self, batch: MaskBatch) -> MaskResult:
        rgb = np.asarray(batch.rgb)
        try:
            initial = self._initial(batch)
        except Exception as e:  # keep the type, say where
            e.args = (f"{batch.where}: mask backend {self.name!r}: {e}", *e.args[1:])
            raise
        tracked = {o: self._track(m) for o, m in initial.items()}
        if self.refiner is not None:
            masks, conf = self._refine(rgb, tracked)
        else:
            masks = {o: tr.masks for o, tr in tracked.items()}
            conf = {o: tr.confidence for o, tr in tracked.items()}
        labels = np.zeros(rgb.shape[:3], np.uint8)
        labels[masks[ROBOT_ID]] = LABEL_ROBOT
        for o in sorted(masks):
            if o != ROBOT_ID:
                labels[masks[o]] = LABEL_TASK_OBJECT
        confidence = np.min(np.stack([np.asarray(c, np.float32) for c in conf.values()]), axis=0)
        return MaskResult(labels=labels, confidence=confidence)
