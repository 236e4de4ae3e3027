"""Ground-truth masks from simulator segmentation ids and the camera's id table."""

from __future__ import annotations

import numpy as np

from appf.annotators.protocols import (
    LABEL_BACKGROUND,
    LABEL_ROBOT,
    LABEL_TASK_OBJECT,
    MaskBatch,
    MaskResult,
)
from appf.schemas import SegmentCategory


class GroundTruthMasker:
    """Maps segmentation ids to robot / task-object / background labels via the id table."""

    name = "ground_truth"
    weights_id = ""
    revision = ""

    def load(self) -> None:
        return None

    def masks(self, batch: MaskBatch) -> MaskResult:
        if batch.segmentation is None:
            raise ValueError(
                f"{batch.where}: mask backend 'ground_truth' needs segmentation ids, and this camera "
                "has none; choose a learned masker (--masks) or mask_mode none"
            )
        seg = np.asarray(batch.segmentation)
        labels = np.full(seg.shape, LABEL_BACKGROUND, dtype=np.uint8)
        for cat, label in ((SegmentCategory.ROBOT, LABEL_ROBOT),
                           (SegmentCategory.TASK_OBJECT, LABEL_TASK_OBJECT)):
            ids = [s.id for s in batch.segments if s.category == cat]
            if ids:
                labels[np.isin(seg, ids)] = label
        return MaskResult(labels=labels)
