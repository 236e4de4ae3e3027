"""Camera and rigid-body geometry: exact answers on hand-checked cases."""

import numpy as np
import pytest

from appf.transforms.geometry import (
    crop_intrinsics,
    invert_rigid,
    make_rigid,
    matrix_to_pose,
    matrix_to_quat,
    pose_to_matrix,
    quat_to_matrix,
    project,
    resize_intrinsics,
    transform_points,
    unproject,
)

K = np.array([[500.0, 0.0, 320.0], [0.0, 400.0, 240.0], [0.0, 0.0, 1.0]])


def test_unproject_plane_exact_coordinates():
    depth = np.full((480, 640), 2.0)
    pts = unproject(depth, K)
    assert pts.shape == (480, 640, 3)
    # principal point -> optical axis
    np.testing.assert_array_equal(pts[240, 320], [0.0, 0.0, 2.0])
    # u=570, v=40: x=(570-320)*2/500=1.0, y=(40-240)*2/400=-1.0
    np.testing.assert_allclose(pts[40, 570], [1.0, -1.0, 2.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(pts[0, 0], [-320 * 2 / 500, -240 * 2 / 400, 2.0], rtol=0, atol=1e-12)
    assert np.all(pts[..., 2] == 2.0)


def test_unproject_keeps_float32_and_zero_depth():
    depth = np.zeros((4, 5), np.float32)
    depth[1, 2] = 1.5
    pts = unproject(depth, K)
    assert pts.dtype == np.float32
    assert np.all(pts[0, 0] == 0)


def test_project_unproject_round_trip():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 4.0, size=(48, 64))
    Ks = K.copy()
    Ks[0, 1] = 3.0  # skew is honoured both ways
    for k in (K, Ks):
        u, v, z = project(unproject(depth, k), k)
        vv, uu = np.mgrid[0:48, 0:64]
        np.testing.assert_allclose(u, uu, atol=1e-9)
        np.testing.assert_allclose(v, vv, atol=1e-9)
        np.testing.assert_allclose(z, depth, atol=0)


def test_project_known_point():
    u, v, z = project(np.array([[0.5, -0.25, 2.0]]), K)
    assert (u[0], v[0], z[0]) == (320 + 500 * 0.25, 240 - 400 * 0.125, 2.0)


def _rot_z(deg):
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def test_transform_and_invert_rigid():
    T = make_rigid(_rot_z(90), [1.0, 2.0, 3.0])
    p = np.array([[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(transform_points(T, p), [[1.0, 3.0, 3.0]], atol=1e-12)
    Ti = invert_rigid(T)
    np.testing.assert_allclose(Ti @ T, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(transform_points(Ti, transform_points(T, p)), p, atol=1e-12)
    # batched inverse
    Tb = np.stack([T, make_rigid(_rot_z(-30), [0, 0, 1])])
    np.testing.assert_allclose(invert_rigid(Tb) @ Tb, np.broadcast_to(np.eye(4), (2, 4, 4)), atol=1e-12)


def test_transform_points_float32_stays_float32():
    T = make_rigid(_rot_z(10), [0.1, 0.2, 0.3])
    out = transform_points(T, np.ones((7, 3), np.float32))
    assert out.dtype == np.float32 and out.shape == (7, 3)


def test_pose_to_matrix_hand_checked_quaternion():
    s = np.sqrt(0.5)
    pose = np.array([1.0, 2.0, 3.0, 0.0, 0.0, s, s])  # 90 deg about z, xyzw
    T = pose_to_matrix(pose)
    np.testing.assert_allclose(T[:3, :3], _rot_z(90), atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])
    # identity quaternion is (0, 0, 0, 1) in xyzw
    np.testing.assert_allclose(pose_to_matrix([0, 0, 0, 0, 0, 0, 1.0]), np.eye(4), atol=0)


def test_pose_matrix_round_trip_batched():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(5, 3, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q[q[..., 3] < 0] *= -1
    pose = np.concatenate([rng.normal(size=(5, 3, 3)), q], axis=-1)
    T = pose_to_matrix(pose)
    assert T.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(matrix_to_pose(T), pose, atol=1e-12)
    np.testing.assert_allclose(pose_to_matrix(matrix_to_pose(T)), T, atol=1e-12)


def test_pose_shape_errors():
    with pytest.raises(ValueError, match="7"):
        pose_to_matrix(np.zeros(6))
    with pytest.raises(ValueError, match="4, 4"):
        matrix_to_pose(np.eye(3))


def test_resize_intrinsics_hand_checked():
    # 640x480 -> 320x240: fx/2; cx=(319.5+0.5)/2-0.5 = 159.5 (the centre stays the centre)
    Kc = np.array([[600.0, 0.0, 319.5], [0.0, 600.0, 239.5], [0.0, 0.0, 1.0]])
    out = resize_intrinsics(Kc, (480, 640), (240, 320))
    np.testing.assert_allclose(out, [[300, 0, 159.5], [0, 300, 119.5], [0, 0, 1]])
    # anisotropic: 480x640 -> 960x320: sx=0.5, sy=2
    out = resize_intrinsics(K, (480, 640), (960, 320))
    np.testing.assert_allclose(out, [[250, 0, 320.5 * 0.5 - 0.5], [0, 800, 240.5 * 2 - 0.5], [0, 0, 1]])


def test_resize_intrinsics_maps_pixel_edges():
    # the left edge of pixel 0 (u=-0.5) and the right edge of the last pixel stay the image edges
    out = resize_intrinsics(K, (480, 640), (120, 160))
    x = np.array([[(-0.5 - 320) / 500, 0, 1], [(639.5 - 320) / 500, 0, 1]])
    u, _, _ = project(x, out)
    np.testing.assert_allclose(u, [-0.5, 159.5], atol=1e-12)


def test_crop_intrinsics():
    out = crop_intrinsics(K, top=40, left=100)
    np.testing.assert_allclose(out[:2, 2], [220, 200])
    assert out[0, 0] == 500 and out[1, 1] == 400
    # a point seen at (u, v) in the full image is at (u-left, v-top) in the crop
    p = np.array([0.3, -0.2, 1.7])
    u, v, _ = project(p, K)
    u2, v2, _ = project(p, out)
    np.testing.assert_allclose([u2, v2], [u - 100, v - 40], atol=1e-12)


def test_quaternion_conversions_equal_scipy():
    """Random rotations, the 180-degree turns (w = 0, canonical sign) and identity agree with
    scipy's Rotation to float64 rounding, matrices both ways."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    special = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0],
                        [0, -1, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 0, -0.6, -0.8]], dtype=float)
    q = np.concatenate([rng.normal(size=(500, 4)), special])
    R = quat_to_matrix(q)
    np.testing.assert_allclose(R, Rotation.from_quat(q).as_matrix(), atol=1e-14)
    want = Rotation.from_matrix(R).as_quat(canonical=True)
    np.testing.assert_allclose(matrix_to_quat(R), want, atol=1e-14)
    # every branch of the formula is exercised (each of x, y, z, w largest)
    assert {int(np.argmax(np.abs(x))) for x in want} == {0, 1, 2, 3}


def test_matrix_to_quat_of_a_perturbed_rotation_is_scipys():
    """Slightly non-orthogonal input (e.g. float32 round trips) gives scipy's answer."""
    from scipy.spatial.transform import Rotation

    R = Rotation.from_rotvec([[0.3, -1.2, 2.0], [2.9, 0.1, 0.2]]).as_matrix()
    R = R + np.random.default_rng(1).normal(scale=1e-6, size=R.shape)
    np.testing.assert_allclose(matrix_to_quat(R), Rotation.from_matrix(R).as_quat(canonical=True),
                               atol=1e-6)


def test_zero_quaternion_is_refused():
    with pytest.raises(ValueError, match="non-zero"):
        pose_to_matrix(np.array([0, 0, 0, 0, 0, 0, 0.0]))
