"""Helpers shared by the decode benchmarks: best-of-N wall time, loading every frame of an episode."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def best_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best wall time (s) of `repeats` calls: the run least disturbed by other processes."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def load_all_frames(ep: Any, batch: int) -> int:
    """Decode every camera's RGB (and right eye, depth) in batches; returns camera-steps."""
    frames = 0
    for cam in ep.cameras.values():
        for a in range(0, ep.num_steps, batch):
            b = min(ep.num_steps, a + batch)
            for arr in (cam.rgb, getattr(cam, "rgb_right", None), cam.depth):
                if arr is not None:
                    np.asarray(arr[a:b])
            frames += b - a
    return frames
