"""Writes a tiny BridgeData V2 raw tree (formats-real.md §3.2) rendered from the synthetic scene:
<root>/<collection>/<env>/<task>/00/<YYYY-MM-DD_HH-MM-SS>/raw/traj_group0/traj0/ with images0
(JPEG, T+1 frames), depth_images0 (uint16 mm PNG), obs_dict.pkl, policy_out.pkl, lang.txt."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.spatial.transform import Rotation

from appf.pipelines.sources.bridge_raw import DEFAULT_ROT
from appf.transforms import synthetic_scene as scene


@dataclass
class BridgeFixture:
    root: Path
    traj: Path
    script: object
    K: np.ndarray
    T_base_cam: np.ndarray
    full_state: np.ndarray
    actions: np.ndarray
    eef: np.ndarray  # (T+1, 4, 4) absolute EE pose in base


def write_bridge_raw(root: Path, steps: int = 16, H: int = 48, W: int = 64,
                     stamp: str = "2023-06-13_15-08-44") -> BridgeFixture:
    script = scene.make_script(0, steps)  # T+1 = steps observations
    K = scene.intrinsics_from_fov(W, H)
    traj = root / "datacol2_toysink2" / "toysink2" / "pnp" / "00" / stamp / "raw" / "traj_group0" / "traj0"
    (traj / "images0").mkdir(parents=True)
    (traj / "depth_images0").mkdir()
    for t in range(steps):
        rgb, depth, _ = scene.render_view(script.state(t), K, script.T_base_cam, H, W)
        Image.fromarray(rgb).save(traj / "images0" / f"im_{t}.jpg", quality=95)
        Image.fromarray(np.round(depth * 1000).astype(np.uint16)).save(traj / "depth_images0" / f"im_{t}.png")
    # The WidowX tool frame: gripper-down = DEFAULT_ROT; here R_eef = R_tcp Rx(pi)^T DEFAULT_ROT so
    # the relative rotation is a pure yaw (the synthetic TCP points down with z).
    eef = script.tcp_poses.copy()
    eef[:, :3, :3] = script.tcp_poses[:, :3, :3] @ scene._rot_x(np.pi).T @ DEFAULT_ROT
    R_rel = eef[:, :3, :3] @ DEFAULT_ROT.T
    rpy = Rotation.from_matrix(R_rel).as_euler("xyz")
    full_state = np.concatenate([script.tcp_poses[:, :3, 3], rpy, 1.0 - script.gripper[:, None]], 1)
    actions = np.concatenate([np.diff(full_state[:, :6], axis=0), full_state[1:, 6:7]], 1)
    obs = {"full_state": full_state, "state": full_state[:, :6], "qpos": np.zeros((steps, 6)),
           "time_stamp": 1.6e9 + 0.2 * np.arange(steps), "eef_transform": eef,
           "env_done": np.zeros(steps, bool)}
    with open(traj / "obs_dict.pkl", "wb") as f:
        pickle.dump(obs, f)
    with open(traj / "policy_out.pkl", "wb") as f:
        pickle.dump([{"actions": a.astype(np.float32)} for a in actions], f)
    (traj / "lang.txt").write_text(script.instruction + "\nconfidence: 1\n")
    return BridgeFixture(root, traj, script, K, script.T_base_cam, full_state, actions, eef)
