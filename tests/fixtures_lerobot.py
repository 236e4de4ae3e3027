"""LeRobot fixtures: v3.0 written by the real lerobot 0.4.4 (in .venv-lerobot, through
tests/lerobot_helper.py), v2.1 written here in its on-disk form (lerobot 0.4.4 writes only v3.0):
`data/chunk-000/episode_NNNNNN.parquet`, `videos/chunk-000/<key>/episode_NNNNNN.mp4`,
`meta/{info.json, episodes.jsonl, tasks.jsonl, episodes_stats.jsonl}`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
LEROBOT_PY = REPO / ".venv-lerobot" / "bin" / "python"
HELPER = Path(__file__).with_name("lerobot_helper.py")
requires_lerobot = pytest.mark.skipif(not LEROBOT_PY.exists(),
                                      reason="no .venv-lerobot (created by `make setup`)")

FPS = 15
H, W = 48, 64
CAMERAS = ("exterior_1_left", "wrist_left")


def run_lerobot(command: str, root: Path, npz: Path) -> None:
    """Run the helper in .venv-lerobot; raise with its output on failure."""
    r = subprocess.run([str(LEROBOT_PY), str(HELPER), command, str(root), str(npz)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        raise RuntimeError(f"lerobot helper {command} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def frame_image(episode: int, t: int, camera: int, h: int = H, w: int = W) -> np.ndarray:
    """A smooth, frame-specific picture (AV1-friendly): level by (episode, t, camera) + gradient."""
    level = (30 + 11 * t + 60 * episode + 25 * camera) % 160
    x = np.linspace(0, 40, w)[None, :, None]
    y = np.linspace(0, 20, h)[:, None, None]
    rgb = np.concatenate([level + x + 0 * y, level + y + 0 * x, 200 - level + 0 * x + 0 * y], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def droid_episode(e: int, length: int, hw: tuple[int, int] = (H, W)) -> dict[str, np.ndarray]:
    """Per-frame arrays in the DROID 1.0.1 port's feature layout (port_droid.py)."""
    t = np.arange(length, dtype=np.float64)
    cart = np.stack([0.4 + 0.01 * t, -0.1 + 0.005 * t * (e + 1), 0.3 - 0.004 * t,
                     np.pi - 0.02 * t, 0.1 + 0.01 * e + 0 * t, 0.2 * np.sin(t / 4)], 1)
    grip = (t >= length // 2).astype(np.float64)[:, None]
    joints = np.stack([0.1 * k + 0.01 * t for k in range(7)], 1)
    out = {"observation.state.cartesian_position": cart, "observation.state.gripper_position": grip,
           "observation.state.joint_position": joints,
           "observation.state": np.concatenate([joints, grip], 1),
           "action": np.concatenate([joints + 0.01, grip], 1),
           "camera_extrinsics.exterior_1_left": np.tile([0.1, 0.5, 0.6, -2.0, 0.0, -0.5], (length, 1))}
    out = {k: v.astype(np.float32) for k, v in out.items()}
    for c, cam in enumerate(CAMERAS):
        out[f"observation.images.{cam}"] = np.stack([frame_image(e, i, c, *hw) for i in range(length)])
    return out


def droid_features(hw: tuple[int, int] = (H, W)) -> dict[str, dict]:
    def vec(n: int, names: list[str] | None = None) -> dict:
        return {"dtype": "float32", "shape": [n], "names": {"axes": names} if names else None}

    feats = {"observation.state.cartesian_position": vec(6, ["x", "y", "z", "roll", "pitch", "yaw"]),
             "observation.state.gripper_position": vec(1, ["gripper"]),
             "observation.state.joint_position": vec(7), "observation.state": vec(8), "action": vec(8),
             "camera_extrinsics.exterior_1_left": vec(6, ["x", "y", "z", "roll", "pitch", "yaw"])}
    for cam in CAMERAS:
        feats[f"observation.images.{cam}"] = {"dtype": "video", "shape": [*hw, 3],
                                              "names": ["height", "width", "channels"]}
    return feats


EPISODES = ((6, "put the marker in the cup"), (9, "close the drawer"))


def write_v30(root: Path, tmp: Path, episodes=EPISODES, hw: tuple[int, int] = (H, W)
              ) -> list[dict[str, np.ndarray]]:
    """A DROID-layout v3.0 dataset written by lerobot 0.4.4; returns the arrays per episode."""
    arrays = [droid_episode(e, n, hw) for e, (n, _) in enumerate(episodes)]
    spec = {"fps": FPS, "robot_type": "Franka", "features": droid_features(hw),
            "episodes": [{"length": n, "task": task} for n, task in episodes]}
    npz = tmp / "lerobot_input.npz"
    np.savez(npz, spec=json.dumps(spec),
             **{f"{e}|{k}": v for e, a in enumerate(arrays) for k, v in a.items()})
    run_lerobot("write", root, npz)
    return arrays


def read_with_lerobot(root: Path, tmp: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Every item of the dataset at `root` as lerobot's LeRobotDataset returns it."""
    out = tmp / "lerobot_read.npz"
    run_lerobot("read", root, out)
    z = np.load(out)
    return json.loads(str(z["meta"])), {k: z[k] for k in z.files if k != "meta"}


# ----------------------------------------------------------------------------------------------
# v2.1, written by hand


def write_v21(root: Path, episodes=EPISODES, video_frames: dict[int, int] | None = None,
              extras: bool = False) -> list[dict[str, np.ndarray]]:
    """A DROID-layout v2.1 dataset (one parquet and one MP4 per episode). `video_frames`
    {episode: n} writes only n frames into that episode's videos (a dirty case). `extras` adds an
    `image` feature (PNG in the parquet) and a uint16 millimetre depth feature (H, W)."""
    from appf.pipelines.sinks.lerobot_v3 import encode_video

    arrays = [droid_episode(e, n) for e, (n, _) in enumerate(episodes)]
    feats = droid_features()
    if extras:
        feats.update(EXTRA_FEATURES)
    tasks = sorted({task for _, task in episodes})
    total = 0
    for e, ((n, task), a) in enumerate(zip(episodes, arrays)):
        # LeRobot stores a shape-(1,) feature as a scalar column (datasets.Value), others as lists
        cols = {k: pa.array(v[:, 0]) if v.shape[1] == 1 else pa.array(list(v), type=pa.list_(pa.float32(), v.shape[1]))
                for k, v in a.items() if not k.startswith("observation.images")}
        if extras:
            cols.update(_extra_columns(e, n))
        cols.update(timestamp=pa.array(np.arange(n, dtype=np.float32) / FPS),
                    frame_index=pa.array(np.arange(n), pa.int64()),
                    episode_index=pa.array(np.full(n, e), pa.int64()),
                    index=pa.array(np.arange(total, total + n), pa.int64()),
                    task_index=pa.array(np.full(n, tasks.index(task)), pa.int64()))
        p = root / f"data/chunk-000/episode_{e:06d}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), p)
        for cam in CAMERAS:
            key = f"observation.images.{cam}"
            v = root / f"videos/chunk-000/{key}/episode_{e:06d}.mp4"
            v.parent.mkdir(parents=True, exist_ok=True)
            encode_video(a[key][: (video_frames or {}).get(e, n)], v, FPS)
        total += n
    info = {"codebase_version": "v2.1", "robot_type": "Franka", "total_episodes": len(episodes),
            "total_frames": total, "total_tasks": len(tasks), "total_videos": len(episodes) * len(CAMERAS),
            "total_chunks": 1, "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(episodes)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {**feats, **{k: {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1],
                                         "names": None}
                                     for k in ("timestamp", "frame_index", "episode_index", "index", "task_index")}}}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                   for i, t in enumerate(tasks)))
    (root / "meta/episodes_stats.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "stats": _episode_stats(a, e, n)}) + "\n"
        for e, ((n, _), a) in enumerate(zip(episodes, arrays))))
    (root / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": [task], "length": n}) + "\n"
        for e, (n, task) in enumerate(episodes)))
    return arrays


EXTRA_FEATURES = {
    "observation.images.top": {"dtype": "image", "shape": [H, W, 3], "names": ["height", "width", "channels"]},
    "observation.depth.wrist_left": {"dtype": "uint16", "shape": [H, W], "names": ["height", "width"]},
}


def extra_frames(e: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(top RGB uint8 (n, H, W, 3), wrist depth uint16 mm (n, H, W)) of episode e."""
    top = np.stack([frame_image(e, t, 2)[::-1] for t in range(n)])
    depth = np.stack([np.full((H, W), 500 + 10 * t + 100 * e, np.uint16) + np.arange(W, dtype=np.uint16)
                      for t in range(n)])
    return top, depth


def _extra_columns(e: int, n: int) -> dict[str, pa.Array]:
    import io

    from PIL import Image

    top, depth = extra_frames(e, n)
    pngs = []
    for im in top:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="PNG")
        pngs.append({"bytes": buf.getvalue(), "path": None})
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    return {"observation.images.top": pa.array(pngs, type=image_type),
            "observation.depth.wrist_left": pa.array([d.tolist() for d in depth],
                                                     type=pa.list_(pa.list_(pa.uint16(), W), H))}


def _episode_stats(arrays: dict[str, np.ndarray], e: int, n: int) -> dict[str, dict[str, list]]:
    """v2.1 per-episode stats: min/max/mean/std/count per feature (images per channel, (3, 1, 1),
    in [0, 1])."""
    def stats(v: np.ndarray, axis: tuple[int, ...], keep: bool = False) -> dict[str, list]:
        s = {k: getattr(np, k)(v, axis=axis, keepdims=keep) for k in ("min", "max", "mean", "std")}
        out = {k: (x[0] if keep else x).tolist() for k, x in s.items()}
        return {**out, "count": [len(v)]}

    out = {k: (stats(v.astype(np.float64).transpose(0, 3, 1, 2) / 255.0, (0, 2, 3), keep=True)
               if k.startswith("observation.images") else stats(v.astype(np.float64), (0,)))
           for k, v in arrays.items()}
    idx = np.arange(n, dtype=np.float64)[:, None]
    for k, v in (("timestamp", idx / FPS), ("frame_index", idx), ("episode_index", idx * 0 + e),
                 ("index", idx), ("task_index", idx * 0)):
        out[k] = stats(v, (0,))
    return out
