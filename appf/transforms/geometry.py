"""Camera and rigid-body geometry (pure numpy, no I/O).

Conventions (DESIGN.md): metres; OpenCV camera axes (x right, y down, z forward); quaternions
scalar-last ``xyzw``; ``T_base_cam`` maps camera to base, ``p_base = T @ p_cam``.
Pixel convention: pixel (u = column, v = row) has its centre at the integer coordinates (u, v),
so a point (x, y, z) projects to ``u = fx * x / z + cx`` and ``v = fy * y / z + cy``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "unproject",
    "project",
    "transform_points",
    "invert_rigid",
    "make_rigid",
    "pose_to_matrix",
    "matrix_to_pose",
    "quat_to_matrix",
    "matrix_to_quat",
    "resize_intrinsics",
    "crop_intrinsics",
]


def _check_K(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K)
    if K.shape != (3, 3):
        raise ValueError(f"intrinsics K must have shape (3, 3), got {K.shape}")
    return K


def unproject(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Back-project a depth image (H, W) in metres to camera-frame points (H, W, 3), metres.

    ``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``, ``z = depth``; invalid depth (0) gives the
    point (0, 0, 0). The output dtype follows ``depth_m`` (float32 stays float32).
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    K = _check_K(K)
    dtype = depth.dtype if np.issubdtype(depth.dtype, np.floating) else np.float64
    depth = depth.astype(dtype, copy=False)
    h, w = depth.shape
    fx, fy, cx, cy, skew = K[0, 0], K[1, 1], K[0, 2], K[1, 2], K[0, 1]
    ys = ((np.arange(h, dtype=np.float64) - cy) / fy).astype(dtype)
    xs = ((np.arange(w, dtype=np.float64) - cx) / fx).astype(dtype)
    out = np.empty((h, w, 3), dtype=dtype)
    out[..., 1] = ys[:, None] * depth
    if skew != 0.0:  # u = fx*x/z + s*y/z + cx  =>  x/z = (u - cx - s*y/z) / fx
        ratio_x = xs[None, :] - (skew / fx) * ys[:, None]
        out[..., 0] = ratio_x * depth
    else:
        out[..., 0] = xs[None, :] * depth
    out[..., 2] = depth
    return out


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project camera-frame points (..., 3) in metres to pixels: returns (u, v, depth), each (...).

    Points with z <= 0 give non-finite or meaningless (u, v); filter on ``depth > 0``.
    """
    p = np.asarray(points_cam)
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {p.shape}")
    K = _check_K(K)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xn, yn = x / z, y / z
    u = K[0, 0] * xn + K[0, 1] * yn + K[0, 2]
    v = K[1, 1] * yn + K[1, 2]
    return u, v, z


def transform_points(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points (..., 3): ``p' = R p + t``. Keeps float32 if both are."""
    T = np.asarray(T)
    p = np.asarray(points)
    if T.shape != (4, 4):
        raise ValueError(f"T must have shape (4, 4), got {T.shape}")
    if p.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {p.shape}")
    dtype = np.result_type(p.dtype, np.float32)
    if dtype == np.float32:
        T = T.astype(np.float32)
    return p @ T[:3, :3].T + T[:3, 3]


def make_rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a 4x4 (float64) rigid transform from a 3x3 rotation and a translation (3,) in metres."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if R.shape != (3, 3) or t.shape != (3,):
        raise ValueError(f"R must be (3, 3) and t (3,), got {R.shape} and {t.shape}")
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def invert_rigid(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transform(s) (..., 4, 4): ``[R^T, -R^T t]`` (exact, no general inverse)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"T must have shape (..., 4, 4), got {T.shape}")
    Rt = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


# Quaternion <-> matrix here rather than scipy's Rotation: importing scipy.spatial.transform loads
# all of scipy.spatial (qhull, kd-trees, distances), 0.17 s of every worker process's start-up for
# two closed-form conversions. tests/test_geometry.py checks both against scipy.
def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """Quaternions (n, 4) xyzw (normalised here) -> rotation matrices (n, 3, 3)."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    if not (norm > 0).all() or not np.isfinite(norm).all():
        raise ValueError("quaternions must be finite and non-zero")
    x, y, z, w = (q / norm).T
    return np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=1).reshape(-1, 3, 3)


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) -> unit quaternions (n, 4) xyzw with w >= 0. Per matrix, the
    largest of (R00, R11, R22, trace) picks the numerically stable formula (as scipy does)."""
    m = np.asarray(R, dtype=np.float64)
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]], axis=1)
    trace = diag.sum(axis=1)
    choice = np.argmax(np.concatenate([diag, trace[:, None]], axis=1), axis=1)
    q = np.empty((m.shape[0], 4))
    for i in range(3):  # x, y or z is the largest component
        sel = choice == i
        j, k = (i + 1) % 3, (i + 2) % 3
        mi = m[sel]
        q[sel, i] = 1 - trace[sel] + 2 * mi[:, i, i]
        q[sel, j] = mi[:, j, i] + mi[:, i, j]
        q[sel, k] = mi[:, k, i] + mi[:, i, k]
        q[sel, 3] = mi[:, k, j] - mi[:, j, k]
    sel = choice == 3  # w is the largest
    ms = m[sel]
    q[sel, 0] = ms[:, 2, 1] - ms[:, 1, 2]
    q[sel, 1] = ms[:, 0, 2] - ms[:, 2, 0]
    q[sel, 2] = ms[:, 1, 0] - ms[:, 0, 1]
    q[sel, 3] = 1 + trace[sel]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    wxyz = q[:, [3, 0, 1, 2]]  # canonical sign: the first non-zero of w, x, y, z is positive
    lead = wxyz[np.arange(len(q)), np.argmax(wxyz != 0, axis=1)]
    return np.where(lead[:, None] < 0, -q, q)


def pose_to_matrix(pose: np.ndarray) -> np.ndarray:
    """Poses (..., 7) = xyz (m) + quaternion xyzw -> 4x4 matrices (..., 4, 4). Normalises the quaternion."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape[-1] != 7:
        raise ValueError(f"pose must have shape (..., 7) [x y z qx qy qz qw], got {pose.shape}")
    flat = pose.reshape(-1, 7)
    T = np.zeros((flat.shape[0], 4, 4))
    T[:, :3, :3] = quat_to_matrix(flat[:, 3:])
    T[:, :3, 3] = flat[:, :3]
    T[:, 3, 3] = 1.0
    return T.reshape(pose.shape[:-1] + (4, 4))


def matrix_to_pose(T: np.ndarray) -> np.ndarray:
    """4x4 matrices (..., 4, 4) -> poses (..., 7) = xyz (m) + quaternion xyzw with qw >= 0."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape[-2:] != (4, 4):
        raise ValueError(f"T must have shape (..., 4, 4), got {T.shape}")
    flat = T.reshape(-1, 4, 4)
    q = matrix_to_quat(flat[:, :3, :3])
    out = np.concatenate([flat[:, :3, 3], q], axis=1)
    return out.reshape(T.shape[:-2] + (7,))


def resize_intrinsics(
    K: np.ndarray, from_hw: tuple[int, int], to_hw: tuple[int, int]
) -> np.ndarray:
    """Intrinsics after resizing the whole image from (H, W) to (H', W') (e.g. cv2.resize).

    With pixel centres at integer coordinates, pixel edges are at -0.5 and W - 0.5, so
    ``u' = (u + 0.5) * W'/W - 0.5``: fx' = fx*sx, cx' = (cx + 0.5)*sx - 0.5 (same for y; skew*sx).
    """
    K = _check_K(K).astype(np.float64)
    sy = to_hw[0] / from_hw[0]
    sx = to_hw[1] / from_hw[1]
    out = K.copy()
    out[0, 0] = K[0, 0] * sx
    out[0, 1] = K[0, 1] * sx
    out[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    out[1, 1] = K[1, 1] * sy
    out[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return out


def crop_intrinsics(K: np.ndarray, top: int | float, left: int | float) -> np.ndarray:
    """Intrinsics after cropping an image to start at row ``top``, column ``left`` (pixels)."""
    out = _check_K(K).astype(np.float64).copy()
    out[0, 2] -= left
    out[1, 2] -= top
    return out
