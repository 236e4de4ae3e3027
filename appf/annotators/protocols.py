"""The annotator protocols (DESIGN §5): batch in, arrays out, documented units.

A depth batch is up to B consecutive frames of one camera (one K for the whole batch); a mask
batch is a camera's frames in time order (trackers rely on the order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from appf.schemas import Segment

# Per-pixel labels produced by every Masker.
LABEL_BACKGROUND = 0
LABEL_ROBOT = 1
LABEL_TASK_OBJECT = 2


@dataclass
class DepthBatch:
    """Frames of one camera. rgb (B, H, W, 3) uint8; K (3, 3) pixels or None when unknown;
    rgb_right rectified (B, H, W, 3) with `baseline_m`; sensor_depth (B, H, W) float32 metres,
    0 = invalid (a sensor's depth, or a simulator's ground truth)."""

    rgb: np.ndarray
    K: np.ndarray | None
    rgb_right: np.ndarray | None = None
    baseline_m: float | None = None
    sensor_depth: np.ndarray | None = None
    where: str = ""  # "dataset/episode camera frames a..b", for error messages


@dataclass
class DepthResult:
    """depth_m (B, H, W) float32 metres at the input resolution, 0 = invalid; K the pixel
    intrinsics the depth is consistent with (estimated when the batch had none)."""

    depth_m: np.ndarray
    K: np.ndarray


@runtime_checkable
class DepthAnnotator(Protocol):
    name: str
    weights_id: str
    revision: str

    def load(self) -> None:
        """Load weights (once per worker); must be idempotent."""

    def annotate(self, batch: DepthBatch) -> DepthResult:
        """Depth for every frame of the batch."""


@dataclass
class MaskBatch:
    """A camera's frames in time order. segmentation (B, H, W) int ids with their table, when
    the source has them (simulators). For learned and kinematic maskers: the episode's
    instruction (task-object nouns), K (3, 3) pixels, T_base_cam (B, 4, 4) camera to base,
    joint_positions (B, J) radians and gripper (B,) 0 open .. 1 closed (None where the source
    has none)."""

    rgb: np.ndarray
    segmentation: np.ndarray | None = None
    segments: tuple[Segment, ...] = ()
    where: str = ""
    instruction: str = ""
    K: np.ndarray | None = None
    T_base_cam: np.ndarray | None = None
    joint_positions: np.ndarray | None = None
    gripper: np.ndarray | None = None


@dataclass
class MaskResult:
    """labels (B, H, W) uint8 with LABEL_BACKGROUND / LABEL_ROBOT / LABEL_TASK_OBJECT;
    confidence (B,) in [0, 1] per frame (None: exact, e.g. ground truth)."""

    labels: np.ndarray
    confidence: np.ndarray | None = None


@runtime_checkable
class Masker(Protocol):
    name: str
    weights_id: str
    revision: str

    def load(self) -> None:
        """Load weights (once per worker); must be idempotent."""

    def masks(self, batch: MaskBatch) -> MaskResult:
        """Labels for every frame of the batch."""
