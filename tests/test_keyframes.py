"""Tests for appf.transforms.keyframes (hand-checked gripper signals)."""

import numpy as np
import pytest

from appf.transforms.keyframes import (
    GripperEvent,
    Keyframes,
    gripper_events,
    keyframe_mask,
    keyframes,
)

# index:        0    1    2     3     4     5     6     7    8    9    10    11    12    13    14   15
ARM0 = [0.0, 0.0, 0.3, 0.55, 0.62, 0.58, 0.61, 0.9, 1.0, 1.0, 0.45, 0.38, 0.42, 0.35, 0.1, 0.0]
# ramp up through the close threshold with chatter around 0.6 (0.62, 0.58, 0.61): one close at 4;
# ramp down with chatter around 0.4 (0.38, 0.42, 0.35): one open at 11.
ARM1 = [0.1, 0.2, 0.5, 0.59, 0.7, 1.0, 1.0, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
# closes at 4 (0.7), opens at 8 (0.2); 0.5 at step 7 is inside the dead band.


def test_hysteresis_suppresses_chatter():
    ev = gripper_events(np.array(ARM0))
    assert ev == [GripperEvent(4, 0, "close"), GripperEvent(11, 0, "open")]


def test_single_threshold_would_chatter_but_hysteresis_does_not():
    g = np.array(ARM0)
    naive = np.flatnonzero(np.diff((g >= 0.6).astype(int)) != 0) + 1
    assert len(naive) > 2  # the signal really does chatter around 0.6
    assert len(gripper_events(g)) == 2


def test_thresholds_inclusive_and_arm_copied():
    g = [0.0, 0.6, 0.5, 0.4, 0.6]
    assert gripper_events(g, arm=3) == [
        GripperEvent(1, 3, "close"),
        GripperEvent(3, 3, "open"),
        GripperEvent(4, 3, "close"),
    ]


def test_initial_state_from_first_sample():
    # starts closed (0.5 >= 0.5): no close event at the start, an open when it drops
    assert gripper_events([0.5, 0.7, 0.3]) == [GripperEvent(2, 0, "open")]
    assert gripper_events([0.9, 0.9, 0.45, 0.39]) == [GripperEvent(3, 0, "open")]
    # starts open at 0.49: nothing until >= 0.6
    assert gripper_events([0.49, 0.59, 0.6]) == [GripperEvent(2, 0, "close")]
    assert gripper_events([]) == []
    assert gripper_events([1.0]) == []


def test_custom_thresholds():
    g = [0.0, 0.75, 0.85, 0.2, 0.15]
    assert gripper_events(g, close_threshold=0.8, open_threshold=0.2) == [
        GripperEvent(2, 0, "close"),
        GripperEvent(3, 0, "open"),
    ]


@pytest.mark.parametrize("close,open_", [(0.4, 0.6), (0.5, 0.5), (1.2, 0.4), (0.6, -0.1)])
def test_bad_thresholds(close, open_):
    with pytest.raises(ValueError, match="threshold"):
        gripper_events([0.0, 1.0], close_threshold=close, open_threshold=open_)


def test_nan_raises_naming_step():
    g = np.array(ARM0)
    g[7] = np.nan
    with pytest.raises(ValueError, match="step 7"):
        gripper_events(g)
    two = np.stack([np.array(ARM0), g], axis=1)
    with pytest.raises(ValueError, match=r"arm 1 .*step 7"):
        keyframes(two)


def test_two_arms_and_last_frame():
    g = np.stack([ARM0, ARM1], axis=1)
    kf = keyframes(g)
    assert isinstance(kf, Keyframes)
    assert kf.steps.dtype == np.int64
    assert kf.steps.tolist() == [4, 8, 11, 15]
    assert kf.num_steps == 16
    assert kf.events == [
        GripperEvent(4, 0, "close"),
        GripperEvent(4, 1, "close"),
        GripperEvent(8, 1, "open"),
        GripperEvent(11, 0, "open"),
    ]
    assert kf.changed_arms() == [(0, 1), (1,), (0,), ()]
    assert kf.arms_changed_at(4) == (0, 1)
    assert kf.arms_changed_at(15) == ()
    assert kf.events_at(8) == [GripperEvent(8, 1, "open")]


def test_include_last_false_and_event_on_last_frame():
    g = np.stack([ARM0, ARM1], axis=1)
    assert keyframes(g, include_last=False).steps.tolist() == [4, 8, 11]
    # event exactly on the last frame: not duplicated
    kf = keyframes(np.array([0.0, 0.0, 1.0]))
    assert kf.steps.tolist() == [2]
    assert kf.changed_arms() == [(0,)]
    # no events at all: only the last frame
    assert keyframes(np.zeros((5, 2))).steps.tolist() == [4]
    assert keyframes(np.zeros((0, 1))).steps.tolist() == []


def test_one_dimensional_input_is_one_arm():
    kf = keyframes(np.array(ARM0))
    assert kf.steps.tolist() == [4, 11, 15]
    with pytest.raises(ValueError, match="shape"):
        keyframes(np.zeros((2, 2, 2)))


def test_keyframe_mask():
    g = np.stack([ARM0, ARM1], axis=1)
    kf = keyframes(g)
    m = keyframe_mask(16, kf)
    assert m.dtype == bool and m.shape == (16,)
    assert np.flatnonzero(m).tolist() == [4, 8, 11, 15]
    assert np.flatnonzero(keyframe_mask(5, [0, 3])).tolist() == [0, 3]
    with pytest.raises(ValueError):
        keyframe_mask(10, kf)  # step 15 out of range
    with pytest.raises(ValueError):
        keyframe_mask(5, [-1])
