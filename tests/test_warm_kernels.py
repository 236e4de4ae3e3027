"""`python -m appf.launch.warm_kernels` fills numba's on-disk cache for every module that holds
kernels, so worker processes load them instead of compiling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KERNEL_MODULES = ("keep_mask", "image_reduce", "edge_aware_kernels", "stereo_kernels")


def test_warm_kernels_fills_the_cache_of_every_kernel_module(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "appf.launch.warm_kernels"], env=env, check=True,
                   capture_output=True, timeout=600)
    cached = {p.name.split(".")[0] for p in Path(tmp_path).rglob("*.nbc")}
    assert set(KERNEL_MODULES) <= cached, f"no compiled kernels cached for {set(KERNEL_MODULES) - cached}"
