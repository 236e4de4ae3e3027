"""Mask quality against ground truth (pure numpy + OpenCV): IoU, boundary F-score, flicker.

Conventions: a mask is a boolean (H, W) array, a sequence (T, H, W). IoU of two empty masks is
1 (both agree that nothing is there). The boundary F-score is the DAVIS measure: boundary pixels
of prediction and ground truth match when within `tolerance_px` of each other (a square
neighbourhood, OpenCV dilation); F = 2 P R / (P + R). Temporal flicker is 1 - IoU between
consecutive frames' masks: a still object has 0, and comparing the prediction's flicker with the
ground truth's separates real motion from instability.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["mask_iou", "boundary_f_score", "consecutive_iou", "sequence_metrics"]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b|; 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (the image border counts as outside)."""
    m = mask.astype(np.uint8)
    eroded = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (m - eroded).astype(bool)


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, tolerance_px: int = 2) -> float:
    """DAVIS boundary F-measure with a (2 * tolerance_px + 1)^2 matching window; 1.0 when both
    masks are empty, 0.0 when exactly one is."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"masks differ in shape: {pred.shape} vs {gt.shape}")
    bp, bg = _boundary(pred), _boundary(gt)
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g == 0:
        return 1.0
    if n_p == 0 or n_g == 0:
        return 0.0
    kernel = np.ones((2 * tolerance_px + 1,) * 2, np.uint8)
    near_g = cv2.dilate(bg.astype(np.uint8), kernel).astype(bool)
    near_p = cv2.dilate(bp.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(bp & near_g) / n_p
    recall = np.count_nonzero(bg & near_p) / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def consecutive_iou(masks: np.ndarray) -> np.ndarray:
    """(T - 1,) IoU between frames t and t + 1."""
    m = np.asarray(masks, dtype=bool)
    return np.array([mask_iou(m[t], m[t + 1]) for t in range(len(m) - 1)], dtype=np.float64)


def sequence_metrics(pred: np.ndarray, gt: np.ndarray, tolerance_px: int = 2) -> dict[str, float]:
    """Mean and minimum IoU, mean boundary F, and flicker (mean 1 - consecutive IoU) of the
    prediction and of the ground truth, for (T, H, W) boolean sequences."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise ValueError(f"need two (T, H, W) sequences of one shape, got {pred.shape} and {gt.shape}")
    ious = np.array([mask_iou(p, g) for p, g in zip(pred, gt)])
    bf = np.array([boundary_f_score(p, g, tolerance_px) for p, g in zip(pred, gt)])
    flicker_pred = float(np.mean(1 - consecutive_iou(pred))) if len(pred) > 1 else 0.0
    flicker_gt = float(np.mean(1 - consecutive_iou(gt))) if len(gt) > 1 else 0.0
    return {"iou_mean": float(ious.mean()), "iou_min": float(ious.min()),
            "boundary_f": float(bf.mean()), "flicker": flicker_pred, "flicker_gt": flicker_gt,
            "flicker_excess": flicker_pred - flicker_gt}
