"""Shared conversions of the simulator-release readers (robotwin, calvin, rlbench, maniskill):
world -> robot-base frame, camera-axis conventions, quaternion order, segment tables, JPEG
frames stored in HDF5. Unit and axis conversions only (DESIGN §1).

Axis conventions (formats-sim.md §0), camera-to-world 4x4 on the left:
  OpenGL (x right, y up, looks along -z)   -> OpenCV: T @ diag(1, -1, -1, 1)
  CoppeliaSim / PyRep (negative focal)     -> OpenCV: T @ diag(-1, -1, 1, 1), K @ diag(-1, -1, 1)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from appf.pipelines.sources._real_io import continuous_quats
from appf.schemas import LazyFrames, Segment, SegmentCategory, SourceError
from appf.transforms.geometry import invert_rigid, matrix_to_pose, pose_to_matrix

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
PYREP_TO_CV = np.diag([-1.0, -1.0, 1.0, 1.0])


def pose_option(value: Any, name: str) -> np.ndarray:
    """A pose given in source options: a 4x4 matrix or [x, y, z, qx, qy, qz, qw] (m, xyzw)."""
    a = np.asarray(value, dtype=np.float64)
    if a.shape == (4, 4):
        if not np.allclose(a[3], [0, 0, 0, 1]) or not np.allclose(a[:3, :3] @ a[:3, :3].T, np.eye(3), atol=1e-6):
            raise SourceError(f"{name} must be a rigid 4x4 transform (orthonormal rotation, last row "
                              f"0 0 0 1), got {a.tolist()}", field=name)
        return a
    if a.shape == (7,):
        return pose_to_matrix(a)
    raise SourceError(f"{name} must be a 4x4 matrix or [x, y, z, qx, qy, qz, qw], got shape {a.shape}",
                      field=name)


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    return np.concatenate([q[..., 1:4], q[..., :1]], axis=-1)


def world_pose7_to_base(T_world_base: np.ndarray, pose7_world: np.ndarray) -> np.ndarray:
    """(..., 7) xyz + xyzw poses in the world frame -> the robot-base frame (xyzw, continuous
    along axis 0)."""
    T = invert_rigid(T_world_base) @ pose_to_matrix(pose7_world)
    out = matrix_to_pose(T)
    out[..., 3:] = continuous_quats(out[..., 3:])
    return out


def world_cam_to_base(T_world_base: np.ndarray, T_world_cam_cv: np.ndarray) -> np.ndarray:
    """Camera-to-world (OpenCV axes, (4, 4) or (T, 4, 4)) -> camera-to-base."""
    return invert_rigid(T_world_base) @ np.asarray(T_world_cam_cv, dtype=np.float64)


def constant_or_none(a: np.ndarray, atol: float) -> np.ndarray | None:
    """a[0] when every row equals it within atol, else None."""
    a = np.asarray(a, dtype=np.float64)
    return a[0] if np.allclose(a, a[0], atol=atol) else None


def fixed_intrinsics(K_per_frame: np.ndarray, path: Path, episode_id: str, field: str) -> np.ndarray:
    """One K for the episode; the streams carry a single K, so a K that changes is an error."""
    K = constant_or_none(K_per_frame, atol=1e-6)
    if K is None:
        raise SourceError("intrinsics change within the episode (zoom is not supported)",
                          path=str(path), episode_id=episode_id, field=field)
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SourceError(f"intrinsics must be a 3x3 K with positive focal lengths, found {K.tolist()}",
                          path=str(path), episode_id=episode_id, field=field)
    return K


def segments_from_ids(ids: Mapping[str, Sequence[int]] | None, field: str) -> tuple[Segment, ...]:
    """The id table from a source option {"robot": [...], "task_object": [...],
    "background": [...]}: simulator releases store ids but not what they are."""
    if not ids:
        return ()
    out = []
    for key, values in ids.items():
        try:
            category = SegmentCategory(key)
        except ValueError as e:
            raise SourceError(f"segment category {key!r} unknown; use robot, task_object or background",
                              field=field) from e
        out += [Segment(int(i), f"{key}_{int(i)}", category) for i in values]
    return tuple(out)


class JpegColumn:
    """Picklable loader of JPEG frames stored as a fixed-length bytes HDF5 dataset (RoboTwin).

    RoboTwin encodes RGB arrays with cv2.imencode (which takes them as BGR), so cv2.imdecode
    returns RGB as stored: no channel swap (formats-sim.md §2.2)."""

    def __init__(self, path: Path, key: str, hw: tuple[int, int], episode_id: str):
        self.path, self.key, self.hw, self.episode_id = path, key, hw, episode_id
        self._file: Any = None  # opened on first use, kept for the next batches, never pickled

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None}

    def _decode(self, blob: bytes, index: int) -> np.ndarray:
        import cv2

        img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != self.hw:
            raise SourceError(f"frame {index}: JPEG does not decode to {self.hw} RGB"
                              + ("" if img is None else f" (got {img.shape})"),
                              path=str(self.path), episode_id=self.episode_id, field=self.key)
        return img

    def __call__(self, start: int, stop: int) -> np.ndarray:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        blobs = self._file[self.key][start:stop]
        if stop >= len(self._file[self.key]):
            self._file.close()  # the last batch: do not hold the file open
            self._file = None
        return np.stack([self._decode(bytes(b), start + i) for i, b in enumerate(blobs)])


def lazy_jpegs(f: Any, path: Path, key: str, n: int, episode_id: str) -> LazyFrames:
    """LazyFrames over the first n JPEG frames of dataset `key` of an open h5py file."""
    if key not in f:
        raise SourceError("RGB dataset missing", path=str(path), episode_id=episode_id, field=key)
    if len(f[key]) < n:
        raise SourceError(f"{len(f[key])} RGB frames for {n} steps", path=str(path),
                          episode_id=episode_id, field=key)
    import cv2

    first = cv2.imdecode(np.frombuffer(bytes(f[key][0]), np.uint8), cv2.IMREAD_COLOR)
    if first is None:
        raise SourceError("frame 0: not a decodable JPEG", path=str(path), episode_id=episode_id, field=key)
    loader = JpegColumn(path, key, first.shape[:2], episode_id)
    return LazyFrames((n, *first.shape), np.dtype(np.uint8), loader, f"{path}:{key}")


def next_step_targets(pose7: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """action[t] = (pose7[t + 1], gripper[t + 1]) flattened over arms; the last step repeats its
    own state. pose7 (T, arms, 7), gripper (T, arms) -> (T, arms * 8)."""
    nxt = np.concatenate([pose7[1:], pose7[-1:]], axis=0)
    g = np.concatenate([gripper[1:], gripper[-1:]], axis=0)
    return np.concatenate([nxt, g[..., None]], axis=-1).reshape(len(pose7), -1)


NEXT_TARGET_ACTION = (
    "action[t] (8 x arms) = absolute target for the next step, per arm: TCP xyz (m, base frame) + "
    "quaternion xyzw of ee_pose[t + 1], then gripper[t + 1] (0 = open, 1 = closed); the last step "
    "repeats its own state")
