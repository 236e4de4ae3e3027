"""The synthetic source and its scene: the geometry oracle of the other tests must be exact."""

from __future__ import annotations

import numpy as np
import pytest

from appf.pipelines.sources.synthetic import SEGMENTS, SyntheticSource
from appf.schemas import SegmentCategory, check_episode
from appf.transforms import synthetic_scene as S

TOL = 1e-4  # metres


@pytest.fixture(scope="module")
def source() -> SyntheticSource:
    return SyntheticSource(episodes=3, steps=40, height=120, width=160, seed=0)


@pytest.fixture(scope="module")
def episode(source):
    return source.read(source.list_refs()[0])


@pytest.fixture(scope="module")
def script(episode):
    return S.make_script(episode.metadata["seed"], episode.num_steps)


def _unproject_to_base(depth: np.ndarray, K: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(H, W, 3) base-frame points of every pixel (u = column, v = row)."""
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = depth.astype(np.float64)
    p = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    return p @ T[:3, :3].T + T[:3, 3]


def _box_surface_error(p: np.ndarray, box: S.Box) -> np.ndarray:
    """Distance-like error of base points from a box's surface (0 on the surface)."""
    local = (p - box.T_base_box[:3, 3]) @ box.T_base_box[:3, :3]
    excess = np.abs(local) - box.half
    outside = np.clip(excess, 0, None).max(axis=-1)
    inside = np.abs(excess.max(axis=-1))
    return np.maximum(outside, inside)


# -- the record ------------------------------------------------------------------------------

def test_refs_are_stable_and_sorted(source):
    refs = source.list_refs()
    assert [r.episode_id for r in refs] == ["synthetic-000000", "synthetic-000001",
                                            "synthetic-000002"]
    assert [r.index for r in refs] == [0, 1, 2]
    assert refs == source.list_refs()
    shifted = SyntheticSource(episodes=2, seed=1, height=120, width=160).list_refs()
    assert shifted[0].episode_id == refs[1].episode_id and shifted[0].index == 0
    assert SyntheticSource.info.name == "synthetic"


def test_episode_validates_and_has_documented_fields(episode):
    assert check_episode(episode) is episode
    T = episode.num_steps
    cam = episode.cameras["front"]
    assert cam.rgb.shape == (T, 120, 160, 3) and cam.rgb.dtype == np.uint8
    assert cam.rgb_right.shape == cam.rgb.shape and cam.baseline_m == S.BASELINE_M
    assert cam.depth.dtype == np.float32 and cam.segmentation.dtype == np.int32
    assert cam.depth_provenance == "ground_truth"
    assert (cam.depth > 0).all()  # the default camera always sees the wall, floor or table
    assert set(np.unique(cam.segmentation)) <= {s.id for s in SEGMENTS}
    assert list(cam.ids_of(SegmentCategory.ROBOT)) == [S.ROBOT_ID]
    assert list(cam.ids_of(SegmentCategory.TASK_OBJECT)) == [S.CUBE_ID]
    assert sorted(cam.ids_of(SegmentCategory.BACKGROUND)) == [S.BACKGROUND_ID, S.TABLE_ID]
    K = cam.intrinsics
    assert K[0, 2] == (160 - 1) / 2 and K[1, 2] == (120 - 1) / 2 and K[0, 0] == K[1, 1]
    s = episode.steps
    assert s.ee_pose.shape == (T, 1, 7) and s.gripper.shape == (T, 1)
    assert s.joint_positions.shape == (T, 7) and s.action.shape == (T, 8)
    np.testing.assert_allclose(np.diff(s.timestamp), 1 / episode.control_hz)
    np.testing.assert_array_equal(s.action[:-1, :7], s.ee_pose[1:, 0])
    np.testing.assert_array_equal(s.action[:-1, 7], s.gripper[1:, 0])
    assert episode.robot.name == "synthetic_gripper" and episode.robot.arm_count == 1
    assert "cube" in episode.language_instruction
    assert episode.metadata["cube_color"] in episode.language_instruction
    # every frame shows the cube and the gripper
    assert ((cam.segmentation == S.CUBE_ID).sum(axis=(1, 2)) > 0).all()
    assert ((cam.segmentation == S.ROBOT_ID).sum(axis=(1, 2)) > 0).all()


def test_camera_is_opencv_front_and_above(episode):
    T = episode.cameras["front"].T_base_cam
    assert T[2, 3] > 0.3 and T[0, 3] > 0.8          # above and in front of the workspace
    assert T[2, 2] < -0.3 and T[0, 2] < -0.5        # optical axis (z) looks down and back (-x)
    assert T[2, 1] < -0.5                            # image y (down) points down in the world


def test_ee_pose_is_tcp_with_gripper_pointing_down(episode, script):
    ee = episode.steps.ee_pose[:, 0]
    np.testing.assert_allclose(np.linalg.norm(ee[:, 3:], axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(ee[:, :3], script.tcp_poses[:, :3, 3])
    for q, T in zip(ee[:, 3:], script.tcp_poses):
        x, y, z, w = q
        R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        np.testing.assert_allclose(R, T[:3, :3], atol=1e-12)
        np.testing.assert_allclose(R[:, 2], [0, 0, -1], atol=1e-12)  # approach axis down


# -- exact geometry --------------------------------------------------------------------------

@pytest.mark.parametrize("t_name", ["start", "grasp", "transfer", "end"])
def test_depth_is_exact_and_segmentation_matches(episode, script, t_name):
    t = {"start": 0, "grasp": script.grasp_step, "transfer": sum(script.phases["transfer"]) // 2,
         "end": episode.num_steps - 1}[t_name]
    cam = episode.cameras["front"]
    p = _unproject_to_base(cam.depth[t], cam.intrinsics, cam.T_base_cam)
    seg = cam.segmentation[t]
    state = script.state(t)

    cube = p[seg == S.CUBE_ID]
    assert len(cube) > 5
    assert _box_surface_error(cube, S.cube_box(state)).max() < TOL

    table = p[seg == S.TABLE_ID]
    assert np.abs(table[:, 2] - S.TABLE_HEIGHT).max() < TOL
    assert (table[:, 0] >= S.TABLE_X[0] - TOL).all() and (table[:, 0] <= S.TABLE_X[1] + TOL).all()

    robot = p[seg == S.ROBOT_ID]
    err = np.min([_box_surface_error(robot, b) for b in S.robot_boxes(state.T_base_tcp,
                                                                     state.gripper)], axis=0)
    assert err.max() < TOL

    bg = p[seg == S.BACKGROUND_ID]
    on_wall = np.abs(bg[:, 0] - S.WALL_X) < TOL
    on_floor = np.abs(bg[:, 2] - S.FLOOR_Z) < TOL
    assert (on_wall | on_floor).all()

    # no primitive is hidden behind a farther one: re-cast each pixel against all boxes
    r = S.SceneRenderer(cam.intrinsics, cam.T_base_cam, *cam.depth.shape[1:])
    d = r.dirs.reshape(3, -1)
    t_min = np.min([S._intersect_box(r.origin, d, b)[0] for b in S.scene_boxes(state)], axis=0)
    hit = np.isfinite(t_min)
    np.testing.assert_allclose(cam.depth[t].reshape(-1)[hit], t_min[hit], rtol=1e-6)


def test_table_fast_path_matches_slab_test(episode):
    cam = episode.cameras["front"]
    r = S.SceneRenderer(cam.intrinsics, cam.T_base_cam, 60, 80)
    layer = r._static_layer(0)
    t, *_ = S._intersect_box(r.origin, r.dirs.reshape(3, -1), S.table_box())
    t = t.reshape(60, 80)
    table = layer.seg == S.TABLE_ID
    slab_wins = np.isfinite(t) & (t <= layer.depth * (1 + 1e-12))
    np.testing.assert_array_equal(table, slab_wins)
    np.testing.assert_allclose(layer.depth[table], t[table], rtol=1e-12)


def test_depth_is_camera_z_not_ray_length():
    K = S.intrinsics_from_fov(64, 48)
    T = S.look_at([0.3, 0.0, 1.0], [0.3, 0.0, 0.0])  # straight down onto the table
    far = S._pose(np.eye(3), [5.0, 5.0, 5.0])
    state = S.SceneState(far, 0.0, far)
    _, depth, seg = S.render_view(state, K, T, 48, 64)
    assert (seg == S.TABLE_ID).all()
    np.testing.assert_allclose(depth, 1.0, atol=1e-7)


# -- stereo ----------------------------------------------------------------------------------

def test_right_image_is_the_rectified_right_camera(episode, script):
    cam = episode.cameras["front"]
    H, W = cam.depth.shape[1:]
    T_right = S.right_camera_pose(cam.T_base_cam, cam.baseline_m)
    np.testing.assert_allclose(T_right[:3, 3] - cam.T_base_cam[:3, 3],
                               cam.baseline_m * cam.T_base_cam[:3, 0])
    for t in (0, script.grasp_step):
        rgb, _, _ = S.render_view(script.state(t), cam.intrinsics, T_right, H, W)
        np.testing.assert_array_equal(rgb, cam.rgb_right[t])


def test_disparity_is_fx_baseline_over_depth_exactly(episode, script):
    """A left table pixel (u, v) at depth z is seen by the right camera at u - fx B / z: render
    the right view with cx shifted so that this position falls on a pixel centre, and find the
    same depth and the same colour there."""
    cam = episode.cameras["front"]
    K, B = cam.intrinsics, cam.baseline_m
    H, W = cam.depth.shape[1:]
    t = 0
    state = script.state(t)
    T_right = S.right_camera_pose(cam.T_base_cam, B)
    rng = np.random.default_rng(0)
    vs, us = np.nonzero(cam.segmentation[t] == S.TABLE_ID)
    same = 0
    picks = rng.choice(len(vs), 12, replace=False)
    for i in picks:
        v, u = int(vs[i]), int(us[i])
        z = float(cam.depth[t, v, u])
        ur = u - K[0, 0] * B / z
        if not 1 <= ur <= W - 2:
            continue
        col = int(np.floor(ur))
        Ks = K.copy()
        Ks[0, 2] += col - ur  # the right camera's projection of the point lands on col exactly
        rgb, depth, seg = S.render_view(state, Ks, T_right, H, W)
        assert seg[v, col] == S.TABLE_ID
        assert abs(float(depth[v, col]) - z) < 1e-5
        same += bool((rgb[v, col] == cam.rgb[t, v, u]).all())
    assert same >= len(picks) - 2  # a point exactly on a texture-cell edge may flip


def test_stereo_pair_is_photometrically_consistent(episode):
    cv2 = pytest.importorskip("cv2")
    cam = episode.cameras["front"]
    K, B = cam.intrinsics, cam.baseline_m
    t = 0
    H, W = cam.depth.shape[1:]
    left = cam.rgb[t].astype(np.float32)
    right = cam.rgb_right[t].astype(np.float32)
    disp = K[0, 0] * B / cam.depth[t]
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    mask = (cam.segmentation[t] == S.TABLE_ID) & (u - disp > 2) & (u > 10)

    def err(extra: float) -> float:
        warped = cv2.remap(right, (u - disp - extra).astype(np.float32), v, cv2.INTER_LINEAR)
        return float(np.abs(warped - left)[mask].mean())

    good = err(0.0)
    assert good < 0.5 * min(err(-2.0), err(2.0))


# -- gripper events and the grasp ------------------------------------------------------------

def test_gripper_events_at_documented_steps(episode):
    g = episode.steps.gripper[:, 0]
    assert g.min() >= 0 and g.max() <= 1
    closed = g >= 0.5
    rises = np.flatnonzero(closed[1:] & ~closed[:-1]) + 1
    falls = np.flatnonzero(~closed[1:] & closed[:-1]) + 1
    assert list(rises) == [episode.metadata["gripper_close_step"]]
    assert list(falls) == [episode.metadata["gripper_open_step"]]
    assert g[0] == 0 and g[-1] == 0
    assert not np.any(np.isclose(g, 0.5))  # no ambiguous sample at the threshold


@pytest.mark.parametrize("steps", [16, 40, 97])
def test_script_events_for_any_length(steps):
    sc = S.make_script(5, steps)
    closed = sc.gripper >= 0.5
    assert sc.close_step < sc.grasp_step <= sc.release_step < sc.open_step
    assert closed[sc.close_step] and not closed[sc.close_step - 1]
    assert not closed[sc.open_step] and closed[sc.open_step - 1]
    assert len(sc.tcp_poses) == steps


def test_script_rejects_too_few_steps():
    with pytest.raises(ValueError):
        S.make_script(0, S.MIN_STEPS - 1)


def test_fingers_follow_gripper():
    T = np.eye(4)
    gaps = []
    for g in (0.0, 0.5, 1.0):
        fl, fr = S.robot_boxes(T, g)[:2]
        gaps.append(fl.T_base_box[1, 3] - fr.T_base_box[1, 3] - 2 * fl.half[1])
    np.testing.assert_allclose(gaps, [S.FINGER_OPEN_GAP, (S.FINGER_OPEN_GAP + S.CUBE_SIZE) / 2,
                                      S.CUBE_SIZE])


def test_cube_moves_with_gripper_while_grasped(episode, script):
    rel = [np.linalg.inv(script.tcp_poses[t]) @ script.cube_poses[t]
           for t in range(script.grasp_step, script.release_step + 1)]
    np.testing.assert_allclose(rel, np.broadcast_to(rel[0], np.shape(rel)), atol=1e-12)
    assert script.attached[script.grasp_step:script.release_step + 1].all()
    assert not script.attached[:script.grasp_step].any()
    # the cube rests on the table before the grasp and after the release
    for t in (0, script.close_step, script.open_step, episode.num_steps - 1):
        assert abs(script.cube_poses[t][2, 3] - S.CUBE_HALF) < 1e-12
    # placed on the side the instruction names (+y = the robot's left)
    dy = script.cube_poses[-1][1, 3] - script.cube_poses[0][1, 3]
    assert (dy > 0.1) if script.place_direction == "left" else (dy < -0.1)
    # in the pixels: the cube's observed points rise and travel with the TCP
    cam = episode.cameras["front"]
    lifted = script.phases["lift"][1]
    centres = []
    for t in (script.grasp_step, lifted, script.release_step):
        p = _unproject_to_base(cam.depth[t], cam.intrinsics, cam.T_base_cam)
        centres.append(p[cam.segmentation[t] == S.CUBE_ID].mean(axis=0))
    assert centres[1][2] - centres[0][2] > 0.1
    tcp_move = script.tcp_poses[script.release_step][:2, 3] - script.tcp_poses[lifted][:2, 3]
    np.testing.assert_allclose(centres[2][:2] - centres[1][:2], tcp_move, atol=0.02)


# -- determinism -----------------------------------------------------------------------------

def test_same_seed_same_arrays_different_seed_different_scene(source, episode):
    again = SyntheticSource(episodes=1, steps=40, height=120, width=160, seed=0)
    ep2 = again.read(again.list_refs()[0])
    a, b = episode.cameras["front"], ep2.cameras["front"]
    for name in ("rgb", "rgb_right", "depth", "segmentation", "T_base_cam", "intrinsics"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("ee_pose", "gripper", "joint_positions", "action", "timestamp"):
        np.testing.assert_array_equal(getattr(episode.steps, name), getattr(ep2.steps, name))
    assert episode.metadata == ep2.metadata
    s0, s1 = S.make_script(0, 40), S.make_script(1, 40)
    assert np.abs(s0.cube_poses[0][:3, 3] - s1.cube_poses[0][:3, 3]).max() > 1e-3
    assert not np.allclose(s0.T_base_cam, s1.T_base_cam)


def test_mono_source_has_no_right_image():
    src = SyntheticSource(episodes=1, steps=16, height=24, width=32, stereo=False)
    ep = check_episode(src.read(src.list_refs()[0]))
    assert ep.cameras["front"].rgb_right is None and ep.cameras["front"].baseline_m is None
