"""Geometry of the VLM SFT targets for gripper keyframes.

Conventions (DESIGN.md): metres; camera axes OpenCV (x right, y down, z forward);
``T_base_cam`` is camera-to-base, ``p_base = T_base_cam @ p_cam``; ``ee_pose`` (T, arms, 7) is the
TCP xyz + quaternion xyzw in the robot base frame; ``gripper`` (T, arms), 0 = open, 1 = closed;
``K`` is the 3x3 pinhole intrinsics (pixels) of the observation image.

Definitions
-----------
* Keyframe steps ``k_1 < ... < k_m`` (e.g. :func:`appf.transforms.keyframes.keyframes`).
  Record ``i`` (1-based) has **observation step** ``s = k_{i-1}`` (``s = 0`` for ``i = 1``) and
  **target step** ``k_i``. The observation image and ``T_base_cam`` are those of step ``s``.
* **Interaction point**: the TCP position of arm ``a`` at the target step ``k_i`` (base frame),
  expressed in the camera frame of the observation step: ``p_cam = inv(T_base_cam[s]) @ p_base``.
* ``anchor_uv`` = ``(u, v)`` with ``u = fx x/z + cx`` (column), ``v = fy y/z + cy`` (row), where
  ``(x, y, z) = p_cam`` (K's skew term ``K[0, 1]`` is honoured: ``u += K[0,1] y/z``).
  ``anchor_uvd`` = ``(u, v, z)`` with ``z`` the camera-frame depth in metres.
  If ``z == 0`` u and v are NaN. For ``z < 0`` the numbers are still the pinhole formula (so
  :func:`uvd_to_camera` inverts them) but ``in_view`` is False.
* ``in_view``: ``z > 0`` and ``-0.5 <= u < width - 0.5`` and ``-0.5 <= v < height - 0.5``.
  Pixel centres are at integer coordinates (as in :mod:`appf.transforms.geometry`), so the image
  spans ``[-0.5, width - 0.5)`` and ``round(u), round(v)`` is then a valid column / row index.
* ``waypoints_cam`` (n, 3): TCP positions (arm ``a``) at the ``n`` steps
  ``round_half_up(np.linspace(s, k_i, n + 1)[1:])`` (so the first is after ``s`` — when
  ``k_i - s >= n`` — and the last is exactly ``k_i``; steps repeat when ``k_i - s < n``), in the
  camera frame of the observation step. Those steps are stored in ``waypoint_steps``.
* ``target_pose_cam`` (7,): TCP pose of arm ``a`` at ``k_i`` in the observation camera frame,
  xyz (m) + quaternion xyzw of ``R_cam_tcp = R_base_cam^T R_base_tcp``, canonical sign (w >= 0)
  (``matrix_to_pose(invert_rigid(T_base_cam) @ pose_to_matrix(ee_pose[k_i, a]))``).
* ``gripper_command``: ``gripper[k_i, a]`` (the raw normalised value, 0 open .. 1 closed).
* Arm choice in :func:`keyframe_targets`: one-arm robots use arm 0. For several arms, the arms
  whose gripper changed at ``k_i`` (hysteresis events of
  :func:`appf.transforms.keyframes.gripper_events` with the given thresholds) each get a record,
  in arm order; a keyframe where no arm changed (e.g. the last frame) gets one record for arm 0.

Rigid transforms and projection come from :mod:`appf.transforms.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from appf.transforms.geometry import (
    invert_rigid,
    matrix_to_pose,
    pose_to_matrix,
    project,
    transform_points,
)
from appf.transforms.keyframes import gripper_events

__all__ = [
    "KeyframeTarget",
    "keyframe_target",
    "keyframe_targets",
    "uvd_to_camera",
    "waypoint_steps",
]


@dataclass(frozen=True)
class KeyframeTarget:
    """SFT geometry for one keyframe record (definitions in the module docstring).

    obs_step, target_step: frame indices; arm: arm index;
    anchor_uv (2,) px (u = column, v = row); anchor_uvd (3,) (u px, v px, depth m);
    waypoints_cam (n, 3) m, camera frame of obs_step; target_pose_cam (7,) xyz m + quat xyzw;
    gripper_command: gripper[target_step, arm]; in_view: anchor in front of camera and in image;
    waypoint_steps (n,) int64: the steps the waypoints were taken from.
    """

    obs_step: int
    target_step: int
    arm: int
    anchor_uv: np.ndarray
    anchor_uvd: np.ndarray
    waypoints_cam: np.ndarray
    target_pose_cam: np.ndarray
    gripper_command: float
    in_view: bool
    waypoint_steps: np.ndarray


# --- private validation helpers -------------------------------------------------------------


def _check_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K must be (3, 3), got {K.shape}")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K must have positive focal lengths (OpenCV), got fx={K[0, 0]}, fy={K[1, 1]}")
    return K


def _check_rigid(T: np.ndarray, name: str = "T_base_cam") -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be (4, 4), got {T.shape}")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-9):
        raise ValueError(f"{name} bottom row must be [0, 0, 0, 1], got {T[3].tolist()}")
    R = T[:3, :3]
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise ValueError(f"{name} rotation block is not a proper rotation")
    return T


def _project_one(p_cam: np.ndarray, K: np.ndarray) -> tuple[float, float, float]:
    """(u, v, z) of one camera-frame point; u = v = NaN when z == 0."""
    u, v, z = (float(c) for c in project(p_cam, K))
    if z == 0.0:
        return float("nan"), float("nan"), z
    return u, v, z


# --- public API -----------------------------------------------------------------------------


def uvd_to_camera(uvd: np.ndarray | Sequence[float], K: np.ndarray) -> np.ndarray:
    """Unproject ``(u px, v px, d m)`` to the camera-frame point (3,) in metres.

    Inverse of the projection in the module docstring: ``y = (v - cy) d / fy``,
    ``x = (u - cx - K[0,1] y / d) d / fx``, ``z = d``.
    """
    K = _check_K(K)
    u, v, d = (float(c) for c in np.asarray(uvd, dtype=np.float64).reshape(3))
    y = (v - K[1, 2]) * d / K[1, 1]
    x = ((u - K[0, 2]) * d - K[0, 1] * y) / K[0, 0]
    return np.array([x, y, d])


def waypoint_steps(obs_step: int, target_step: int, n_waypoints: int = 8) -> np.ndarray:
    """The ``n_waypoints`` steps ``round_half_up(linspace(obs, target, n + 1)[1:])`` (int64)."""
    if n_waypoints < 1:
        raise ValueError(f"n_waypoints must be >= 1, got {n_waypoints}")
    if target_step < obs_step:
        raise ValueError(f"target_step {target_step} < obs_step {obs_step}")
    x = np.linspace(obs_step, target_step, n_waypoints + 1)[1:]
    return np.floor(x + 0.5).astype(np.int64)


def _as_arms(ee_pose: np.ndarray, gripper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pose = np.asarray(ee_pose, dtype=np.float64)
    g = np.asarray(gripper, dtype=np.float64)
    if pose.ndim == 2:
        pose = pose[:, None, :]
    if g.ndim == 1:
        g = g[:, None]
    if pose.ndim != 3 or pose.shape[2] != 7:
        raise ValueError(f"ee_pose must be (T, arms, 7) or (T, 7), got {pose.shape}")
    if g.shape != pose.shape[:2]:
        raise ValueError(f"gripper must be {pose.shape[:2]} to match ee_pose, got {g.shape}")
    return pose, g


def keyframe_target(
    ee_pose: np.ndarray,
    gripper: np.ndarray,
    obs_step: int,
    target_step: int,
    arm: int,
    K: np.ndarray,
    T_base_cam: np.ndarray,
    height: int,
    width: int,
    n_waypoints: int = 8,
) -> KeyframeTarget:
    """SFT geometry of one record: ``ee_pose`` (T, arms, 7) base frame, ``gripper`` (T, arms),
    ``K`` (3, 3) px, ``T_base_cam`` (4, 4) camera-to-base at ``obs_step``, image ``height`` x
    ``width`` px. Definitions in the module docstring.
    """
    pose, g = _as_arms(ee_pose, gripper)
    K = _check_K(K)
    T_bc = _check_rigid(T_base_cam)
    T, arms = g.shape
    if not (0 <= arm < arms):
        raise ValueError(f"arm {arm} out of range for {arms} arm(s)")
    if not (0 <= obs_step <= target_step < T):
        raise ValueError(f"need 0 <= obs_step <= target_step < {T}, got {obs_step}, {target_step}")
    T_cb = invert_rigid(T_bc)

    target_pose = matrix_to_pose(T_cb @ pose_to_matrix(pose[target_step, arm]))
    p_cam = target_pose[:3]
    u, v, z = _project_one(p_cam, K)
    in_view = bool(z > 0 and -0.5 <= u < width - 0.5 and -0.5 <= v < height - 0.5)

    steps = waypoint_steps(obs_step, target_step, n_waypoints)
    wps = transform_points(T_cb, pose[steps, arm, :3])

    return KeyframeTarget(
        obs_step=int(obs_step),
        target_step=int(target_step),
        arm=int(arm),
        anchor_uv=np.array([u, v]),
        anchor_uvd=np.array([u, v, z]),
        waypoints_cam=wps,
        target_pose_cam=target_pose,
        gripper_command=float(g[target_step, arm]),
        in_view=in_view,
        waypoint_steps=steps,
    )


def keyframe_targets(
    ee_pose: np.ndarray,
    gripper: np.ndarray,
    keyframe_steps: np.ndarray | Sequence[int],
    K: np.ndarray,
    T_base_cam: np.ndarray,
    height: int,
    width: int,
    n_waypoints: int = 8,
    close_threshold: float = 0.6,
    open_threshold: float = 0.4,
) -> list[KeyframeTarget]:
    """Records for every keyframe (module docstring: observation step, arm choice).

    ``keyframe_steps`` strictly increasing in [0, T); ``T_base_cam`` (T, 4, 4) per step or (4, 4)
    fixed; the thresholds are used only to find which arm changed at a keyframe (2+ arms).
    """
    pose, g = _as_arms(ee_pose, gripper)
    T, arms = g.shape
    ks = np.asarray(keyframe_steps, dtype=np.int64).reshape(-1)
    if ks.size and (ks.min() < 0 or ks.max() >= T):
        raise ValueError(f"keyframe steps must lie in [0, {T}), got {ks.tolist()}")
    if np.any(np.diff(ks) <= 0):
        raise ValueError(f"keyframe steps must be strictly increasing, got {ks.tolist()}")
    Tbc = np.asarray(T_base_cam, dtype=np.float64)
    if Tbc.shape == (4, 4):
        per_step = False
    elif Tbc.shape == (T, 4, 4):
        per_step = True
    else:
        raise ValueError(f"T_base_cam must be (4, 4) or ({T}, 4, 4), got {Tbc.shape}")

    changed: dict[int, list[int]] = {}
    if arms > 1:
        for a in range(arms):
            for e in gripper_events(g[:, a], close_threshold, open_threshold, arm=a):
                changed.setdefault(e.step, []).append(a)

    out: list[KeyframeTarget] = []
    prev = 0
    for k in ks.tolist():
        arm_list = sorted(changed.get(k, [])) or [0]
        cam = Tbc[prev] if per_step else Tbc
        for a in arm_list:
            out.append(
                keyframe_target(pose, g, prev, k, a, K, cam, height, width, n_waypoints)
            )
        prev = k
    return out
