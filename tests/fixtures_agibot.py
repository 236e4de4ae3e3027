"""Writes a tiny untarred AgiBot World tree (formats-real.md §2.2-2.7) rendered from the
synthetic scene: head RGB-D with a moving head (per-frame aligned extrinsics), hand cameras,
proprio_stats.h5 with short (indexed) action arrays, task_info with segments."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from appf.transforms import synthetic_scene as scene
from tests.fixtures_media import write_mp4

RIGHT_TCP = scene._pose(scene.gripper_rotation(0.3), [0.35, -0.40, 0.30])  # right arm parked
HAND_OFFSET = scene.translation(0.08, 0.0, -0.10)


@dataclass
class AgiBotFixture:
    root: Path
    task_id: int
    episodes: list[int]
    scripts: list = field(default_factory=list)
    K: np.ndarray | None = None
    head_poses: list[np.ndarray] = field(default_factory=list)
    segs: list[np.ndarray] = field(default_factory=list)  # head segmentation (T, H, W)
    action_index: np.ndarray | None = None


def head_poses(script, steps: int) -> np.ndarray:
    """The head moves 1 cm per frame along base y and 0.4 cm up: per-frame camera-to-base."""
    T0 = script.T_base_cam
    return np.stack([scene.translation(0.0, 0.01 * t, 0.004 * t) @ T0 for t in range(steps)])


def write_agibot(root: Path, task_id: int = 327, episodes: tuple[int, ...] = (648649,), steps: int = 16,
                 H: int = 48, W: int = 64, inner_parameters: bool = True) -> AgiBotFixture:
    K = scene.intrinsics_from_fov(W, H)
    fix = AgiBotFixture(root, task_id, list(episodes), K=K)
    infos = []
    for k, ep in enumerate(episodes):
        script = scene.make_script(k, steps)
        heads = head_poses(script, steps)
        lefts = np.stack([P @ HAND_OFFSET for P in script.tcp_poses])
        rights = np.broadcast_to(RIGHT_TCP @ HAND_OFFSET, (steps, 4, 4))
        obs = root / "observations" / str(task_id) / str(ep)
        (obs / "depth").mkdir(parents=True)
        vids = {c: np.empty((steps, H, W, 3), np.uint8) for c in ("head", "hand_left", "hand_right")}
        segs = np.empty((steps, H, W), np.int32)
        for t in range(steps):
            st = script.state(t)
            rgb, depth, segs[t] = scene.render_view(st, K, heads[t], H, W)
            vids["head"][t] = rgb
            Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(obs / "depth" / f"head_depth_{t:06d}.png")
            vids["hand_left"][t] = scene.render_view(st, K, lefts[t], H, W)[0]
            vids["hand_right"][t] = scene.render_view(st, K, rights[t], H, W)[0]
        for c, frames in vids.items():
            write_mp4(obs / "videos" / f"{c}_color.mp4", frames, fps=30, codec="libsvtav1",
                      options={"crf": "10", "preset": "12"})
        cam_dir = root / "parameters" / str(task_id) / str(ep) / ("parameters/camera" if inner_parameters else "camera")
        cam_dir.mkdir(parents=True)
        for c, poses in (("head", heads), ("hand_left", lefts), ("hand_right", rights)):
            (cam_dir / f"{c}_intrinsic_params.json").write_text(json.dumps(
                {"intrinsic": {"fx": K[0, 0], "fy": K[1, 1], "ppx": K[0, 2], "ppy": K[1, 2],
                               "width": W, "height": H}}))
            (cam_dir / f"{c}_extrinsic_params_aligned.json").write_text(json.dumps(
                [{"extrinsic": {"rotation_matrix": P[:3, :3].tolist(), "translation_vector": P[:3, 3].tolist()}}
                 for P in poses]))
            (cam_dir / f"{c}_extrinsic_params.json").write_text(json.dumps(
                {"extrinsic": {"rotation_matrix": poses[0][:3, :3].tolist(),
                               "translation_vector": poses[0][:3, 3].tolist()}}))
        ee_l = script.ee_pose()
        ee_r = np.broadcast_to(scene.pose_to_xyzquat(RIGHT_TCP), (steps, 7))
        h5p = root / "proprio_stats" / str(task_id) / str(ep) / "proprio_stats.h5"
        h5p.parent.mkdir(parents=True)
        idx = np.arange(2, steps, 3, dtype=np.int64)  # commands only at some frames (short arrays)
        fix.action_index = idx
        with h5py.File(h5p, "w") as f:
            f["timestamp"] = 1_740_000_000 * 10**9 + np.arange(steps, dtype=np.int64) * 33_333_333
            f["state/end/position"] = np.stack([ee_l[:, :3], ee_r[:, :3]], axis=1)
            f["state/end/orientation"] = np.stack([ee_l[:, 3:], ee_r[:, 3:]], axis=1)  # xyzw
            f["state/effector/position"] = np.stack([120 * (1 - script.gripper), np.full(steps, 120.0)], 1)
            f["state/joint/position"] = np.zeros((steps, 14))
            f["state/head/position"] = np.zeros((steps, 2))
            f["state/waist/position"] = np.zeros((steps, 2))
            f["state/robot/position"] = np.zeros((0,))
            f["state/joint/effort"] = np.zeros((0,))
            f["action/effector/position"] = np.stack([script.gripper[idx], np.zeros(len(idx))], 1)
            f["action/effector/index"] = idx
            f["action/end/position"] = np.stack([ee_l[idx, :3], ee_r[idx, :3]], axis=1)
            f["action/end/orientation"] = np.stack([ee_l[idx, 3:], ee_r[idx, 3:]], axis=1)
            f["action/end/index"] = idx
            f["action/joint/position"] = np.zeros((len(idx), 14))
            f["action/joint/index"] = idx
        infos.append({"episode_id": ep, "task_name": script.instruction, "init_scene_text": "a table with a cube",
                      "label_info": {"action_config": [
                          {"start_frame": 0, "end_frame": 8, "action_text": "grasp the cube", "skill": "Pick"},
                          {"start_frame": 8, "end_frame": steps, "action_text": "place the cube", "skill": "Place"}]}})
        fix.scripts.append(script)
        fix.head_poses.append(heads)
        fix.segs.append(segs)
    (root / "task_info").mkdir(exist_ok=True)
    (root / "task_info" / f"task_{task_id}.json").write_text(json.dumps(infos))
    return fix
