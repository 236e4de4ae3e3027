"""Guidance poses: the pose on the B-spline through an episode's keyframe waypoints.

For a training window the guidance is the pose of every arm at the time of the window's last
step (``horizon - 1``, edge-padded), on the spline through that arm's TCP poses at step 0 and at
the episode's keyframes (:mod:`appf.transforms.spline`). It is a (arms x 7) vector: xyz (m) and
quaternion xyzw in the base frame, its quaternion in the hemisphere of the state's quaternion at
the current (last observed) step (:func:`align_quaternion_signs`). In training, Gaussian noise of
``std`` normalised units is added to every channel of the normalised guidance (``std`` 0.1 = 5 %
of a channel's range under [-1, 1] normalisation); the quaternion channels are a conditioning
feature, not re-normalised.
"""

from __future__ import annotations

import numpy as np
import torch

from appf.transforms.spline import GuidanceSpline, sample_guidance, waypoints_from_keyframes


def episode_splines(ee_pose: np.ndarray, timestamps: np.ndarray,
                    keyframe: np.ndarray) -> list[GuidanceSpline]:
    """One spline per arm through step 0 and the keyframe steps of one episode.

    ``ee_pose`` (L, arms, 7), ``timestamps`` (L,) s, ``keyframe`` (L,) 0/1 mask."""
    steps = np.flatnonzero(np.asarray(keyframe) > 0)
    splines = []
    for arm in range(ee_pose.shape[1]):
        times, pos, quat = waypoints_from_keyframes(ee_pose[:, arm], timestamps, steps)
        splines.append(GuidanceSpline(times, pos, quat))
    return splines


def guidance_at(splines: list[GuidanceSpline], times: np.ndarray | float) -> np.ndarray:
    """Clean guidance of every arm at ``times`` (s): shape ``np.shape(times) + (arms * 7,)``."""
    per_arm = [sample_guidance(s, times, noise_std=0.0) for s in splines]
    return np.concatenate(per_arm, axis=-1)


def window_guidance(ee_pose: np.ndarray, timestamps: np.ndarray, keyframe: np.ndarray,
                    episode_starts: np.ndarray, episode_ends: np.ndarray,
                    frames: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """Clean guidance (W, arms * 7) for windows ``frames`` (W, horizon) of ``episodes`` (W,),
    at the time of each window's last frame. Arrays are global (all shards concatenated)."""
    out = np.empty((frames.shape[0], 7 * ee_pose.shape[1]), dtype=np.float64)
    for e in np.unique(episodes):
        s, t = int(episode_starts[e]), int(episode_ends[e])
        splines = episode_splines(ee_pose[s:t], timestamps[s:t], keyframe[s:t])
        sel = np.flatnonzero(episodes == e)
        out[sel] = guidance_at(splines, timestamps[frames[sel, -1]])
    return out


def align_quaternion_signs(guidance: np.ndarray, state: np.ndarray) -> np.ndarray:
    """``guidance`` (..., 7 x arms) with each arm's quaternion flipped, where needed, into the
    hemisphere of that arm's quaternion in ``state`` (..., 8 x arms: xyz, quat xyzw, gripper).

    q and -q are the same rotation, but the normalised network input is not: the quaternion of a
    top-down gripper has w near 0, so a canonical (w >= 0) pose can land on the far side of the
    range the expert was trained on. Training windows are aligned with the current state like
    this, and :meth:`ExpertPolicy.predict` aligns the caller's guidance the same way."""
    g = np.asarray(guidance)
    st = np.asarray(state)
    arms = g.shape[-1] // 7
    shape = np.broadcast_shapes(g.shape[:-1], st.shape[:-1]) + (g.shape[-1],)
    out = np.array(np.broadcast_to(g, shape))
    for a in range(arms):
        q = out[..., 7 * a + 3: 7 * a + 7]
        flip = np.sum(q * st[..., 8 * a + 3: 8 * a + 7], axis=-1) < 0
        out[..., 7 * a + 3: 7 * a + 7] = np.where(flip[..., None], -q, q)
    return out


def add_guidance_noise(guidance_norm: torch.Tensor, std: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``guidance_norm + std * N(0, 1)`` (normalised units); ``std == 0`` returns the input."""
    if std < 0:
        raise ValueError(f"guidance noise std must be >= 0, got {std}")
    if std == 0:
        return guidance_norm
    noise = torch.randn(guidance_norm.shape, generator=generator, dtype=guidance_norm.dtype,
                        device="cpu" if generator is None else generator.device)
    return guidance_norm + std * noise.to(guidance_norm.device)
