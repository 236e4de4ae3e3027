"""Tests for appf.transforms.sft_geometry with hand-built cameras."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation as R

from appf.transforms.sft_geometry import (
    KeyframeTarget,
    keyframe_target,
    keyframe_targets,
    uvd_to_camera,
    waypoint_steps,
)

K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])
H, W = 480, 640
QI = [0.0, 0.0, 0.0, 1.0]


def cam_identity(c):
    """Camera with identity rotation (looks along base +z) at base position c."""
    T = np.eye(4)
    T[:3, 3] = c
    return T


def cam_looking_down(height):
    """Camera above the origin looking down: x_cam = x_base, y_cam = -y_base, z_cam = -z_base."""
    T = np.eye(4)
    T[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T[:3, 3] = [0.0, 0.0, height]
    return T


def linear_episode(T=17):
    """One arm: TCP x = 0.01 * step, y = 0.1, z = 1.0 (base), identity orientation."""
    ee = np.zeros((T, 1, 7))
    ee[:, 0, 0] = 0.01 * np.arange(T)
    ee[:, 0, 1] = 0.1
    ee[:, 0, 2] = 1.0
    ee[:, 0, 3:] = QI
    g = np.zeros((T, 1))
    g[8:, 0] = 1.0
    return ee, g


def test_anchor_identity_camera_hand_checked():
    ee, g = linear_episode()
    ee[8, 0, :3] = [0.3, 0.1, 1.0]
    cam = cam_identity([0.1, -0.2, -1.0])  # p_cam = p_base - c
    t = keyframe_target(ee, g, 0, 8, 0, K, cam, H, W)
    assert isinstance(t, KeyframeTarget)
    # p_cam = (0.2, 0.3, 2.0): u = 500*0.2/2 + 320 = 370, v = 400*0.3/2 + 240 = 300
    assert np.allclose(t.anchor_uv, [370.0, 300.0], atol=1e-9)
    assert np.allclose(t.anchor_uvd, [370.0, 300.0, 2.0], atol=1e-9)
    assert t.in_view is True
    assert np.allclose(t.target_pose_cam, [0.2, 0.3, 2.0, 0, 0, 0, 1], atol=1e-12)
    assert np.allclose(uvd_to_camera(t.anchor_uvd, K), [0.2, 0.3, 2.0], atol=1e-9)
    assert t.gripper_command == 1.0
    assert (t.obs_step, t.target_step, t.arm) == (0, 8, 0)


def test_camera_looking_down_hand_checked():
    ee, g = linear_episode()
    ee[5, 0, :3] = [0.2, 0.1, 0.5]
    # TCP pointing down: tool z = base -z (rotation of 180 deg about x) -> identity in camera
    ee[5, 0, 3:] = R.from_euler("x", 180, degrees=True).as_quat()
    t = keyframe_target(ee, g, 0, 5, 0, K, cam_looking_down(1.5), H, W)
    # p_cam = (0.2, -0.1, 1.0): u = 500*0.2 + 320 = 420, v = 400*(-0.1) + 240 = 200, d = 1
    assert np.allclose(t.anchor_uvd, [420.0, 200.0, 1.0], atol=1e-9)
    assert np.allclose(t.target_pose_cam[:3], [0.2, -0.1, 1.0], atol=1e-12)
    assert np.allclose(t.target_pose_cam[3:], [0, 0, 0, 1], atol=1e-12)
    assert np.allclose(uvd_to_camera(t.anchor_uvd, K), t.target_pose_cam[:3], atol=1e-9)


def test_target_orientation_rotated_tcp_in_camera_frame():
    ee, g = linear_episode()
    # TCP rotated 90 deg about base z; camera looking down (180 deg about x)
    ee[5, 0, 3:] = R.from_euler("z", 90, degrees=True).as_quat()
    t = keyframe_target(ee, g, 0, 5, 0, K, cam_looking_down(2.0), H, W)
    # R_cam_tcp = diag(1,-1,-1) @ Rz(90) = [[0,-1,0],[-1,0,0],[0,0,-1]]
    expected = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    got = R.from_quat(t.target_pose_cam[3:]).as_matrix()
    assert np.allclose(got, expected, atol=1e-12)
    assert t.target_pose_cam[6] >= 0.0  # canonical sign
    assert np.isclose(np.linalg.norm(t.target_pose_cam[3:]), 1.0)


def test_waypoints_in_camera_frame_hand_checked():
    ee, g = linear_episode()
    cam = cam_identity([0.0, 0.0, -1.0])
    t = keyframe_target(ee, g, 8, 16, 0, K, cam, H, W, n_waypoints=4)
    # linspace(8, 16, 5)[1:] = 10, 12, 14, 16
    assert t.waypoint_steps.tolist() == [10, 12, 14, 16]
    expected = np.array([[0.01 * s, 0.1, 2.0] for s in (10, 12, 14, 16)])
    assert t.waypoints_cam.shape == (4, 3)
    assert np.allclose(t.waypoints_cam, expected, atol=1e-12)
    assert np.allclose(t.waypoints_cam[-1], t.target_pose_cam[:3])


def test_waypoint_steps_rounding():
    assert waypoint_steps(0, 8, 8).tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert waypoint_steps(0, 8, 3).tolist() == [3, 5, 8]  # 2.67, 5.33, 8
    assert waypoint_steps(0, 5, 2).tolist() == [3, 5]  # 2.5 rounds half up
    assert waypoint_steps(4, 6, 4).tolist() == [5, 5, 6, 6]  # 4.5, 5, 5.5, 6
    assert waypoint_steps(3, 3, 2).tolist() == [3, 3]
    with pytest.raises(ValueError):
        waypoint_steps(5, 3, 2)
    with pytest.raises(ValueError):
        waypoint_steps(0, 3, 0)


def test_in_view_false_behind_and_outside():
    ee, g = linear_episode()
    ee[8, 0, :3] = [0.0, 0.0, -0.5]
    t = keyframe_target(ee, g, 0, 8, 0, K, cam_identity([0, 0, 0]), H, W)
    assert t.anchor_uvd[2] == -0.5
    assert t.in_view is False
    # the numbers still invert
    assert np.allclose(uvd_to_camera(t.anchor_uvd, K), [0.0, 0.0, -0.5], atol=1e-12)
    # in front, but right of the image: u = 500 * 1 / 1 + 320 = 820 > 640
    ee[8, 0, :3] = [1.0, 0.0, 1.0]
    t = keyframe_target(ee, g, 0, 8, 0, K, cam_identity([0, 0, 0]), H, W)
    assert np.isclose(t.anchor_uv[0], 820.0) and t.in_view is False
    # on the camera plane: undefined projection
    ee[8, 0, :3] = [1.0, 0.0, 0.0]
    t = keyframe_target(ee, g, 0, 8, 0, K, cam_identity([0, 0, 0]), H, W)
    assert np.all(np.isnan(t.anchor_uv)) and t.in_view is False
    # image borders (pixel centres at integers): u in [-0.5, W - 0.5) is inside
    cam0 = cam_identity([0, 0, 0])
    for x, inside in [(-0.641, True), (-0.6411, False), (0.6389, True), (0.639, False)]:
        ee[8, 0, :3] = [x, 0.0, 1.0]  # u = 500 x + 320: -0.5, -0.55, 639.45, 639.5
        assert keyframe_target(ee, g, 0, 8, 0, K, cam0, H, W).in_view is inside, x
    ee[8, 0, :3] = [0.0, 0.5999, 1.0]  # v = 400 * 0.5999 + 240 = 479.96 >= H - 0.5
    assert keyframe_target(ee, g, 0, 8, 0, K, cam0, H, W).in_view is False


def test_uvd_to_camera_round_trip_with_skew():
    Ks = K.copy()
    Ks[0, 1] = 3.0
    p = np.array([0.12, -0.07, 1.3])
    u = (Ks[0, 0] * p[0] + Ks[0, 1] * p[1]) / p[2] + Ks[0, 2]
    v = Ks[1, 1] * p[1] / p[2] + Ks[1, 2]
    assert np.allclose(uvd_to_camera([u, v, p[2]], Ks), p, atol=1e-12)
    with pytest.raises(ValueError):
        uvd_to_camera([1, 2, 3], np.eye(2))


def test_invalid_inputs():
    ee, g = linear_episode()
    cam = cam_identity([0, 0, -1])
    with pytest.raises(ValueError):
        keyframe_target(ee, g, 5, 3, 0, K, cam, H, W)
    with pytest.raises(ValueError):
        keyframe_target(ee, g, 0, 3, 1, K, cam, H, W)
    bad = cam.copy()
    bad[:3, :3] *= 2.0
    with pytest.raises(ValueError, match="rotation"):
        keyframe_target(ee, g, 0, 3, 0, K, bad, H, W)
    with pytest.raises(ValueError, match="focal"):
        keyframe_target(ee, g, 0, 3, 0, np.diag([-500.0, 400.0, 1.0]), cam, H, W)


def test_keyframe_targets_one_arm_obs_steps():
    ee, g = linear_episode(17)
    cam = cam_identity([0.0, 0.0, -1.0])
    out = keyframe_targets(ee, g, [8, 16], K, cam, H, W, n_waypoints=8)
    assert [(t.obs_step, t.target_step, t.arm) for t in out] == [(0, 8, 0), (8, 16, 0)]
    assert out[0].waypoint_steps.tolist() == list(range(1, 9))
    assert out[1].waypoint_steps.tolist() == list(range(9, 17))
    assert [t.gripper_command for t in out] == [1.0, 1.0]
    # (T, 7) and (T,) inputs are one arm
    out2 = keyframe_targets(ee[:, 0], g[:, 0], [8, 16], K, cam, H, W)
    assert np.allclose(out2[1].anchor_uvd, out[1].anchor_uvd)
    with pytest.raises(ValueError, match="increasing"):
        keyframe_targets(ee, g, [8, 8], K, cam, H, W)
    with pytest.raises(ValueError):
        keyframe_targets(ee, g, [20], K, cam, H, W)


def test_keyframe_targets_two_arms_and_per_step_camera():
    T = 20
    ee = np.zeros((T, 2, 7))
    ee[:, 0, :3] = [0.1, 0.0, 1.0]
    ee[:, 1, :3] = [-0.1, 0.0, 1.0]
    ee[:, :, 3:] = QI
    g = np.zeros((T, 2))
    g[5:, 1] = 1.0  # arm 1 closes at 5
    g[10:, 0] = 1.0  # arm 0 closes at 10
    g[14:, :] = 0.0  # both open at 14 (arm 1 had been closed since 5)
    # per-step camera: base position z = -step (moves back one metre per step)
    cams = np.stack([cam_identity([0.0, 0.0, -float(s)]) for s in range(T)])
    out = keyframe_targets(ee, g, [5, 10, 14, 19], K, cams, H, W, n_waypoints=2)
    assert [(t.obs_step, t.target_step, t.arm) for t in out] == [
        (0, 5, 1), (5, 10, 0), (10, 14, 0), (10, 14, 1), (14, 19, 0)
    ]
    # depth uses the observation step's camera: z_cam = 1 + obs_step
    assert [t.anchor_uvd[2] for t in out] == [1.0, 6.0, 11.0, 11.0, 15.0]
    # arm 1's anchor at (0, 5): x = -0.1, z = 1 -> u = 500 * -0.1 + 320 = 270, v = 240
    assert np.allclose(out[0].anchor_uv, [270.0, 240.0])
    assert out[0].gripper_command == 1.0 and out[2].gripper_command == 0.0
    with pytest.raises(ValueError):
        keyframe_targets(ee, g, [5], K, cams[:3], H, W)
