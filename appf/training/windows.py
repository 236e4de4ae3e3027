"""Training windows the diffusion_policy ReplayBuffer / SequenceSampler way.

A window is ``horizon`` consecutive steps of one episode; the first ``n_obs_steps`` are the
observation, all ``horizon`` steps are the action target. Windows start from
``-(n_obs_steps - 1)`` to ``L - horizon + (n_action_steps - 1)``; steps outside the episode
repeat its first (before) or last (after) frame, never crossing into a neighbour episode.
"""

from __future__ import annotations

import numpy as np


def window_frames(episode_starts: np.ndarray, episode_ends: np.ndarray, horizon: int,
                  pad_before: int, pad_after: int) -> tuple[np.ndarray, np.ndarray]:
    """Global frame indices of every window, edge-padded: ``(frames (W, horizon), episode (W,))``.

    ``pad_before``/``pad_after`` are clamped to ``[0, horizon - 1]`` (as diffusion_policy does).
    An episode shorter than ``horizon - pad_before - pad_after`` (after clamping) gives no window;
    one of exactly that length gives one (DP3 defaults 16/1/7: 8 steps, an L-step episode gives
    L - 7 windows).
    """
    pad_before = int(np.clip(pad_before, 0, horizon - 1))
    pad_after = int(np.clip(pad_after, 0, horizon - 1))
    frames, episodes = [], []
    offsets = np.arange(horizon, dtype=np.int64)
    for e, (s, end) in enumerate(zip(np.asarray(episode_starts), np.asarray(episode_ends))):
        length = int(end - s)
        first, last = -pad_before, length - horizon + pad_after
        if last < first:
            continue
        window_starts = np.arange(first, last + 1, dtype=np.int64)
        f = np.clip(window_starts[:, None] + offsets[None, :], 0, length - 1) + int(s)
        frames.append(f)
        episodes.append(np.full(window_starts.size, e, dtype=np.int64))
    if not frames:
        return np.zeros((0, horizon), dtype=np.int64), np.zeros((0,), dtype=np.int64)
    return np.concatenate(frames), np.concatenate(episodes)


def min_episode_length(horizon: int, pad_before: int, pad_after: int) -> int:
    """The shortest episode that gives a window: ``horizon - pad_before - pad_after`` (pads clamped)."""
    pad_before = int(np.clip(pad_before, 0, horizon - 1))
    pad_after = int(np.clip(pad_after, 0, horizon - 1))
    return max(1, horizon - pad_before - pad_after)
