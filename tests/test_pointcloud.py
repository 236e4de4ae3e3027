"""Per-frame point cloud on a ray-cast table + box scene with known geometry."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from appf.transforms.crop import CropBox
from appf.transforms.geometry import invert_rigid, make_rigid, project, transform_points, unproject
from appf.transforms.outliers import flying_pixel_mask, isolated_pixel_mask, valid_depth_mask
from appf.transforms.pointcloud import CameraView, CloudConfig, EmptyCloudError, frame_point_cloud

H, W = 120, 160
K = np.array([[150.0, 0.0, 79.5], [0.0, 150.0, 59.5], [0.0, 0.0, 1.0]])
BOX_LO = np.array([0.4, -0.1, 0.0])
BOX_HI = np.array([0.6, 0.1, 0.15])
TABLE, BOX = 1, 2
COLOURS = {TABLE: (128, 128, 128), BOX: (255, 0, 0)}
WORKSPACE = CropBox((0.1, -0.4, -0.01), (0.9, 0.4, 0.3))


def look_at(eye, target=(0.5, 0.0, 0.0)) -> np.ndarray:
    """T_base_cam for an OpenCV camera at ``eye`` looking at ``target`` (base z is up)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    f = (target - eye) / np.linalg.norm(target - eye)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    return make_rigid(np.stack([r, d, f], axis=1), eye)


def render(T_base_cam: np.ndarray) -> CameraView:
    """Ray-cast the table plane z=0 and the box; depth = camera z (m), labels 1 table / 2 box."""
    v, u = np.mgrid[0:H, 0:W].astype(float)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    R, c = T_base_cam[:3, :3], T_base_cam[:3, 3]
    d = rays @ R.T  # base-frame direction per unit camera z
    with np.errstate(divide="ignore", invalid="ignore"):
        t_table = np.where(d[..., 2] < 0, -c[2] / d[..., 2], np.inf)
        t0, t1 = (BOX_LO - c) / d, (BOX_HI - c) / d
    tmin = np.minimum(t0, t1).max(-1)
    tmax = np.maximum(t0, t1).min(-1)
    t_box = np.where((tmax >= tmin) & (tmin > 0), tmin, np.inf)
    depth = np.minimum(t_table, t_box)
    labels = np.where(t_box < t_table, BOX, TABLE).astype(np.uint8)
    depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    labels[depth == 0] = 0
    rgb = np.zeros((H, W, 3), np.uint8)
    for k, col in COLOURS.items():
        rgb[labels == k] = col
    return CameraView(depth_m=depth, rgb=rgb, K=K, T_base_cam=T_base_cam, labels=labels)


FRONT = render(look_at((0.0, 0.05, 0.6)))  # sees the box's x = 0.4 face
BACK = render(look_at((1.0, -0.05, 0.6)))  # sees the box's x = 0.6 face


def on_table(xyz: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    return np.abs(xyz[:, 2]) <= tol


def on_box(xyz: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Within ``tol`` of the box's surface."""
    in_outer = np.all((xyz >= BOX_LO - tol) & (xyz <= BOX_HI + tol), axis=1)
    in_inner = np.all((xyz > BOX_LO + tol) & (xyz < BOX_HI - tol), axis=1)
    return in_outer & ~in_inner


def on_surface(xyz: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    return on_table(xyz, tol) | on_box(xyz, tol)


def test_scene_sanity():
    assert (FRONT.labels == BOX).sum() > 500 and (FRONT.labels == TABLE).sum() > 5000


@pytest.mark.parametrize("method", ["fast", "exact"])
def test_points_on_true_surfaces_inside_crop(method):
    fc = frame_point_cloud([FRONT], CloudConfig(n_points=512, crop=WORKSPACE, fps_method=method))
    assert fc.points.shape == (512, 6) and fc.points.dtype == np.float32
    assert fc.labels.shape == (512,) and fc.labels.dtype == np.uint8
    assert fc.n_real == 512
    xyz = fc.points[:, :3]
    assert on_surface(xyz).all()
    assert WORKSPACE.contains(xyz).all()
    assert on_box(xyz).sum() > 20  # the box is sampled, not just the table
    # colours and labels travel with their points
    for k, col in COLOURS.items():
        rgb = fc.points[fc.labels == k, 3:]
        np.testing.assert_allclose(rgb, np.broadcast_to(np.array(col) / 255.0, rgb.shape), atol=1e-6)
    assert on_box(xyz[fc.labels == BOX]).all() and on_table(xyz[fc.labels == TABLE]).all()
    assert set(np.unique(fc.labels)) == {TABLE, BOX}


def test_crop_respected_when_cutting_the_box():
    crop = CropBox((0.45, -0.05, 0.05), (0.9, 0.4, 0.3))  # above the table, through the box
    fc = frame_point_cloud([FRONT, BACK], CloudConfig(n_points=256, crop=crop))
    xyz = fc.points[:, :3]
    assert crop.contains(xyz).all()
    assert on_box(xyz).all() and (fc.labels == BOX).all()
    assert xyz[:, 0].min() >= 0.45 and xyz[:, 1].min() >= -0.05


def test_exact_mode_keeps_every_filtered_point_in_crop():
    """n_points above the cloud size returns every distinct point: compare with a whole-image
    reference (filters on the full image, unproject everything, crop) -- checks the ROI shortcut."""
    crop = CropBox((0.3, -0.2, -0.01), (0.7, 0.2, 0.2))
    view = FRONT
    valid = valid_depth_mask(view.depth_m, 0.05, 5.0)
    keep = isolated_pixel_mask(flying_pixel_mask(view.depth_m, valid=valid), 5, 4)
    pts = transform_points(view.T_base_cam, unproject(view.depth_m, K)[keep].astype(np.float64))
    ref = pts[crop.contains(pts)]
    fc = frame_point_cloud([view], CloudConfig(n_points=len(ref) + 50, crop=crop, fps_method="exact"))
    assert fc.n_real == len(ref)
    got = fc.points[: fc.n_real, :3]
    assert len(np.unique(got, axis=0)) == len(ref)
    d_got, _ = cKDTree(ref).query(got)
    d_ref, j = cKDTree(got).query(ref)
    assert d_got.max() < 1e-5 and d_ref.max() < 1e-5 and len(np.unique(j)) == len(ref)
    # padding repeats real points
    np.testing.assert_array_equal(fc.points[fc.n_real :], fc.points[: 50])


def test_label_restriction():
    fc = frame_point_cloud([FRONT], CloudConfig(n_points=300, crop=WORKSPACE, keep_labels=(BOX,)))
    assert (fc.labels == BOX).all()
    assert on_box(fc.points[:, :3]).all()
    np.testing.assert_allclose(fc.points[:, 3:], np.tile([1.0, 0.0, 0.0], (300, 1)))
    with pytest.raises(ValueError, match="no labels"):
        frame_point_cloud(
            [CameraView(FRONT.depth_m, FRONT.rgb, K, FRONT.T_base_cam, None)],
            CloudConfig(keep_labels=(BOX,)),
        )


def test_multi_view_fusion_sees_both_sides():
    near_face = lambda xyz, x: (np.abs(xyz[:, 0] - x) < 1e-3) & (xyz[:, 2] > 0.01)  # noqa: E731
    cfg = CloudConfig(n_points=1024, crop=WORKSPACE, keep_labels=(BOX,))
    front = frame_point_cloud([FRONT], cfg).points[:, :3]
    back = frame_point_cloud([BACK], cfg).points[:, :3]
    both = frame_point_cloud([FRONT, BACK], cfg).points[:, :3]
    assert near_face(front, 0.4).any() and not near_face(front, 0.6).any()
    assert near_face(back, 0.6).any() and not near_face(back, 0.4).any()
    assert near_face(both, 0.4).any() and near_face(both, 0.6).any()
    assert on_surface(both).all()


def test_deterministic():
    cfg = CloudConfig(n_points=256, crop=WORKSPACE)
    a = frame_point_cloud([FRONT, BACK], cfg)
    b = frame_point_cloud([FRONT, BACK], cfg)
    np.testing.assert_array_equal(a.points, b.points)


def test_few_points_are_padded_with_real_points():
    crop = CropBox((0.49, -0.01, 0.14), (0.51, 0.01, 0.16))  # a 2 cm patch of the box top
    fc = frame_point_cloud([FRONT], CloudConfig(n_points=128, crop=crop, fps_method="exact"))
    assert 0 < fc.n_real < 128
    real = fc.points[: fc.n_real]
    assert len(np.unique(real, axis=0)) == fc.n_real
    assert all((real == row).all(axis=1).any() for row in fc.points)  # every row is a real point
    assert not (fc.points[:, :3] == 0).all(axis=1).any()


def test_empty_cloud_errors():
    far_away = CropBox((5.0, 5.0, 5.0), (6.0, 6.0, 6.0))
    with pytest.raises(EmptyCloudError, match="crop box"):
        frame_point_cloud([FRONT], CloudConfig(crop=far_away))
    with pytest.raises(ValueError, match="keep_labels"):  # EmptyCloudError is a ValueError
        frame_point_cloud([FRONT], CloudConfig(crop=WORKSPACE, keep_labels=(7,)))
    behind = CropBox((-2.0, -0.5, -0.5), (-1.0, 0.5, 0.5))  # behind the camera: no ROI shortcut
    with pytest.raises(EmptyCloudError):
        frame_point_cloud([FRONT], CloudConfig(crop=behind))
    with pytest.raises(ValueError, match="at least one"):
        frame_point_cloud([], CloudConfig())


@pytest.mark.parametrize("period", [3, 7])
def test_fast_pre_reduction_only_picks_kept_pixels(period):
    """Sparse vertical stripes of kept pixels force a block size > 1; every block representative
    must be a kept pixel, and thin stripes must all survive the reduction."""
    labels = FRONT.labels.copy()
    cols = np.arange(W) % period == 0
    labels[:, cols] = 9
    view = CameraView(FRONT.depth_m, FRONT.rgb, K, FRONT.T_base_cam, labels)
    cfg = CloudConfig(n_points=200, candidates=400, keep_labels=(9,), isolated_min_neighbors=0)
    fc = frame_point_cloud([view], cfg)
    assert (fc.labels == 9).all() and fc.n_real == 200
    # back-project to pixel columns: all must be stripe columns
    u, v, _ = project(transform_points(invert_rigid(FRONT.T_base_cam), fc.points[:, :3].astype(float)), K)
    assert np.allclose(u, np.round(u), atol=1e-3) and (np.round(u).astype(int) % period == 0).all()
