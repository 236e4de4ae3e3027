"""Drives the real `lerobot` package (0.4.4, in .venv-lerobot: its pins clash with .venv) for the
tests, offline. Run with .venv-lerobot/bin/python:

  lerobot_helper.py write ROOT INPUT.npz   write a v3.0 dataset with LeRobotDataset.create/add_frame/
                                           save_episode/finalize from the arrays in INPUT.npz
  lerobot_helper.py read ROOT OUTPUT.npz   load ROOT with LeRobotDataset (local path) and dump every
                                           item (decoded frames, numeric features, task) + meta
  lerobot_helper.py convert21 PARENT OWNER/NAME   convert the v2.1 dataset PARENT/OWNER/NAME to v3.0
                                           in place with lerobot's own converter (no Hub push)

INPUT.npz: `spec` (JSON: fps, robot_type, features, episodes: [{length, task}]) and one array per
feature key and episode, named "<episode>|<feature key>".
"""

from __future__ import annotations

import json
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"


def _import_torchvision() -> None:
    """This machine has torch 2.13.0 CPU only; the torchvision wheel for it on PyPI is linked
    against the CUDA torch, so its C++ ops do not load and its import fails while registering
    fake kernels for them. lerobot's dataset code needs only torchvision's Python parts
    (transforms), so skip those registrations during the import. Environment workaround, not a
    fake of lerobot: every lerobot call below is the released code."""
    import torch.library

    fake, autograd = torch.library.register_fake, torch.library.register_autograd
    torch.library.register_fake = lambda *a, **k: (lambda f: f)
    torch.library.register_autograd = lambda *a, **k: None
    try:
        import torchvision  # noqa: F401
    finally:
        torch.library.register_fake, torch.library.register_autograd = fake, autograd


def write(root: str, npz: str) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    z = np.load(npz)
    spec = json.loads(str(z["spec"]))
    features = {k: {**f, "shape": tuple(f["shape"])} for k, f in spec["features"].items()}
    ds = LeRobotDataset.create(repo_id="appf/fixture", fps=spec["fps"], root=root, features=features,
                               robot_type=spec.get("robot_type"), use_videos=True, image_writer_threads=0)
    for e, ep in enumerate(spec["episodes"]):
        for t in range(ep["length"]):
            frame = {k: z[f"{e}|{k}"][t] for k in features}
            frame["task"] = ep["task"]
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()


def read(root: str, out: str) -> None:
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("appf/export", root=root)
    arrays: dict[str, list] = {}
    tasks = []
    for i in range(len(ds)):
        item = ds[i]
        tasks.append(item["task"])
        for k, v in item.items():
            if hasattr(v, "numpy"):
                a = v.numpy()
                if k in ds.meta.video_keys:  # CHW float [0, 1] -> HWC uint8
                    a = np.round(a.transpose(1, 2, 0) * 255).astype(np.uint8)
                arrays.setdefault(k, []).append(a)
    meta = {"fps": ds.fps, "total_episodes": ds.meta.total_episodes, "total_frames": ds.meta.total_frames,
            "codebase_version": ds.meta.info["codebase_version"], "video_keys": ds.meta.video_keys,
            "features": sorted(ds.features), "tasks": tasks, "num_frames": len(ds)}
    np.savez(out, meta=json.dumps(meta), **{k: np.stack(v) for k, v in arrays.items()})


def convert21(parent: str, repo_id: str) -> None:
    from lerobot.datasets.v30.convert_dataset_v21_to_v30 import convert_dataset

    convert_dataset(repo_id=repo_id, root=parent, push_to_hub=False)


if __name__ == "__main__":
    _import_torchvision()
    command, root, path = sys.argv[1:4]
    {"write": write, "read": read, "convert21": convert21}[command](root, path)
