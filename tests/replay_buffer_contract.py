"""The replay-buffer contract of DP3 / diffusion_policy, exercised with the zarr-python 2 they pin.

Their ReplayBuffer is not on PyPI and must not be copied here, so this runs what its documented
`copy_from_path` / `save_to_path` do (dp3-training.md §1.3, §2.1-2.2) with the real zarr 2 client
in a subprocess (zarr 2 cannot share an environment with zarr 3):
- `zarr.open(path, "r")`, read `meta/episode_ends` and every `data/*` array;
- zarr backend: the whole store copied into a `zarr.MemoryStore`, then saved to a new
  `DirectoryStore` (meta copied as is, data re-compressed);
- numpy backend: arrays loaded to numpy, then saved with `group.array(data=...)` (meta unchunked):
  the step that fails on an object-dtype array ("missing object_codec for object array").
Both saved stores are re-opened and every episode window cut with their `episode_ends` is returned.

Clients: zarr 2.18.7 (`.venv/zarr2`, on PYTHONPATH beside the main interpreter) and zarr 2.12.0,
DP3's pin (`.venv-dp3`, its own interpreter with numpy 1.26: numcodecs 0.10.2, the pin of
diffusion_policy's conda file, has no Python 3.11 wheel and does not build, so the oldest numcodecs
with one, 0.11.0, stands in). `make setup` installs both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Zarr2Client:
    name: str
    python: Path
    pythonpath: Path | None

    @property
    def available(self) -> bool:
        return self.python.is_file() and (self.pythonpath is None or (self.pythonpath / "zarr").is_dir())


CLIENTS = (
    Zarr2Client("zarr 2.18.7", Path(sys.executable),
                Path(os.environ.get("APPF_ZARR2_PATH", Path(sys.prefix) / "zarr2"))),
    Zarr2Client("zarr 2.12.0", Path(os.environ.get("APPF_DP3_PYTHON", REPO / ".venv-dp3/bin/python")),
                None),
)

SCRIPT = r"""
import json, sys
import numpy as np
import numcodecs
import zarr

src, dst, windows_file = sys.argv[1:4]
disk = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
root = zarr.open(src, "r")
ends = root["meta/episode_ends"][:]
data = {k: v[:] for k, v in root["data"].items()}
meta = {k: v[:] for k, v in root["meta"].items()}
assert all(v.shape[0] == ends[-1] for v in data.values()), "data arrays must share episode_ends[-1]"

mem = zarr.MemoryStore()
zarr.copy_store(root.store, mem)
saved = zarr.group(zarr.DirectoryStore(dst + "-zarr"))
zarr.copy_store(mem, saved.store, source_path="/meta", dest_path="/meta")
data_group = saved.create_group("data", overwrite=True)
for key, value in zarr.group(mem)["data"].items():
    zarr.copy(value, data_group, name=key, chunks=value.chunks, compressor=disk)

saved = zarr.group(zarr.DirectoryStore(dst + "-numpy"))
meta_group = saved.create_group("meta", overwrite=True)
for key, value in meta.items():
    meta_group.array(name=key, data=value, shape=value.shape, chunks=value.shape)
data_group = saved.create_group("data", overwrite=True)
for key, value in data.items():
    data_group.array(name=key, data=value, chunks=(100,) + value.shape[1:], compressor=disk)

windows = {}
for variant in ("zarr", "numpy"):
    back = zarr.open(dst + "-" + variant, "r")
    e = back["meta/episode_ends"][:]
    starts = np.concatenate([[0], e[:-1]])
    for key in back["data"]:
        arr = back["data"][key][:]
        for i, (s, t) in enumerate(zip(starts, e)):
            windows[f"{variant}|{key}|{i}"] = arr[s:t]
np.savez(windows_file, **windows)
print(json.dumps({"zarr": zarr.__version__, "numcodecs": numcodecs.__version__,
                  "episode_ends": ends.tolist(), "episode_ids": [str(x) for x in meta["episode_ids"]],
                  "keys": sorted(data)}))
"""


def run_contract(client: Zarr2Client, store: Path, workdir: Path) -> tuple[dict, dict[tuple, np.ndarray]]:
    """(summary printed by the client, {(variant, key, episode index): window}) for `store`."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if client.pythonpath is not None:
        env["PYTHONPATH"] = str(client.pythonpath)
    windows_file = workdir / "windows.npz"
    done = subprocess.run([str(client.python), "-c", SCRIPT, str(store), str(workdir / "saved"),
                           str(windows_file)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"{client.name}: {done.stderr[-3000:]}"
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(windows_file) as npz:
        windows = {tuple(k.split("|")[:2]) + (int(k.split("|")[2]),): npz[k] for k in npz.files}
    return summary, windows
