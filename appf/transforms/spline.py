"""Guidance trajectory: a smooth pose curve through sparse keyframe waypoints.

Units: times in seconds, positions in metres, orientations as unit quaternions **xyzw**
(scalar last). Poses are 7-vectors ``xyz + quat xyzw`` in whatever frame the waypoints are in
(normally the robot base frame, DESIGN.md §2).

* Positions: cubic interpolating B-spline, ``make_interp_spline(k=3, bc_type='clamped')``
  (zero velocity at both ends; works for 2 and 3 waypoints too); 1 waypoint -> constant.
* Orientation: ``scipy.spatial.transform.RotationSpline`` (cubic in rotation vectors, continuous
  angular rate; each segment takes the shortest rotation between its waypoints); 1 waypoint ->
  constant.
* Query times are clipped to ``[t0, tK]`` (the pose is held before the first / after the last
  waypoint).
* Duplicate times: waypoints whose time equals an earlier waypoint's time are dropped; the
  **first** occurrence is kept. Times must be non-decreasing; after de-duplication they are
  strictly increasing.
* Quaternion sign of the output: the waypoint quaternions are first normalised and made
  sign-consistent (each flipped if its dot product with the previous one is negative); an output
  quaternion is given the sign of the waypoint at the start of its segment. So at a waypoint time
  the output equals that (sign-consistent) waypoint quaternion, and the output is continuous in t
  for segments that rotate less than 180 degrees.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.interpolate import make_interp_spline
from scipy.spatial.transform import Rotation, RotationSpline

__all__ = ["GuidanceSpline", "waypoints_from_keyframes", "sample_guidance"]


def _unit_quats(quats: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(quats, axis=-1, keepdims=True)
    if np.any(n < 1e-12):
        raise ValueError("quaternions must have non-zero norm")
    return quats / n


def _sign_consistent(quats: np.ndarray) -> np.ndarray:
    q = quats.copy()
    for i in range(1, len(q)):
        if np.dot(q[i], q[i - 1]) < 0.0:
            q[i] = -q[i]
    return q


class GuidanceSpline:
    """Pose curve through waypoints ``(times (K,) s, positions (K,3) m, quats_xyzw (K,4))``.

    Call with a float or an array of times (s) of shape ``S``: returns ``S + (7,)`` poses
    (xyz m + unit quat xyzw). See the module docstring for interpolation, clipping, duplicate
    times and quaternion sign.
    """

    def __init__(
        self,
        times: np.ndarray | Sequence[float],
        positions: np.ndarray | Sequence[Sequence[float]],
        quats_xyzw: np.ndarray | Sequence[Sequence[float]],
    ) -> None:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        p = np.asarray(positions, dtype=np.float64)
        q = np.asarray(quats_xyzw, dtype=np.float64)
        if t.size == 0:
            raise ValueError("GuidanceSpline needs at least one waypoint")
        if p.shape != (t.size, 3):
            raise ValueError(f"positions must be ({t.size}, 3), got {p.shape}")
        if q.shape != (t.size, 4):
            raise ValueError(f"quats_xyzw must be ({t.size}, 4), got {q.shape}")
        for name, arr in (("times", t), ("positions", p), ("quats_xyzw", q)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains non-finite values")
        dt = np.diff(t)
        if np.any(dt < 0):
            i = int(np.flatnonzero(dt < 0)[0])
            raise ValueError(
                f"times must be non-decreasing: times[{i + 1}]={t[i + 1]} < times[{i}]={t[i]}"
            )
        keep = np.concatenate([[True], dt > 0])  # first of each run of equal times
        self.times: np.ndarray = t[keep]
        self.positions: np.ndarray = p[keep]
        self.quats_xyzw: np.ndarray = _sign_consistent(_unit_quats(q[keep]))
        self.num_dropped: int = int((~keep).sum())
        K = self.times.size
        if K >= 2:
            self._pos = make_interp_spline(self.times, self.positions, k=3, bc_type="clamped")
            self._rot = RotationSpline(self.times, Rotation.from_quat(self.quats_xyzw))
        else:
            self._pos = None
            self._rot = None

    @property
    def t0(self) -> float:
        """Time of the first waypoint (s)."""
        return float(self.times[0])

    @property
    def t1(self) -> float:
        """Time of the last waypoint (s)."""
        return float(self.times[-1])

    def __len__(self) -> int:
        return int(self.times.size)

    def __call__(self, t: float | np.ndarray) -> np.ndarray:
        """Pose(s) at time(s) ``t`` (s), clipped to [t0, tK]: shape ``np.shape(t) + (7,)``."""
        ta = np.asarray(t, dtype=np.float64)
        if not np.all(np.isfinite(ta)):
            raise ValueError("query times must be finite")
        shape = ta.shape
        tf = np.clip(ta.reshape(-1), self.t0, self.t1)
        n = tf.size
        if self._pos is None:
            pos = np.broadcast_to(self.positions[0], (n, 3))
            quat = np.broadcast_to(self.quats_xyzw[0], (n, 4))
        else:
            pos = self._pos(tf)
            quat = np.atleast_2d(self._rot(tf).as_quat())
            seg = np.clip(np.searchsorted(self.times, tf, side="right") - 1, 0, len(self) - 1)
            ref = self.quats_xyzw[seg]
            flip = np.sum(quat * ref, axis=1) < 0.0
            quat = np.where(flip[:, None], -quat, quat)
            quat = quat / np.linalg.norm(quat, axis=1, keepdims=True)
        out = np.concatenate([pos, quat], axis=1)
        return out.reshape(shape + (7,))


def waypoints_from_keyframes(
    ee_pose: np.ndarray,
    timestamps: np.ndarray,
    keyframe_steps: np.ndarray | Sequence[int],
    include_start: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Waypoints (times (K,) s, positions (K,3) m, quats_xyzw (K,4)) for a :class:`GuidanceSpline`.

    ``ee_pose`` (T, 7) is one arm's TCP pose (xyz + quat xyzw, base frame; pass
    ``ee_pose[:, arm]`` for a multi-arm episode); ``timestamps`` (T,) s. The waypoint steps are
    the sorted unique union of ``keyframe_steps`` and, if ``include_start``, step 0.
    Steps outside [0, T) raise ``ValueError``. Equal timestamps are left to GuidanceSpline
    (keeps the first).
    """
    pose = np.asarray(ee_pose, dtype=np.float64)
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if pose.ndim != 2 or pose.shape[1] != 7:
        raise ValueError(f"ee_pose must be (T, 7) for one arm, got {pose.shape}")
    T = pose.shape[0]
    if ts.shape != (T,):
        raise ValueError(f"timestamps must be ({T},), got {ts.shape}")
    steps = np.asarray(keyframe_steps, dtype=np.int64).reshape(-1)
    if steps.size and (steps.min() < 0 or steps.max() >= T):
        raise ValueError(f"keyframe steps must lie in [0, {T}), got {steps.tolist()}")
    if include_start and T > 0:
        steps = np.concatenate([[0], steps])
    steps = np.unique(steps)
    if steps.size == 0:
        raise ValueError("no waypoint steps (empty keyframes and include_start=False)")
    return ts[steps].copy(), pose[steps, :3].copy(), pose[steps, 3:7].copy()


def sample_guidance(
    spline: GuidanceSpline,
    times: float | np.ndarray,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
    scale: float | np.ndarray | Sequence[float] | None = None,
) -> np.ndarray:
    """Guidance poses ``spline(times)`` (shape ``np.shape(times) + (7,)``) with optional noise.

    Noise is drawn independently for every query time:

    * position: ``xyz += noise_std * scale[:3] * N(0, 1)`` (metres);
    * rotation (only if ``scale`` has 6 entries): a rotation vector
      ``noise_std * scale[3:6] * N(0, 1)`` (radians, base-frame axes) is applied on the left,
      ``R_noisy = R_noise * R``; the quaternion keeps the sign of the clean one.

    ``scale``: None -> ``(1, 1, 1)`` metres and no rotation noise (so ``noise_std`` is in metres);
    a scalar -> that value on x, y, z; shape (3,) -> per-axis metres; shape (6,) -> per-axis
    metres then per-axis radians. Noise in the training module's normalised units is converted
    there (e.g. ``scale`` = half the per-channel range for [-1, 1] normalisation).
    ``noise_std == 0`` returns the exact spline poses and draws nothing. ``rng`` defaults to
    ``np.random.default_rng()`` (not reproducible; pass one for determinism).
    """
    clean = spline(times)
    if noise_std < 0 or not np.isfinite(noise_std):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    if noise_std == 0.0:
        return clean
    if scale is None:
        sc = np.array([1.0, 1.0, 1.0])
    else:
        sc = np.asarray(scale, dtype=np.float64).reshape(-1)
        if sc.size == 1:
            sc = np.repeat(sc, 3)
        if sc.size not in (3, 6):
            raise ValueError(f"scale must be a scalar or have 3 or 6 entries, got {sc.size}")
    rng = np.random.default_rng() if rng is None else rng
    flat = clean.reshape(-1, 7).copy()
    n = flat.shape[0]
    flat[:, :3] += noise_std * sc[:3] * rng.standard_normal((n, 3))
    if sc.size == 6 and np.any(sc[3:] != 0):
        rotvec = noise_std * sc[3:] * rng.standard_normal((n, 3))
        q = (Rotation.from_rotvec(rotvec) * Rotation.from_quat(flat[:, 3:7])).as_quat()
        q = np.atleast_2d(q)
        flip = np.sum(q * flat[:, 3:7], axis=1) < 0.0
        flat[:, 3:7] = np.where(flip[:, None], -q, q)
    return flat.reshape(clean.shape)
