"""Kinematic robot prompt: the robot model's silhouette at each frame's joint positions, seen
through the camera's K and T_base_cam (forward kinematics and rasterisation by pybullet, whose
pybullet_data ships the Franka Panda URDF and meshes, so nothing is downloaded).

For sources with joint positions and calibrated cameras (e.g. DROID's Franka). The robot base is
the world origin (appf's base frame); the 7 arm joints take joint_positions[:, :7] (radians);
the fingers follow the gripper signal (0 open = 0.04 m per finger, 1 closed = 0). Rendering:
pybullet's CPU TinyRenderer, robot alone, segmentation buffer == the robot's body id.

Camera conversion (OpenCV K, camera-to-base pose -> OpenGL matrices, column-major for pybullet):
view = diag(1, -1, -1, 1) @ inv(T_base_cam); projection maps pixel centres exactly (the
principal point shifted by half a pixel between OpenCV's and OpenGL's pixel conventions).
Limits: the silhouette is the model's (Panda hand), not a real robot's cables or a different
gripper (DROID uses a Robotiq 2F-85): it is a prompt for SAM 2, not a final mask.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from appf.annotators.depth.runtime import import_optional
from appf.annotators.protocols import MaskBatch

PANDA_URDF = "franka_panda/panda.urdf"
_ARM_JOINTS = 7
_FINGER_OPEN_M = 0.04
_INSTALL = "pip install pybullet==3.2.7 (pyproject extra 'masks')"


def opengl_projection(K: np.ndarray, width: int, height: int, near_m: float = 0.01,
                      far_m: float = 10.0) -> np.ndarray:
    """4x4 OpenGL projection (row-major) equivalent to pinhole K for a width x height image."""
    fx, fy = K[0, 0], K[1, 1]
    cx, cy = K[0, 2] + 0.5, K[1, 2] + 0.5  # OpenCV pixel centres are integers, OpenGL's +0.5
    return np.array([
        [2 * fx / width, 0, 1 - 2 * cx / width, 0],
        [0, 2 * fy / height, 2 * cy / height - 1, 0],
        [0, 0, -(far_m + near_m) / (far_m - near_m), -2 * far_m * near_m / (far_m - near_m)],
        [0, 0, -1, 0],
    ])


def opengl_view(T_base_cam: np.ndarray) -> np.ndarray:
    """4x4 OpenGL view matrix (row-major): base -> OpenGL camera (x right, y up, looking -z)."""
    return np.diag([1.0, -1.0, -1.0, 1.0]) @ np.linalg.inv(np.asarray(T_base_cam, np.float64))


class RobotSilhouette:
    """Renders the robot model's silhouette for every frame of a MaskBatch."""

    name = "kinematic"
    weights_id = "pybullet_data:franka_panda"
    revision = ""

    def __init__(self, urdf: str = PANDA_URDF):
        self.urdf = urdf
        self.client: Any = None
        self.robot = -1

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("pybullet") is None:
            return f"mask backend {self.name!r} needs pybullet: {_INSTALL}"
        return None

    def load(self) -> None:
        if self.client is not None:
            return
        pybullet = import_optional("pybullet", self.name, _INSTALL)
        import pybullet_data
        from pybullet_utils.bullet_client import BulletClient

        self.client = BulletClient(connection_mode=pybullet.DIRECT)
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.robot = self.client.loadURDF(self.urdf, useFixedBase=True)
        self.revision = f"pybullet {pybullet.getAPIVersion()}"
        joints = [self.client.getJointInfo(self.robot, j) for j in range(
            self.client.getNumJoints(self.robot))]
        movable = [j[0] for j in joints if j[2] != pybullet.JOINT_FIXED]
        self.arm, self.fingers = movable[:_ARM_JOINTS], movable[_ARM_JOINTS:]

    def _check(self, batch: MaskBatch) -> None:
        T = len(batch.rgb)
        missing = [n for n, v in (("joint positions", batch.joint_positions), ("K", batch.K),
                                  ("T_base_cam", batch.T_base_cam)) if v is None]
        if missing:
            raise ValueError(f"{batch.where}: the kinematic robot prompt needs "
                             f"{', '.join(missing)}, which this camera/episode lacks; use a "
                             "RoboEngine backend for it instead")
        q = np.asarray(batch.joint_positions)
        if q.ndim != 2 or q.shape[0] != T or q.shape[1] < _ARM_JOINTS:
            raise ValueError(f"{batch.where}: joint_positions has shape {q.shape}; the "
                             f"{self.urdf} prompt needs ({T}, >= {_ARM_JOINTS}) radians")

    def silhouettes(self, batch: MaskBatch) -> np.ndarray:
        """(T, H, W) bool: where the robot model is in each frame."""
        self.load()
        self._check(batch)
        T, H, W = np.asarray(batch.rgb).shape[:3]
        proj = opengl_projection(np.asarray(batch.K, np.float64), W, H)
        out = np.zeros((T, H, W), bool)
        for t in range(T):
            self._pose(batch.joint_positions[t], None if batch.gripper is None else batch.gripper[t])
            view = opengl_view(batch.T_base_cam[t])
            _, _, _, _, seg = self.client.getCameraImage(
                W, H, viewMatrix=view.T.ravel().tolist(), projectionMatrix=proj.T.ravel().tolist(),
                renderer=self.client.ER_TINY_RENDERER)
            out[t] = np.reshape(seg, (H, W)) == self.robot
        return out

    def _pose(self, q: np.ndarray, gripper: float | None) -> None:
        for j, angle in zip(self.arm, q[:_ARM_JOINTS]):
            self.client.resetJointState(self.robot, j, float(angle))
        opening = _FINGER_OPEN_M * (1.0 - float(np.clip(gripper if gripper is not None else 0, 0, 1)))
        for j in self.fingers:
            self.client.resetJointState(self.robot, j, opening)
