"""Mask quality against ground-truth segmentation ids (`appf eval masks`): a backend's labels,
and the tracking stage on ground truth with controlled corruption injected (what it recovers).

Objects: "robot" (LABEL_ROBOT, SegmentCategory.ROBOT ids) and "task_object" (LABEL_TASK_OBJECT,
TASK_OBJECT ids). Metrics per (T, H, W) sequence: appf.transforms.mask_metrics.sequence_metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appf.annotators.protocols import LABEL_ROBOT, LABEL_TASK_OBJECT, Masker, MaskBatch
from appf.schemas import SegmentCategory
from appf.transforms.mask_corruption import Corruption, corrupt_masks
from appf.transforms.mask_metrics import sequence_metrics
from appf.transforms.mask_tracking import TrackingConfig, track_masks

OBJECTS = {"robot": (LABEL_ROBOT, SegmentCategory.ROBOT),
           "task_object": (LABEL_TASK_OBJECT, SegmentCategory.TASK_OBJECT)}


def ground_truth_masks(batch: MaskBatch) -> dict[str, np.ndarray]:
    """{object: (T, H, W) bool} from the batch's segmentation ids and id table."""
    if batch.segmentation is None:
        raise ValueError(f"{batch.where}: no ground-truth segmentation to evaluate masks against "
                         "(use a simulator or the synthetic source)")
    seg = np.asarray(batch.segmentation)
    return {name: np.isin(seg, [s.id for s in batch.segments if s.category == cat])
            for name, (_, cat) in OBJECTS.items()}


def evaluate_masker(masker: Masker, batch: MaskBatch, tolerance_px: int = 2) -> dict[str, dict]:
    """{object: metrics} of the masker's labels against ground truth."""
    gt = ground_truth_masks(batch)
    labels = masker.masks(batch).labels
    return {name: sequence_metrics(labels == OBJECTS[name][0], gt[name], tolerance_px)
            for name in gt}


def evaluate_tracking(gt: np.ndarray, corruption: Corruption, seed: int = 0,
                      cfg: TrackingConfig = TrackingConfig(),
                      tolerance_px: int = 2) -> dict[str, dict[str, Any]]:
    """Metrics of ground truth with `corruption` injected ("injected") and after the tracking
    stage ("tracked"), with how many frames were corrupted, rejected, and wrongly kept/rejected."""
    noisy, done = corrupt_masks(gt, corruption, seed)
    tracked = track_masks(noisy, cfg)
    bad = np.zeros(len(gt), bool)
    bad[list(done)] = True
    injected = {**sequence_metrics(noisy, gt, tolerance_px), "corrupted_frames": int(bad.sum())}
    after = {**sequence_metrics(tracked.masks, gt, tolerance_px),
             "rejected": int((~tracked.accepted).sum()),
             "corrupted_kept": int((bad & tracked.accepted).sum()),
             "good_rejected": int((~bad & ~tracked.accepted).sum()),
             "anchors": len(tracked.anchors)}
    return {"injected": injected, "tracked": after}
