"""Episode validation: collect every problem, then raise one error naming them all."""

from __future__ import annotations

import numpy as np

from appf.schemas.episode import CameraStream, Episode, LazyFrames
from appf.schemas.errors import EpisodeValidationError, Problem

_QUAT_NORM_TOL = 1e-3
_GRIPPER_TOL = 1e-3


def _shape(a) -> tuple[int, ...] | None:
    return None if a is None else tuple(np.shape(a)) if not isinstance(a, LazyFrames) else a.shape


def _finite_problem(name: str, a, problems: list[Problem]) -> None:
    """Report NaN/inf in an eagerly loaded array (lazy frames are checked where decoded)."""
    if isinstance(a, np.ndarray) and a.size and np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            problems.append(
                Problem(name, "finite values", f"{int(bad.sum())} NaN/inf value(s), first at {first}")
            )


def _check_steps(ep: Episode, problems: list[Problem]) -> int:
    s = ep.steps
    T = len(s)
    arms = ep.robot.arm_count
    if T == 0:
        problems.append(Problem("steps", "at least 1 step", "an empty episode (0 steps)"))
    ts = np.asarray(s.timestamp)
    if ts.ndim != 1:
        problems.append(Problem("steps.timestamp", "shape (T,)", str(ts.shape)))
    elif T > 1 and np.any(np.diff(ts) < 0):
        problems.append(Problem("steps.timestamp", "non-decreasing seconds", "time going backwards"))
    expected = {
        "steps.ee_pose": (T, arms, 7),
        "steps.gripper": (T, arms),
    }
    for name, shp in expected.items():
        found = _shape(getattr(s, name.split(".")[1]))
        if found != shp:
            problems.append(Problem(name, f"shape {shp}", f"shape {found}"))
    for name in ("joint_positions", "action"):
        a = np.asarray(getattr(s, name))
        if a.ndim != 2 or a.shape[0] != T:
            problems.append(Problem(f"steps.{name}", f"shape ({T}, D)", f"shape {a.shape}"))
    for name in ("timestamp", "ee_pose", "gripper", "joint_positions", "action"):
        _finite_problem(f"steps.{name}", np.asarray(getattr(s, name)), problems)
    if _shape(s.ee_pose) == (T, arms, 7) and T:
        norms = np.linalg.norm(np.asarray(s.ee_pose)[..., 3:], axis=-1)
        if np.isfinite(norms).all() and np.any(np.abs(norms - 1) > _QUAT_NORM_TOL):
            problems.append(
                Problem("steps.ee_pose[..., 3:7]", "unit quaternions (xyzw)",
                        f"norms in [{norms.min():.4f}, {norms.max():.4f}]")
            )
    g = np.asarray(s.gripper, dtype=np.float64)
    if g.size and np.isfinite(g).all() and (g.min() < -_GRIPPER_TOL or g.max() > 1 + _GRIPPER_TOL):
        problems.append(
            Problem("steps.gripper", "values in [0, 1] (0 = open, 1 = closed)",
                    f"range [{g.min():.3f}, {g.max():.3f}]")
        )
    return T


def _check_rigid(name: str, T_base_cam, T: int, problems: list[Problem]) -> None:
    M = np.asarray(T_base_cam, dtype=np.float64)
    if M.shape not in ((4, 4), (T, 4, 4)):
        problems.append(Problem(name, f"shape (4, 4) or ({T}, 4, 4)", f"shape {M.shape}"))
        return
    if not np.isfinite(M).all():
        problems.append(Problem(name, "finite values", "NaN/inf"))
        return
    R = M[..., :3, :3]
    err = np.abs(np.swapaxes(R, -1, -2) @ R - np.eye(3)).max()
    if err > 1e-4 or np.any(np.abs(M[..., 3, :] - [0, 0, 0, 1]) > 1e-9):
        problems.append(Problem(name, "a rigid transform (orthonormal R, last row 0 0 0 1)",
                                f"orthonormality error {err:.2e}"))


def _check_camera(cam: CameraStream, T: int, problems: list[Problem]) -> None:
    p = f"cameras[{cam.name!r}]"
    rgb = _shape(cam.rgb)
    if rgb is None or len(rgb) != 4 or rgb[0] != T or rgb[3] != 3:
        problems.append(Problem(f"{p}.rgb", f"shape ({T}, H, W, 3) uint8", f"shape {rgb}"))
        return
    if np.dtype(cam.rgb.dtype) != np.uint8:
        problems.append(Problem(f"{p}.rgb", "dtype uint8", f"dtype {cam.rgb.dtype}"))
    H, W = rgb[1], rgb[2]
    if cam.intrinsics is None:
        if not cam.intrinsics_unknown:
            problems.append(Problem(
                f"{p}.intrinsics", "a 3x3 K in pixels (or intrinsics_unknown=True for a source "
                "without calibration, so that the depth stage estimates K)", "missing"))
    else:
        K = np.asarray(cam.intrinsics, dtype=np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            problems.append(Problem(f"{p}.intrinsics", "3x3 K with fx, fy > 0", f"{K.tolist()}"))
    if cam.T_base_cam is None:
        if not cam.extrinsics_unknown:
            problems.append(Problem(
                f"{p}.T_base_cam", "camera-to-base 4x4 extrinsics (or extrinsics_unknown=True for "
                "a source without calibration)", "missing"))
    else:
        _check_rigid(f"{p}.T_base_cam", cam.T_base_cam, T, problems)
    for name, arr, want in (
        ("rgb_right", cam.rgb_right, (T, H, W, 3)),
        ("depth", cam.depth, (T, H, W)),
        ("segmentation", cam.segmentation, (T, H, W)),
    ):
        found = _shape(arr)
        if found is not None and found != want:
            problems.append(Problem(f"{p}.{name}", f"shape {want}", f"shape {found}"))
    if cam.rgb_right is not None and not (cam.baseline_m and cam.baseline_m > 0):
        problems.append(Problem(f"{p}.baseline_m", "stereo baseline > 0 m", str(cam.baseline_m)))
    if isinstance(cam.depth, np.ndarray):
        _finite_problem(f"{p}.depth", cam.depth, problems)
        if cam.depth.size and np.nanmin(np.where(np.isfinite(cam.depth), cam.depth, 0)) < 0:
            problems.append(Problem(f"{p}.depth", "metres >= 0 (0 = invalid)", "negative depth"))
    if cam.segmentation is not None and not cam.segments:
        problems.append(Problem(f"{p}.segments", "an id table for the segmentation", "empty"))


def validate_episode(ep: Episode) -> list[Problem]:
    """Return every problem found in `ep` (empty when valid)."""
    problems: list[Problem] = []
    if not ep.episode_id:
        problems.append(Problem("episode_id", "a non-empty stable id", repr(ep.episode_id)))
    if not ep.control_hz or ep.control_hz <= 0:
        problems.append(Problem("control_hz", "> 0", str(ep.control_hz)))
    if ep.robot.arm_count < 1:
        problems.append(Problem("robot.arm_count", ">= 1", str(ep.robot.arm_count)))
    T = _check_steps(ep, problems)
    if not ep.cameras:
        problems.append(Problem("cameras", "at least one camera", "none"))
    for cam in ep.cameras.values():
        _check_camera(cam, T, problems)
    return problems


def check_episode(ep: Episode) -> Episode:
    """Raise `EpisodeValidationError` listing every problem, or return the episode."""
    problems = validate_episode(ep)
    if problems:
        raise EpisodeValidationError(ep.dataset, ep.episode_id, problems)
    return ep
