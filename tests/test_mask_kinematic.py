"""Kinematic robot prompt: the Panda silhouette rendered from joint positions, K and T_base_cam
(appf's OpenCV conventions) against the ground-truth robot ids of a pybullet scene with the same
Panda, a table and an object, rendered through pybullet's own look-at and field-of-view helpers."""

from __future__ import annotations

import numpy as np
import pytest

from appf.annotators.masks.kinematic import RobotSilhouette, opengl_projection
from appf.annotators.masks.prompted import PromptedVideoMasker
from appf.annotators.protocols import LABEL_ROBOT, MaskBatch
from appf.transforms.mask_metrics import mask_iou
from appf.transforms.synthetic_scene import look_at

pybullet = pytest.importorskip("pybullet")

W, H, FOV_DEG = 160, 120, 60.0
EYE, TARGET = (1.4, 0.6, 0.9), (0.3, 0.0, 0.35)
POSES = np.array([  # panda joint angles (rad): rest, reach left, reach down-right
    [0.0, -0.4, 0.0, -2.2, 0.0, 1.9, 0.8],
    [0.6, 0.2, 0.1, -1.8, 0.2, 2.0, 0.3],
    [-0.5, 0.5, -0.2, -1.5, -0.3, 2.2, 1.2],
])
GRIPPER = np.array([0.0, 1.0, 0.5])


@pytest.fixture(scope="module")
def ground_truth():
    """RGB and robot masks of the full scene (robot, table, a box partly in front of the arm)."""
    from pybullet_utils.bullet_client import BulletClient
    import pybullet_data

    c = BulletClient(connection_mode=pybullet.DIRECT)
    c.setAdditionalSearchPath(pybullet_data.getDataPath())
    robot = c.loadURDF("franka_panda/panda.urdf", useFixedBase=True)
    c.loadURDF("table/table.urdf", basePosition=[0.6, 0.0, -0.63], useFixedBase=True)
    box = c.createMultiBody(0, c.createCollisionShape(c.GEOM_BOX, halfExtents=[0.03] * 3),
                            c.createVisualShape(c.GEOM_BOX, halfExtents=[0.03] * 3),
                            basePosition=[0.55, 0.15, 0.03])
    view = c.computeViewMatrix(EYE, TARGET, [0, 0, 1])
    proj = c.computeProjectionMatrixFOV(FOV_DEG, W / H, 0.01, 10.0)
    rgb, masks = [], []
    for q, g in zip(POSES, GRIPPER):
        for j, a in enumerate(q):
            c.resetJointState(robot, j, a)
        for j in (9, 10):
            c.resetJointState(robot, j, 0.04 * (1 - g))
        _, _, img, _, seg = c.getCameraImage(W, H, view, proj, renderer=c.ER_TINY_RENDERER)
        rgb.append(np.reshape(img, (H, W, 4))[..., :3].astype(np.uint8))
        masks.append(np.reshape(seg, (H, W)) == robot)
    c.disconnect()
    assert box >= 0
    return np.stack(rgb), np.stack(masks)


def _batch(rgb) -> MaskBatch:
    f = (H / 2) / np.tan(np.radians(FOV_DEG) / 2)  # pybullet's fov is vertical
    K = np.array([[f, 0, W / 2 - 0.5], [0, f, H / 2 - 0.5], [0, 0, 1.0]])
    T = np.repeat(look_at(EYE, TARGET)[None], len(rgb), axis=0)
    return MaskBatch(rgb=rgb, where="pybullet scene", K=K, T_base_cam=T,
                     joint_positions=POSES, gripper=GRIPPER)


def test_silhouette_matches_ground_truth_robot_ids(ground_truth):
    rgb, gt = ground_truth
    masks = RobotSilhouette().silhouettes(_batch(rgb))
    assert masks.shape == gt.shape and masks.dtype == bool
    for t in range(len(gt)):
        assert gt[t].sum() > 500  # the arm is well in view
        assert mask_iou(masks[t], gt[t]) >= 0.95, t
    # a wrong joint angle or camera convention would not match: shoulder turned by 0.3 rad
    wrong = _batch(rgb)
    wrong.joint_positions = POSES + np.array([0.3, 0, 0, 0, 0, 0, 0])
    assert mask_iou(RobotSilhouette().silhouettes(wrong)[0], gt[0]) < 0.8


def test_projection_maps_pixel_centres():
    K = np.array([[100.0, 0, 79.5], [0, 100.0, 59.5], [0, 0, 1]])
    P = opengl_projection(K, W, H)
    # camera point on the optical axis -> the image centre in NDC (0, 0)
    ndc = P @ np.array([0, 0, -1.0, 1])
    assert np.allclose(ndc[:2] / ndc[3], 0)
    # OpenCV pixel (u, v) = (129.5, 9.5) <-> GL NDC x = 2 (u + 0.5) / W - 1, y = 1 - 2 (v + 0.5) / H
    x_cv, y_cv = (129.5 - 79.5) / 100, (9.5 - 59.5) / 100
    ndc = P @ np.array([x_cv, -y_cv, -1.0, 1])
    assert np.allclose(ndc[:2] / ndc[3], [2 * 130 / W - 1, 1 - 2 * 10 / H])


def test_kinematic_prompt_as_masker_and_missing_inputs(ground_truth):
    rgb, gt = ground_truth
    masker = PromptedVideoMasker("kinematic", kinematic=RobotSilhouette())
    labels = masker.masks(_batch(rgb)).labels
    assert np.mean([mask_iou(labels[t] == LABEL_ROBOT, gt[t]) for t in range(len(gt))]) >= 0.95
    with pytest.raises(ValueError, match="pybullet scene: the kinematic robot prompt needs K"):
        masker.masks(MaskBatch(rgb=rgb, where="pybullet scene", joint_positions=POSES,
                               T_base_cam=_batch(rgb).T_base_cam))
