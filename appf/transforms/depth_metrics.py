"""Depth and disparity quality metrics against ground truth (pure numpy).

Validity: a ground-truth pixel counts when it is finite and > 0 (+inf and 0 mark "unknown" in
Middlebury PFMs and KITTI PNGs); a prediction counts when it is finite and > 0. Every accuracy
figure is computed on the pixels valid in both ("covered"); `coverage` is the fraction of valid
ground-truth pixels the prediction covers, so a method cannot hide errors by leaving pixels out
without that showing. `bad2_all` additionally counts uncovered pixels as bad (Middlebury's
convention for sparse results).
"""

from __future__ import annotations

import numpy as np

__all__ = ["valid_mask", "depth_metrics", "disparity_metrics"]


def valid_mask(values: np.ndarray) -> np.ndarray:
    """Finite and > 0."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(v) & (v > 0)


def _coverage(pred_ok: np.ndarray, gt_ok: np.ndarray) -> tuple[np.ndarray, int, float]:
    n_gt = int(gt_ok.sum())
    both = pred_ok & gt_ok
    return both, n_gt, (float(both.sum()) / n_gt if n_gt else float("nan"))


def depth_metrics(pred_m: np.ndarray, gt_m: np.ndarray) -> dict[str, float]:
    """AbsRel = mean |p - g| / g; RMSE (metres) = sqrt(mean (p - g)^2); delta1 = fraction with
    max(p / g, g / p) < 1.25; over covered pixels; plus coverage and pixel counts."""
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    both, n_gt, coverage = _coverage(valid_mask(pred), valid_mask(gt))
    p, g = pred[both], gt[both]
    if not len(p):
        nan = float("nan")
        return {"abs_rel": nan, "rmse_m": nan, "delta1": nan, "coverage": coverage,
                "n_gt": n_gt, "n_covered": 0}
    return {
        "abs_rel": float(np.mean(np.abs(p - g) / g)),
        "rmse_m": float(np.sqrt(np.mean((p - g) ** 2))),
        "delta1": float(np.mean(np.maximum(p / g, g / p) < 1.25)),
        "coverage": coverage,
        "n_gt": n_gt,
        "n_covered": int(both.sum()),
    }


def disparity_metrics(pred_px: np.ndarray, gt_px: np.ndarray) -> dict[str, float]:
    """bad-1 / bad-2 = fraction of covered pixels with |p - g| > 1 / 2 px; EPE = mean |p - g|
    (px); bad2_all = pixels with error > 2 px or uncovered, over all valid ground truth."""
    pred = np.asarray(pred_px, dtype=np.float64)
    gt = np.asarray(gt_px, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    both, n_gt, coverage = _coverage(valid_mask(pred), valid_mask(gt))
    err = np.abs(pred[both] - gt[both])
    if not len(err):
        nan = float("nan")
        return {"bad1": nan, "bad2": nan, "epe_px": nan, "bad2_all": 1.0 if n_gt else nan,
                "coverage": coverage, "n_gt": n_gt, "n_covered": 0}
    return {
        "bad1": float(np.mean(err > 1.0)),
        "bad2": float(np.mean(err > 2.0)),
        "epe_px": float(np.mean(err)),
        "bad2_all": float((np.sum(err > 2.0) + (n_gt - len(err))) / n_gt),
        "coverage": coverage,
        "n_gt": n_gt,
        "n_covered": int(len(err)),
    }
