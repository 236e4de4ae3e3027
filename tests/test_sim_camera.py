"""MuJoCo -> appf conversions (appf.transforms.sim_camera) and the replay wire protocol."""

from __future__ import annotations

import io

import numpy as np
import pytest

from appf.schemas import SegmentCategory
from appf.simreplay.protocol import ProtocolError, read_message, write_message
from appf.transforms import sim_camera as sc


def test_depth_from_zbuffer_inverts_the_opengl_projection():
    near, far = 0.0106098, 530.49
    z = np.array([0.0106098, 0.5, 1.0, 2.71, 100.0])
    # OpenGL perspective depth: d = (1/near - 1/z) / (1/near - 1/far)
    d = (1 / near - 1 / z) / (1 / near - 1 / far)
    out = sc.depth_m_from_zbuffer(d.astype(np.float32), near, far)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:4], z[:4], rtol=2e-4)
    assert sc.depth_m_from_zbuffer(np.ones((2, 2)), near, far).max() == 0.0  # far plane: invalid
    with pytest.raises(ValueError, match="near_m"):
        sc.depth_m_from_zbuffer(d, 1.0, 0.5)


def test_intrinsics_from_fovy_match_robosuite_cameras():
    K = sc.intrinsics_from_fovy(45.0, 128, 128)  # agentview
    assert K[0, 0] == pytest.approx(154.5097, abs=1e-3) and K[1, 1] == K[0, 0]
    assert (K[0, 2], K[1, 2]) == (63.5, 63.5)  # centre of a 128 px image, integer pixel centres
    assert sc.intrinsics_from_fovy(75.0, 256, 320)[0, 0] == pytest.approx(166.813, abs=1e-3)
    assert sc.intrinsics_from_fovy(75.0, 256, 320)[0, 2] == 159.5


def test_opengl_camera_to_opencv_looks_along_its_minus_z():
    # A MuJoCo camera 1 m above the origin looking straight down: its OpenGL -z is world -z,
    # its y (image up) is world +y. In OpenCV, +z (forward) must be world -z and image down
    # (+y) world -y.
    R_gl = np.eye(3)
    T = sc.T_world_cam_opencv(np.array([0.0, 0.0, 1.0]), R_gl.reshape(9))
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1])
    np.testing.assert_allclose(T[:3, 1], [0, -1, 0])
    point_cv = np.array([0.0, 0.0, 1.0, 1.0])  # 1 m in front of the camera
    np.testing.assert_allclose((T @ point_cv)[:3], [0, 0, 0], atol=1e-12)
    batch = sc.T_world_cam_opencv(np.zeros((5, 3)), np.tile(R_gl.reshape(9), (5, 1)))
    assert batch.shape == (5, 4, 4)


def test_flip_rows_flips_only_rows():
    a = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    out = sc.flip_rows(a)
    np.testing.assert_array_equal(out[:, 0], a[:, 2])
    np.testing.assert_array_equal(out[:, :, 0], a[:, ::-1, 0])
    assert out.flags.c_contiguous


def test_gripper_closure_from_finger_joints():
    fingers = np.array([[0.04, -0.04], [0.03, -0.03], [0.0225, -0.0225], [0.0225, -0.0225]])
    w = sc.finger_width_m(fingers)
    np.testing.assert_allclose(w, [0.08, 0.06, 0.045, 0.045])
    g = sc.gripper_closure(w, open_width_m=0.08)  # a grasp on a 4.5 cm object reads closed
    np.testing.assert_allclose(g, [0, 0.571428, 1, 1], atol=1e-6)
    still = sc.gripper_closure(np.array([0.08, 0.079]), open_width_m=0.08)  # never closed
    np.testing.assert_allclose(still, [0, 0.0125])


def test_segment_table_categories_from_ownership_and_prefixes():
    names = ["floor", "table_visual", "robot0_g0_vis", "gripper0_finger1_visual", "cube_g0_vis", ""]
    bodies = ["world", "table", "robot0_link0", "gripper0_leftfinger", "cube_main", "world"]
    inst = ["", "", "Panda0", "", "cube", ""]
    table = sc.segment_table(names, bodies, inst, robot=sc.Owners(("Panda0",), ("gripper0_",)),
                             objects=sc.Owners(("cube",), ()))
    cats = {s.name: s.category for s in table}
    assert [s.id for s in table] == [0, 1, 2, 3, 4, 5, 6]
    assert cats["no_geom"] == cats["floor"] == cats["table_visual"] == SegmentCategory.BACKGROUND
    assert cats["robot0_g0_vis"] == cats["gripper0_finger1_visual"] == SegmentCategory.ROBOT
    assert cats["cube_g0_vis"] == SegmentCategory.TASK_OBJECT
    assert table[6].name == "geom5"


def test_protocol_round_trip_and_version_check():
    buf = io.BytesIO()
    arrays = {"rgb/agentview": np.arange(12, dtype=np.uint8).reshape(2, 2, 3), "t": np.ones(3)}
    write_message(buf, {"op": "replay", "x": 1}, arrays)
    write_message(buf, {"op": "hello"})
    buf.seek(0)
    header, got = read_message(buf)
    assert header["op"] == "replay" and header["x"] == 1
    np.testing.assert_array_equal(got["rgb/agentview"], arrays["rgb/agentview"])
    assert read_message(buf) == ({"op": "hello", "v": 1, "nbytes": 0}, {})
    with pytest.raises(ProtocolError, match="ended"):
        read_message(buf)
    with pytest.raises(ProtocolError, match="version 99"):
        read_message(io.BytesIO(b'{"v": 99, "nbytes": 0}\n'))
    with pytest.raises(ProtocolError, match="before the end"):
        read_message(io.BytesIO(b'{"v": 1, "nbytes": 10}\nabc'))
