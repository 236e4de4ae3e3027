"""Tests for appf.transforms.spline (guidance B-spline through keyframe waypoints)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation as R

from appf.transforms.keyframes import keyframes
from appf.transforms.spline import GuidanceSpline, sample_guidance, waypoints_from_keyframes


def rotz(deg):
    return R.from_euler("z", deg, degrees=True)


def same_rotation(q1, q2, atol=1e-9):
    q1 = np.asarray(q1).reshape(-1, 4)
    q2 = np.asarray(q2).reshape(-1, 4)
    return np.allclose(np.abs(np.sum(q1 * q2, axis=1)), 1.0, atol=atol)


def random_waypoints(k, seed=0):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.2, 1.0, k)) - 0.3
    p = rng.normal(size=(k, 3)) * 0.2
    q = R.random(k, random_state=seed).as_quat()
    return t, p, q


def test_one_waypoint_is_constant():
    s = GuidanceSpline([2.0], [[0.1, 0.2, 0.3]], [[0, 0, 0, 2.0]])
    out = s(np.array([-1.0, 2.0, 5.0]))
    assert out.shape == (3, 7)
    assert np.allclose(out, [[0.1, 0.2, 0.3, 0, 0, 0, 1]] * 3)
    assert s(2.0).shape == (7,)


def test_two_waypoints_clamped_cubic_hand_checked():
    # clamped cubic between two points: p0 + (p1 - p0) (3 s^2 - 2 s^3), s = (t - t0) / (t1 - t0)
    s = GuidanceSpline([1.0, 3.0], [[0, 0, 0], [1.0, 2.0, -4.0]], [rotz(0).as_quat(), rotz(90).as_quat()])
    out = s(np.array([1.0, 1.5, 2.0, 3.0]))
    assert np.allclose(out[:, :3], [[0, 0, 0], [0.15625, 0.3125, -0.625], [0.5, 1.0, -2.0], [1, 2, -4]], atol=1e-12)
    # rotation: symmetric, half the angle in the middle
    assert same_rotation(out[2, 3:], rotz(45).as_quat())
    assert same_rotation(out[0, 3:], rotz(0).as_quat())
    assert same_rotation(out[3, 3:], rotz(90).as_quat())


def test_rotation_takes_the_shortest_path():
    s = GuidanceSpline([0.0, 1.0], np.zeros((2, 3)), [rotz(170).as_quat(), rotz(-170).as_quat()])
    mid = R.from_quat(s(0.5)[3:])
    # the short way passes through 180 deg, not through 0 deg
    assert np.isclose(mid.magnitude(), np.pi, atol=1e-9)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_passes_through_waypoints_exactly(k):
    t, p, q = random_waypoints(k, seed=k)
    s = GuidanceSpline(t, p, q)
    out = s(t)
    assert np.allclose(out[:, :3], p, atol=1e-12)
    assert same_rotation(out[:, 3:], q)
    # between the waypoints: finite and unit quaternions
    tt = np.linspace(t[0], t[-1], 101)
    o = s(tt)
    assert np.all(np.isfinite(o))
    assert np.allclose(np.linalg.norm(o[:, 3:], axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_clipped_outside_range(k):
    t, p, q = random_waypoints(k, seed=10 + k)
    s = GuidanceSpline(t, p, q)
    assert np.allclose(s(t[0] - 10.0), s(t[0]))
    assert np.allclose(s(t[-1] + 3.0), s(t[-1]))
    assert np.allclose(s(t[-1] + 3.0)[:3], p[-1])
    assert s.t0 == t[0] and s.t1 == t[-1]


def test_output_shapes():
    t, p, q = random_waypoints(4)
    s = GuidanceSpline(t, p, q)
    assert s(0.5).shape == (7,)
    assert s(np.zeros((2, 3))).shape == (2, 3, 7)
    assert s(np.zeros(0)).shape == (0, 7)


def test_quaternion_normalised_and_sign_consistent():
    # unnormalised input and a sign flip between consecutive waypoints
    q = np.array([rotz(0).as_quat() * 3.0, -rotz(20).as_quat(), rotz(40).as_quat() * 0.5])
    s = GuidanceSpline([0.0, 1.0, 2.0], np.zeros((3, 3)), q)
    tt = np.linspace(0.0, 2.0, 201)
    o = s(tt)
    assert np.allclose(np.linalg.norm(o[:, 3:], axis=1), 1.0, atol=1e-12)
    # continuous sign: no jump between neighbouring samples
    assert np.all(np.sum(o[1:, 3:] * o[:-1, 3:], axis=1) > 0.99)
    # at the waypoints: the sign-consistent waypoint quaternions
    assert np.allclose(s(0.0)[3:], rotz(0).as_quat(), atol=1e-12)
    assert np.allclose(s(1.0)[3:], rotz(20).as_quat(), atol=1e-12)
    assert np.allclose(s(2.0)[3:], rotz(40).as_quat(), atol=1e-12)


def test_duplicate_times_keep_first():
    t = [0.0, 1.0, 1.0, 2.0]
    p = [[0, 0, 0], [1, 0, 0], [5, 5, 5], [2, 0, 0]]
    q = [rotz(0).as_quat(), rotz(10).as_quat(), rotz(90).as_quat(), rotz(20).as_quat()]
    s = GuidanceSpline(t, p, q)
    assert len(s) == 3 and s.num_dropped == 1
    assert np.allclose(s(1.0)[:3], [1, 0, 0])
    assert same_rotation(s(1.0)[3:], rotz(10).as_quat())
    # all duplicates -> one waypoint, constant
    s1 = GuidanceSpline([0.5, 0.5], [[1, 2, 3], [4, 5, 6]], [[0, 0, 0, 1], [1, 0, 0, 0]])
    assert np.allclose(s1(7.0), [1, 2, 3, 0, 0, 0, 1])


def test_invalid_inputs():
    with pytest.raises(ValueError, match="non-decreasing"):
        GuidanceSpline([0.0, 2.0, 1.0], np.zeros((3, 3)), np.tile([0, 0, 0, 1.0], (3, 1)))
    with pytest.raises(ValueError):
        GuidanceSpline([], np.zeros((0, 3)), np.zeros((0, 4)))
    with pytest.raises(ValueError):
        GuidanceSpline([0.0, 1.0], np.zeros((2, 3)), [[0, 0, 0, 1], [0, 0, 0, 0]])
    with pytest.raises(ValueError):
        GuidanceSpline([0.0, np.nan], np.zeros((2, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))
    with pytest.raises(ValueError):
        GuidanceSpline([0.0, 1.0], np.zeros((3, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))
    s = GuidanceSpline([0.0, 1.0], np.zeros((2, 3)), np.tile([0, 0, 0, 1.0], (2, 1)))
    with pytest.raises(ValueError):
        s(np.nan)


def test_waypoints_from_keyframes_and_spline_through_keyframe_poses():
    T = 20
    ts = np.arange(T) * 0.1
    ee = np.zeros((T, 7))
    ee[:, 0] = np.linspace(0.0, 0.5, T)
    ee[:, 2] = 0.3 + 0.01 * np.arange(T)
    ee[:, 3:] = rotz(np.linspace(0, 60, T)[:, None]).as_quat()
    g = np.zeros(T)
    g[6:14] = 1.0  # close at 6, open at 14
    kf = keyframes(g)
    assert kf.steps.tolist() == [6, 14, 19]
    times, pos, quats = waypoints_from_keyframes(ee, ts, kf.steps)
    assert np.allclose(times, ts[[0, 6, 14, 19]])
    assert np.allclose(pos, ee[[0, 6, 14, 19], :3])
    assert np.allclose(quats, ee[[0, 6, 14, 19], 3:])
    times2, _, _ = waypoints_from_keyframes(ee, ts, kf.steps, include_start=False)
    assert np.allclose(times2, ts[[6, 14, 19]])
    s = GuidanceSpline(times, pos, quats)
    out = s(ts[[0, 6, 14, 19]])
    assert np.allclose(out[:, :3], ee[[0, 6, 14, 19], :3], atol=1e-12)
    assert same_rotation(out[:, 3:], ee[[0, 6, 14, 19], 3:])
    with pytest.raises(ValueError):
        waypoints_from_keyframes(ee, ts, [25])
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        waypoints_from_keyframes(ee[:, None], ts, [5])
    # equal timestamps at two keyframes: spline keeps the first, no crash
    ts_dup = ts.copy()
    ts_dup[14] = ts_dup[6]
    ts_dup[7:14] = ts_dup[6]
    s2 = GuidanceSpline(*waypoints_from_keyframes(ee, ts_dup, kf.steps))
    assert len(s2) == 3 and np.allclose(s2(ts[6])[:3], ee[6, :3])


def test_sample_guidance_zero_noise_is_exact():
    t, p, q = random_waypoints(5)
    s = GuidanceSpline(t, p, q)
    tt = np.linspace(t[0], t[-1], 17)
    assert np.array_equal(sample_guidance(s, tt), s(tt))
    assert np.array_equal(sample_guidance(s, tt, 0.0, scale=[1, 2, 3, 4, 5, 6]), s(tt))


def test_sample_guidance_position_noise_statistics():
    s = GuidanceSpline([0.0, 1.0], [[0, 0, 0], [1, 1, 1]], [[0, 0, 0, 1]] * 2)
    tt = np.full(40000, 0.5)
    rng = np.random.default_rng(0)
    out = sample_guidance(s, tt, noise_std=0.5, rng=rng, scale=[0.01, 0.02, 0.2])
    d = out[:, :3] - s(0.5)[:3]
    assert np.allclose(d.std(axis=0), [0.005, 0.01, 0.1], rtol=0.03)
    assert np.all(np.abs(d.mean(axis=0)) < 4 * np.array([0.005, 0.01, 0.1]) / np.sqrt(len(tt)))
    # rotation untouched without rotation scale
    assert np.allclose(out[:, 3:], s(0.5)[3:])
    # scale None -> noise_std in metres on every axis
    d2 = sample_guidance(s, tt, noise_std=0.03, rng=rng)[:, :3] - s(0.5)[:3]
    assert np.allclose(d2.std(axis=0), 0.03, rtol=0.03)
    # deterministic with a seeded rng
    a = sample_guidance(s, tt[:5], 0.1, rng=np.random.default_rng(7))
    b = sample_guidance(s, tt[:5], 0.1, rng=np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_sample_guidance_rotation_noise_statistics():
    q0 = rotz(30).as_quat()
    s = GuidanceSpline([0.0], [[0, 0, 0]], [q0])
    n = 40000
    out = sample_guidance(s, np.zeros(n), noise_std=2.0, rng=np.random.default_rng(1),
                          scale=[0.0, 0.0, 0.0, 0.01, 0.02, 0.03])
    assert np.allclose(out[:, :3], 0.0)
    assert np.allclose(np.linalg.norm(out[:, 3:], axis=1), 1.0)
    # left perturbation: R_noise = R_noisy * R^-1, its rotation vector has std noise_std * scale
    rv = (R.from_quat(out[:, 3:]) * R.from_quat(q0).inv()).as_rotvec()
    assert np.allclose(rv.std(axis=0), [0.02, 0.04, 0.06], rtol=0.03)
    # sign kept close to the clean quaternion
    assert np.all(out[:, 3:] @ q0 > 0)


def test_sample_guidance_bad_args():
    s = GuidanceSpline([0.0], [[0, 0, 0]], [[0, 0, 0, 1]])
    with pytest.raises(ValueError):
        sample_guidance(s, 0.0, noise_std=-1.0)
    with pytest.raises(ValueError):
        sample_guidance(s, 0.0, noise_std=0.1, scale=[1.0, 2.0])
    assert sample_guidance(s, 0.0, 0.1, rng=np.random.default_rng(0), scale=0.0).shape == (7,)
