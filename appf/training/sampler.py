"""Deterministic, resumable batches of window indices, split across DDP ranks.

The sample stream is the concatenation of per-epoch permutations (epoch e shuffled with the
seed ``(seed, e)``). Global step k of rank r takes stream positions
``[(k * world + r) * B, (k * world + r + 1) * B)``, so a run resumed at step k sees exactly the
batches it would have seen, and batches larger than the dataset wrap into the next epoch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler


class StepBatchSampler(Sampler[np.ndarray]):
    """Yields ``steps - start_step`` batches (index arrays of ``batch_size``) for one rank."""

    def __init__(self, n: int, batch_size: int, steps: int, seed: int = 0, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.steps = int(n), int(batch_size), int(steps)
        self.seed, self.start_step = int(seed), int(start_step)
        self.rank, self.world_size = int(rank), int(world_size)
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.pop(min(self._perms))
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def batch(self, step: int) -> np.ndarray:
        start = (step * self.world_size + self.rank) * self.batch_size
        pos = np.arange(start, start + self.batch_size, dtype=np.int64)
        epochs, offsets = np.divmod(pos, self.n)
        out = np.empty_like(pos)
        for e in np.unique(epochs):
            sel = epochs == e
            out[sel] = self._perm(int(e))[offsets[sel]]
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for step in range(self.start_step, self.steps):
            yield self.batch(step)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)
