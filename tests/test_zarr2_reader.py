"""zarr-python 2 (what DP3 and diffusion_policy's ReplayBuffer use) opens `--zarr-format 2` shards.

zarr 2 cannot share an environment with zarr 3, so `make setup` installs it into
`.venv/zarr2` and this test reads the shard in a subprocess with that on its path, the way
ReplayBuffer.copy_from_path does (numpy backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from pipeline_helpers import SMALL_SOURCE, run_local, small_config

ZARR2 = Path(os.environ.get("APPF_ZARR2_PATH", Path(sys.prefix) / "zarr2"))

READER = """
import json, sys
import zarr
assert zarr.__version__.startswith("2."), zarr.__version__
root = zarr.open(sys.argv[1], "r")               # positional mode, as ReplayBuffer does
meta = {k: v[:] for k, v in root["meta"].items()}
data = {k: v[:] for k, v in root["data"].items()}
print(json.dumps({
    "zarr": zarr.__version__,
    "episode_ends": meta["episode_ends"].tolist(),
    "episode_ids": [str(x) for x in meta["episode_ids"]],
    "shapes": {k: list(v.shape) for k, v in data.items()},
    "pc_sum": float(data["point_cloud"].astype("float64").sum()),
}))
"""


@pytest.mark.skipif(not (ZARR2 / "zarr").is_dir(),
                    reason=f"zarr-python 2 not at {ZARR2}; `make setup` installs it")
def test_zarr_python_2_reads_format_2_shard(tmp_path):
    out = tmp_path / "v2"
    run_local(small_config(out, zarr_format=2, source_options={**SMALL_SOURCE, "episodes": 2}))
    shard = out / "pointclouds/shard-00000.zarr"
    env = dict(os.environ, PYTHONPATH=str(ZARR2))
    done = subprocess.run([sys.executable, "-c", READER, str(shard)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    ours = zarr.open_group(str(shard), mode="r")
    assert got["zarr"].startswith("2.")
    assert got["episode_ends"] == ours["meta/episode_ends"][:].tolist() == [16, 32]
    assert got["episode_ids"] == ["synthetic-000000", "synthetic-000001"]
    assert got["shapes"]["point_cloud"] == [32, 128, 6] and got["shapes"]["state"] == [32, 8]
    np.testing.assert_allclose(got["pc_sum"], ours["data/point_cloud"][:].astype(np.float64).sum())
