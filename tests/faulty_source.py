"""A test-only source: the synthetic source with chosen episodes corrupted in chosen ways.

Used by the failure-handling tests (in-process runner only: it lives in tests/)."""

from __future__ import annotations

import dataclasses

import numpy as np

from appf.pipelines.sources.synthetic import SyntheticSource
from appf.schemas import EpisodeRef, LazyFrames


class _ArraySlicer:
    """A picklable loader (Beam pickles elements, so loaders cannot be lambdas)."""

    def __init__(self, arr: np.ndarray):
        self.arr = arr

    def __call__(self, a: int, b: int) -> np.ndarray:
        return self.arr[a:b]


class _Raiser:
    def __init__(self, message: str):
        self.message = message

    def __call__(self, a: int, b: int) -> np.ndarray:
        raise OSError(self.message)


def _lazy(arr: np.ndarray, name: str) -> LazyFrames:
    return LazyFrames(arr.shape, arr.dtype, _ArraySlicer(arr), name)


def _raising(shape, dtype, message: str) -> LazyFrames:
    return LazyFrames(tuple(shape), np.dtype(dtype), _Raiser(message), "corrupt")


class FaultySource(SyntheticSource):
    """`faults` maps episode index -> one of: raise_read, empty, mismatched_lengths,
    missing_intrinsics, nan_depth_eager, nan_depth_lazy, corrupt_segmentation, no_depth_points."""

    def __init__(self, faults: dict | None = None, **options):
        super().__init__(**options)
        self.faults = {int(k): v for k, v in (faults or {}).items()}

    def read(self, ref: EpisodeRef):
        fault = self.faults.get(ref.index)
        if fault == "raise_read":
            raise OSError(f"corrupt file for {ref.episode_id} (injected)")
        ep = super().read(ref)
        if fault is None:
            return ep
        cam_name, cam = next(iter(ep.cameras.items()))
        steps = ep.steps
        if fault == "empty":
            T0 = slice(0, 0)
            steps = dataclasses.replace(steps, **{f.name: getattr(steps, f.name)[T0]
                                                  for f in dataclasses.fields(steps)})
            cam = dataclasses.replace(cam, rgb=cam.rgb[T0], rgb_right=None, baseline_m=None,
                                      depth=cam.depth[T0], segmentation=cam.segmentation[T0])
        elif fault == "mismatched_lengths":
            steps = dataclasses.replace(steps, action=steps.action[:-3])
        elif fault == "missing_intrinsics":
            cam = dataclasses.replace(cam, intrinsics=None)
        elif fault == "nan_depth_eager":
            depth = cam.depth.copy()
            depth[2, 5, 7] = np.nan
            cam = dataclasses.replace(cam, depth=depth)
        elif fault == "nan_depth_lazy":
            depth = cam.depth.copy()
            depth[3, 10, 11] = np.inf
            cam = dataclasses.replace(cam, depth=_lazy(depth, "depth.mp4"))
        elif fault == "corrupt_segmentation":
            cam = dataclasses.replace(cam, segmentation=_raising(
                cam.segmentation.shape, cam.segmentation.dtype, "segmentation.h5: truncated (injected)"))
        elif fault == "no_depth_points":
            cam = dataclasses.replace(cam, depth=np.zeros_like(cam.depth))
        else:
            raise ValueError(f"unknown fault {fault}")
        return dataclasses.replace(ep, steps=steps, cameras={**ep.cameras, cam_name: cam})
