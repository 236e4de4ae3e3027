"""Compile appf's numba kernels into numba's on-disk cache: ``python -m appf.launch.warm_kernels``.

numba compiles a kernel on its first call in a process unless its cache (``__pycache__`` next to
the module, or ``NUMBA_CACHE_DIR``) holds it for this CPU. Without a cache every worker process of
a job compiles them again, about 10 CPU-s for the point-cloud stage alone; with one, the first call
loads them in about 0.5 CPU-s. ``make setup`` and the worker image (Dockerfile) run this once.

The cache is keyed on the CPU model and features: workers on other CPUs than the machine that built
the image compile again, once per process. For a cluster of mixed CPUs, build and run with
``NUMBA_CPU_NAME=generic`` (portable code; the cache then holds for every x86-64 CPU, at the cost
of the CPU-specific vector instructions).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def warm_point_cloud_kernels() -> None:
    """The point-cloud stage's kernels (fused keep mask, block picking), with and without labels
    and a crop box, on one small synthetic frame."""
    from appf.pipelines.sources.synthetic import SyntheticSource
    from appf.transforms.crop import CropBox
    from appf.transforms.pointcloud import CameraView, CloudConfig, frame_point_cloud

    src = SyntheticSource(episodes=1, steps=16, height=96, width=128, seed=0)
    cam = next(iter(src.read(src.list_refs()[0]).cameras.values()))
    view = CameraView(np.asarray(cam.depth[0]), np.asarray(cam.rgb[0]), cam.intrinsics,
                      cam.T_base_cam_at(0), np.asarray(cam.segmentation[0]).astype(np.uint8))
    crop = CropBox(*src.info.default_crop)
    frame_point_cloud([view], CloudConfig(n_points=64, candidates=256, crop=crop))
    frame_point_cloud([view], CloudConfig(n_points=64, candidates=256, keep_labels=(1, 2)))


def warm_stereo_kernels() -> None:
    """The `sgbm` backend's kernels (weighted median, occlusion classification and fill,
    sub-pixel mean) on a small random-textured pair with a disparity step."""
    from appf.annotators.depth.classical_stereo import classical_disparity

    rng = np.random.default_rng(0)
    right = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    left = np.roll(right, 4, axis=1)
    left[16:48, 48:80] = np.roll(right, 12, axis=1)[16:48, 48:80]
    classical_disparity(left, right, 16.0)


def main() -> int:
    start = time.process_time()
    warm_point_cloud_kernels()
    warm_stereo_kernels()
    print(f"numba kernels compiled or loaded from the cache in {time.process_time() - start:.1f} "
          "CPU-s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
