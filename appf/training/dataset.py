"""The expert's torch dataset over shards: normalised windows, fetched a whole batch at a time.

``dataset[i]`` gives one window, ``dataset[[i, j, ...]]`` a batch (vectorised numpy gathers, no
per-sample Python loop): use it with ``DataLoader(dataset, sampler=<batches of indices>,
batch_size=None)``. Keys (float32 tensors, normalised to [-1, 1] per channel):

* ``state`` (n_obs_steps, 8 x arms), ``action`` (horizon, D), ``guidance`` (7 x arms, clean);
* ``point_cloud`` (n_obs_steps, N, 3) xyz, only when the dataset uses point clouds (phase 2).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from appf.training.config import ExpertConfig
from appf.training.errors import TrainingError
from appf.training.guidance import align_quaternion_signs, window_guidance
from appf.training.normalizer import Normalizer
from appf.training.shards import ShardSet
from appf.training.windows import min_episode_length, window_frames


def fit_normalizer(shards: ShardSet, use_point_cloud: bool, max_point_frames: int = 2000,
                   base: Normalizer | None = None) -> Normalizer:
    """Statistics over every frame of the shards (point clouds: up to ``max_point_frames`` evenly
    spaced frames). With ``base`` (a phase-1 normaliser) its low-dimensional statistics are kept
    and only the missing fields are fitted."""
    norm = Normalizer(base.to_dict() if base is not None else None)
    ld = shards.lowdim
    for name in ("state", "action"):
        if not norm.has(name):
            norm.fit(name, ld[name])
    if not norm.has("guidance"):
        # Every guidance a window can get: the keyframe spline at every frame time (a cubic
        # spline may leave the range of the recorded poses between waypoints).
        every = np.arange(shards.n_frames)[:, None]
        episode_of = np.searchsorted(shards.episode_ends, every[:, 0], side="right")
        norm.fit("guidance", align_quaternion_signs(
            window_guidance(ld["ee_pose"], ld["timestamp"], ld["keyframe"], shards.episode_starts,
                            shards.episode_ends, every, episode_of), ld["state"]))
    if use_point_cloud and not norm.has("point_cloud"):
        n = shards.n_frames
        frames = np.unique(np.linspace(0, n - 1, num=min(n, max_point_frames)).astype(np.int64))
        norm.fit("point_cloud", shards.point_clouds(frames))
    return norm


class ExpertWindowDataset(Dataset):
    """Windows of ``horizon`` steps (``n_obs_steps`` observed) over a :class:`ShardSet`."""

    def __init__(self, shards: ShardSet, cfg: ExpertConfig, normalizer: Normalizer,
                 use_point_cloud: bool | None = None):
        self.shards = shards
        self.cfg = cfg
        self.normalizer = normalizer
        self.use_point_cloud = cfg.use_point_cloud if use_point_cloud is None else use_point_cloud
        self.frames, self.episodes = window_frames(
            shards.episode_starts, shards.episode_ends, cfg.horizon,
            pad_before=cfg.n_obs_steps - 1, pad_after=cfg.n_action_steps - 1)
        if self.frames.shape[0] == 0:
            shortest = min_episode_length(cfg.horizon, cfg.n_obs_steps - 1, cfg.n_action_steps - 1)
            raise TrainingError(
                f"no training window in {len(shards.paths)} shard(s): every episode is shorter than "
                f"horizon - (n_obs_steps - 1) - (n_action_steps - 1) = {shortest} steps; "
                "lower horizon or write longer episodes")
        ld = shards.lowdim
        n = normalizer
        self._state = n.normalize("state", ld["state"].astype(np.float32))
        self._action = n.normalize("action", ld["action"].astype(np.float32))
        raw_guidance = window_guidance(ld["ee_pose"], ld["timestamp"], ld["keyframe"],
                                       shards.episode_starts, shards.episode_ends,
                                       self.frames, self.episodes)
        # Same quaternion hemisphere as the current (last observed) state, as predict() does.
        raw_guidance = align_quaternion_signs(raw_guidance, ld["state"][self.frames[:, cfg.n_obs_steps - 1]])
        self.raw_guidance = raw_guidance
        self._guidance = n.normalize("guidance", raw_guidance.astype(np.float32))
        self._points: np.ndarray | None = None
        if self.use_point_cloud:
            if not n.has("point_cloud"):
                raise TrainingError("point-cloud training needs point-cloud normalisation statistics; "
                                    "fit them with fit_normalizer(..., use_point_cloud=True)")
            if cfg.preload_point_clouds:
                self._points = n.normalize("point_cloud", shards.all_point_clouds())

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __getitem__(self, index: int | Sequence[int] | np.ndarray) -> dict[str, torch.Tensor]:
        single = np.ndim(index) == 0
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        frames = self.frames[idx]                          # (B, horizon)
        obs = frames[:, : self.cfg.n_obs_steps]            # (B, n_obs)
        batch = {
            "state": torch.from_numpy(self._state[obs]),
            "action": torch.from_numpy(self._action[frames]),
            "guidance": torch.from_numpy(self._guidance[idx]),
        }
        if self.use_point_cloud:
            if self._points is not None:
                pc = self._points[obs]
            else:
                pc = self.normalizer.normalize(
                    "point_cloud", self.shards.point_clouds(obs.reshape(-1))
                ).reshape(*obs.shape, -1, 3)
            batch["point_cloud"] = torch.from_numpy(np.ascontiguousarray(pc, dtype=np.float32))
        if single:
            return {k: v[0] for k, v in batch.items()}
        return batch
