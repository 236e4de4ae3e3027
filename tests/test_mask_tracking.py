"""Temporal consistency: the tracking stage recovers ground truth from corrupted per-frame masks;
metrics give exact answers on known shapes."""

import numpy as np
import pytest

from appf.pipelines.sources.synthetic import SyntheticSource
from appf.transforms.mask_corruption import Corruption, corrupt_masks
from appf.transforms.mask_metrics import (
    boundary_f_score, consecutive_iou, mask_iou, sequence_metrics,
)
from appf.transforms.mask_tracking import TrackingConfig, shift_mask, track_masks
from appf.transforms.synthetic_scene import CUBE_ID, ROBOT_ID


def _square(h, w, y, x, side):
    m = np.zeros((h, w), bool)
    m[y:y + side, x:x + side] = True
    return m


def moving_square(T=60, h=96, w=128, side=24, speed_px=1.5):
    """A square moving right then down: the ground truth of a smooth motion."""
    return np.stack([_square(h, w, 20 + int(max(0, t - 30) * speed_px),
                             10 + int(min(t, 30) * speed_px), side) for t in range(T)])


@pytest.fixture(scope="module")
def synthetic_robot_masks():
    """Ground-truth robot and cube masks of a rendered synthetic pick-and-place episode (120
    steps: at 60 the gripper moves so fast that consecutive ground-truth masks overlap by 0.5)."""
    src = SyntheticSource(episodes=1, steps=120, height=96, width=128, stereo=False, seed=3)
    seg = np.asarray(src.read(src.list_refs()[0]).cameras["front"].segmentation)
    return seg == ROBOT_ID, seg == CUBE_ID


# ---- metrics: exact answers --------------------------------------------------------------------

def test_iou_exact():
    a, b = _square(10, 10, 0, 0, 4), _square(10, 10, 2, 0, 4)  # overlap 2x4 = 8, union 24
    assert mask_iou(a, b) == pytest.approx(8 / 24)
    assert mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert mask_iou(a, np.zeros_like(a)) == 0.0


def test_boundary_f_exact():
    a = _square(40, 40, 10, 10, 12)
    assert boundary_f_score(a, a) == 1.0
    # shifted by 1 px: every boundary pixel is within 2 px of the other boundary
    assert boundary_f_score(a, shift_mask(a, 0, 1), tolerance_px=2) == 1.0
    # shifted by 6 px with tolerance 1: the boundaries only meet on the horizontal edges
    f = boundary_f_score(a, shift_mask(a, 0, 6), tolerance_px=1)
    assert 0.0 < f < 0.7
    assert boundary_f_score(a, np.zeros_like(a)) == 0.0


def test_flicker_of_still_and_moving():
    still = np.repeat(_square(20, 20, 5, 5, 6)[None], 5, axis=0)
    assert np.all(consecutive_iou(still) == 1.0)
    m = sequence_metrics(still, still)
    assert m["flicker"] == 0.0 and m["iou_mean"] == 1.0 and m["boundary_f"] == 1.0


# ---- tracking -----------------------------------------------------------------------------------

def _recovered(gt, corruption, seed=0, cfg=TrackingConfig()):
    noisy, done = corrupt_masks(gt, corruption, seed)
    tracked = track_masks(noisy, cfg)
    return noisy, done, tracked


@pytest.mark.parametrize("corruption", [
    Corruption(dropout=0.25, flicker=0.25),
    Corruption(dropout=0.15, flicker=0.15, shift=0.15, shift_px=12),
    Corruption(flicker=0.45),
])
def test_tracking_recovers_moving_square(corruption):
    gt = moving_square()
    noisy, done, tracked = _recovered(gt, corruption)
    before = sequence_metrics(noisy, gt)
    after = sequence_metrics(tracked.masks, gt)
    assert before["iou_mean"] < 0.8
    assert after["iou_mean"] >= 0.9, (before, after)
    assert after["flicker_excess"] < before["flicker_excess"]
    # corrupted frames are the ones rejected, and they carry lower confidence
    bad = np.array(sorted(done))
    assert not tracked.accepted[bad].any()
    good = np.setdiff1d(np.arange(len(gt)), bad)
    assert tracked.accepted[good].mean() >= 0.9
    assert tracked.confidence[bad].mean() < tracked.confidence[good].mean()


@pytest.mark.parametrize("which", ["robot", "cube"])
def test_tracking_recovers_synthetic_episode(synthetic_robot_masks, which):
    gt = synthetic_robot_masks[0 if which == "robot" else 1]
    noisy, done, tracked = _recovered(gt, Corruption(dropout=0.15, flicker=0.15, shift=0.1,
                                                     shift_px=10), seed=1)
    assert len(done) == 48  # 40% of the frames corrupted (>= 50% good)
    before = sequence_metrics(noisy, gt)["iou_mean"]
    after = sequence_metrics(tracked.masks, gt)["iou_mean"]
    assert after >= 0.9 and after > before + 0.2, (before, after)


def test_anchors_are_confident_accepted_frames():
    gt = moving_square(T=64)
    noisy, done, tracked = _recovered(gt, Corruption(dropout=0.3), seed=2)
    assert len(tracked.anchors) == 4  # one per block of 16 frames
    for a in tracked.anchors:
        assert a not in done and tracked.accepted[a]
        assert tracked.confidence[a] >= TrackingConfig().anchor_confidence
    assert tracked.masks.shape == gt.shape and tracked.confidence.shape == (64,)


def test_object_leaving_view_is_not_a_dropout():
    gt = moving_square(T=40)
    gt[25:] = False  # the object leaves for good: every later frame is consistently empty
    tracked = track_masks(gt)
    assert tracked.accepted[30:].all()
    assert not tracked.masks[30:].any()


def test_single_frame_is_kept():
    m = _square(20, 20, 4, 4, 8)[None]
    tracked = track_masks(m)
    assert tracked.accepted.all() and np.array_equal(tracked.masks, m) and tracked.anchors == [0]


def test_nothing_accepted_gives_empty_masks_with_zero_confidence():
    rng = np.random.default_rng(0)
    noise = rng.random((12, 32, 32)) < 0.5  # no frame agrees with any other
    tracked = track_masks(noise)
    assert not tracked.accepted.any()
    assert not tracked.masks.any() and np.all(tracked.confidence == 0)
    assert tracked.anchors == []


def test_corruption_spec_parsing():
    c = Corruption.parse("dropout=0.2, flicker=0.1,shift_px=5")
    assert (c.dropout, c.flicker, c.shift, c.shift_px) == (0.2, 0.1, 0.0, 5.0)
    with pytest.raises(ValueError, match="KIND=NUMBER"):
        Corruption.parse("wobble=0.3")
    with pytest.raises(ValueError, match="sum to <= 1"):
        Corruption.parse("dropout=0.7,flicker=0.5")
