"""Guidance poses: the pose on the B-spline through an episode's keyframe waypoints.

For a training window the guidance is the pose of every arm at the time of the window's last
step (``horizon - 1``, edge-padded), on the spline through that arm's TCP poses at step 0 and at
the episode's keyframes (:mod:`appf.transforms.spline`). It is a (arms x 7) vector: xyz (m) and
quaternion xyzw in the base frame. In training, Gaussian noise of ``std`` normalised units is
added to every channel of the normalised guidance (``std`` 0.1 = 5 % of a channel's range under
[-1, 1] normalisation); the quaternion channels are a conditioning feature, not re-normalised.
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
