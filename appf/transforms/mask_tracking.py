"""Temporal consistency of per-frame masks (pure numpy + OpenCV): score each frame's initial mask
against its neighbours, reject flicker and drop-outs, repair rejected frames from confident
neighbours, choose anchor frames for a video tracker, keep a per-frame confidence.

One object per call: `masks` (T, H, W) bool in time order (one camera of one episode).

Scoring (on a copy subsampled to at most `score_side_px` per side, for speed):
- a robust centroid trajectory: per frame, the median of the centroids of non-empty masks in a
  window of +-`window` frames (a few wrong frames cannot move it far);
- consensus: the mean of the best third of the IoUs between frame t and each non-empty
  neighbour s in the window, the neighbour first propagated to t by the trajectory's motion
  (translation c_ref[t] - c_ref[s]);
- area continuity: area / median non-empty area of the window, scored against max_area_ratio
  (an empty mask among mostly non-empty neighbours is a drop-out; a window at least
  `absent_fraction` empty means the object is gone, and an empty mask is then right);
- centroid continuity: distance from the trajectory in equivalent radii (sqrt(area / pi)).
confidence = consensus IoU x area score x centroid score, in [0, 1]; a frame is accepted when
confidence >= accept_confidence. A rejected frame takes the nearest accepted frame's mask moved
by the trajectory, with that frame's confidence times `repair_decay` ** distance.
Anchors: per block of `anchor_every` frames, the accepted frame of highest confidence if it
reaches `anchor_confidence`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appf.transforms.mask_metrics import mask_iou

__all__ = ["TrackingConfig", "TrackedMasks", "track_masks", "shift_mask"]


@dataclass(frozen=True)
class TrackingConfig:
    window: int = 5  # neighbours on each side
    absent_fraction: float = 0.75  # window share of empty masks that means "object gone"
    trust_iou: float = 0.6  # first pass: agreement with near neighbours that defines the trajectory
    accept_confidence: float = 0.5
    max_area_ratio: float = 1.6
    max_centroid_jump_radii: float = 0.6
    anchor_every: int = 16  # frames per anchor block
    anchor_confidence: float = 0.7
    repair_decay: float = 0.9  # confidence factor per frame of distance for repaired frames
    score_side_px: int = 160


@dataclass
class TrackedMasks:
    """masks (T, H, W) bool after repair; confidence (T,) in [0, 1]; accepted (T,) the frames
    whose own mask passed; anchors: frame indices to seed a tracker with."""

    masks: np.ndarray
    confidence: np.ndarray
    accepted: np.ndarray
    anchors: list[int]


def shift_mask(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """`mask` translated by (dy, dx) pixels (nearest pixel; outside = False)."""
    if abs(dy) < 0.5 and abs(dx) < 0.5:
        return mask.copy()
    h, w = mask.shape
    M = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(mask.astype(np.uint8), M, (w, h), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return moved.astype(bool)


def _centroids(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) row/col centroids (nan for empty masks) and (T,) areas in pixels."""
    T = len(masks)
    areas = masks.reshape(T, -1).sum(axis=1).astype(np.float64)
    rows = np.arange(masks.shape[1], dtype=np.float64)
    cols = np.arange(masks.shape[2], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (masks.sum(axis=2) @ rows) / areas
        cx = (masks.sum(axis=1) @ cols) / areas
    return np.stack([cy, cx], axis=1), areas


def _window(t: int, T: int, w: int) -> range:
    return range(max(0, t - w), min(T, t + w + 1))


def _subsample(masks: np.ndarray, side_px: int) -> tuple[np.ndarray, int]:
    step = max(1, int(np.ceil(max(masks.shape[1:]) / side_px)))
    return masks[:, ::step, ::step], step


def _consensus(m: np.ndarray, t: int, w: int, ref_c: np.ndarray) -> float:
    """Mean of the best third of the IoUs of frame t with its non-empty neighbours within +-w,
    each neighbour first moved by ref_c[t] - ref_c[s] (a trajectory, or the masks' own
    centroids to compare shapes only). Even where most neighbours are bad, a good frame agrees
    with its few good ones; a bad frame agrees with nobody."""
    ious = []
    for s in _window(t, len(m), w):
        if s == t or not m[s].any():
            continue
        d = np.zeros(2)
        if np.isfinite(ref_c[[s, t]]).all():
            d = ref_c[t] - ref_c[s]
        ious.append(mask_iou(m[t], shift_mask(m[s], d[0], d[1])))
    if not ious:  # nothing to compare with (a one-frame episode), or only empty neighbours
        return 1.0 if len(m) == 1 else 0.0
    return float(np.mean(sorted(ious)[-max(1, len(ious) // 3):]))


def _trajectory(cent: np.ndarray, areas: np.ndarray, trusted: np.ndarray, w: int,
                absent_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: centroid and area interpolated in time between trusted frames; area 0 (and
    centroid nan) where at least `absent_fraction` of the window is empty (the object is really
    gone, not dropped out)."""
    T = len(cent)
    ref_c = np.full((T, 2), np.nan)
    ref_a = np.zeros(T)
    idx = np.flatnonzero(trusted & (areas > 0))
    if not len(idx):
        return ref_c, ref_a
    # running median over the trusted frames: an isolated shifted frame cannot bend the path
    smooth = np.stack([np.median(cent[idx[np.abs(idx - i) <= w]], axis=0) for i in idx])
    ts = np.arange(T)
    ref_c = np.stack([np.interp(ts, idx, smooth[:, k]) for k in (0, 1)], axis=1)
    ref_a = np.interp(ts, idx, areas[idx])
    for t in range(T):
        window = list(_window(t, T, w))
        if np.count_nonzero(areas[window] == 0) >= absent_fraction * len(window):
            ref_c[t], ref_a[t] = np.nan, 0.0
    return ref_c, ref_a


def _frame_scores(m: np.ndarray, cfg: TrackingConfig) -> tuple[np.ndarray, np.ndarray]:
    """(T,) confidence and (T, 2) reference centroids (subsampled pixels). Two passes: frames
    whose shape agrees with their neighbours' (masks aligned by their own centroids) are trusted
    and define the trajectory; every frame is then scored against the trajectory."""
    T = len(m)
    cent, areas = _centroids(m)
    trusted = np.array([areas[t] > 0 and _consensus(m, t, cfg.window, cent) >= cfg.trust_iou
                        for t in range(T)])
    ref_c, ref_a = _trajectory(cent, areas, trusted, cfg.window, cfg.absent_fraction)
    conf = np.zeros(T)
    for t in range(T):
        if ref_a[t] == 0 and areas[t] == 0:  # consistently absent
            conf[t] = 1.0
            continue
        if ref_a[t] == 0 or areas[t] == 0:  # spurious blob, or a drop-out
            continue
        area_score = max(0.0, 1.0 - abs(np.log(areas[t] / ref_a[t])) / np.log(cfg.max_area_ratio))
        jump = np.linalg.norm(cent[t] - ref_c[t]) / max(np.sqrt(ref_a[t] / np.pi), 1.0)
        centroid_score = max(0.0, 1.0 - jump / cfg.max_centroid_jump_radii)
        conf[t] = (_consensus(m, t, cfg.window, ref_c)
                   * min(1.0, 2 * area_score) * min(1.0, 2 * centroid_score))
    return conf, ref_c


def _repair(masks: np.ndarray, conf: np.ndarray, accepted: np.ndarray, ref_c: np.ndarray,
            step: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
    out, out_conf = masks.copy(), conf.copy()
    good = np.flatnonzero(accepted)
    for t in np.flatnonzero(~accepted):
        if not len(good):
            out[t] = False
            out_conf[t] = 0.0
            continue
        src = int(good[np.argmin(np.abs(good - t))])
        d = (ref_c[t] - ref_c[src]) * step if np.isfinite(ref_c[[t, src]]).all() else np.zeros(2)
        out[t] = shift_mask(masks[src], d[0], d[1])
        out_conf[t] = conf[src] * decay ** abs(t - src)
    return out, out_conf


def _anchors(conf: np.ndarray, accepted: np.ndarray, every: int, min_conf: float) -> list[int]:
    anchors = []
    for start in range(0, len(conf), max(1, every)):
        block = np.arange(start, min(len(conf), start + every))
        ok = block[accepted[block] & (conf[block] >= min_conf)]
        if len(ok):
            anchors.append(int(ok[np.argmax(conf[ok])]))
    return anchors


def track_masks(masks: np.ndarray, cfg: TrackingConfig = TrackingConfig()) -> TrackedMasks:
    """Score, repair and anchor one object's per-frame masks (T, H, W) bool."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"track_masks needs (T, H, W) masks, got shape {masks.shape}")
    small, step = _subsample(masks, cfg.score_side_px)
    conf, ref_c = _frame_scores(small, cfg)
    accepted = conf >= cfg.accept_confidence
    repaired, conf_out = _repair(masks, conf, accepted, ref_c, step, cfg.repair_decay)
    return TrackedMasks(repaired, conf_out.astype(np.float32), accepted,
                        _anchors(conf, accepted, cfg.anchor_every, cfg.anchor_confidence))
