"""Tiny simulator-release files in each exact on-disk layout (formats-sim.md §2-§5), rendered
from the synthetic scene: its base frame is placed in a simulator WORLD frame by `T_WORLD_BASE`,
every pose is stored in that world frame with the release's own conventions (OpenGL camera axes,
wxyz quaternions, negative focal lengths, packed PNGs, mm depth, inverted grippers), so a reader
that converts correctly puts the table at base z = 0."""

from __future__ import annotations

import json
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
import yaml
from PIL import Image
from scipy.spatial.transform import Rotation

from appf.transforms import synthetic_scene as scene
from appf.transforms.geometry import invert_rigid, matrix_to_pose

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
PYREP_TO_CV = np.diag([-1.0, -1.0, 1.0, 1.0])
T_WORLD_BASE = scene._pose(scene._rot_z(0.3), [0.10, -0.20, 0.75])


@dataclass
class Recording:
    """A rendered synthetic episode placed in the world: per-frame images and world poses."""

    script: scene.EpisodeScript
    K: np.ndarray
    rgb: np.ndarray            # (T, H, W, 3) uint8
    depth: np.ndarray          # (T, H, W) float32 metres (camera z)
    seg: np.ndarray            # (T, H, W) int32 scene ids
    T_world_cam: np.ndarray    # (T, 4, 4) camera-to-world, OpenCV axes
    tcp_world: np.ndarray      # (T, 4, 4)

    @property
    def steps(self) -> int:
        return len(self.rgb)


def record(seed: int = 0, steps: int = 16, H: int = 48, W: int = 64, K: np.ndarray | None = None,
           T_base_cam: np.ndarray | None = None, T_world_base: np.ndarray = T_WORLD_BASE) -> Recording:
    script = scene.make_script(seed, steps)
    K = scene.intrinsics_from_fov(W, H) if K is None else K
    T_cam = script.T_base_cam if T_base_cam is None else T_base_cam
    views = [scene.render_view(script.state(t), K, T_cam, H, W) for t in range(steps)]
    rgb, depth, seg = (np.stack([v[i] for v in views]) for i in range(3))
    return Recording(script, K, rgb, depth, seg, np.broadcast_to(T_world_base @ T_cam, (steps, 4, 4)).copy(),
                     T_world_base @ script.tcp_poses)


def _wxyz(T: np.ndarray) -> np.ndarray:
    p = matrix_to_pose(T)
    return np.concatenate([p[..., :3], p[..., 6:7], p[..., 3:6]], axis=-1)


def _jpegs(rgb: np.ndarray) -> tuple[list[bytes], int]:
    blobs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes() for f in rgb]  # RGB as "BGR"
    return blobs, max(len(b) for b in blobs)


# ---------------------------------------------------------------------------------------------- RoboTwin

def write_robotwin(root: Path, rec: Recording, *, v1: bool = False, depth: bool = True,
                   name: str = "episode0") -> Path:
    """<root>/data/<name>.hdf5 (+ instructions/<name>.json) in the classic or v1.0 layout. The
    left arm does the pick; the right arm is parked."""
    n = rec.steps
    right = np.broadcast_to(T_WORLD_BASE @ scene._pose(scene.gripper_rotation(0.3), [0.35, -0.4, 0.3]), (n, 4, 4))
    open_val = 1.0 - rec.script.gripper
    gl = rec.T_world_cam @ GL_TO_CV
    path = root / "data" / f"{name}.hdf5"
    path.parent.mkdir(parents=True, exist_ok=True)
    blobs, size = _jpegs(rec.rgb)
    joints = np.zeros((n, 14))
    joints[:, 6], joints[:, 13] = open_val, 1.0
    with h5py.File(path, "w") as f:
        if v1:
            f.create_dataset("data_format_version", data="v1.0", dtype=h5py.string_dtype())
            f.create_dataset("instructions", data=json.dumps([rec.script.instruction]), dtype=h5py.string_dtype())
            f["additional_info/frequency"] = np.int32(15)
            for arm, poses, g in (("left", rec.tcp_world, open_val), ("right", right, np.ones(n))):
                f[f"state/{arm}_ee_poses"] = _wxyz(poses).astype(np.float32)
                f[f"state/{arm}_ee_joint_states"] = g[:, None].astype(np.float32)
                f[f"state/{arm}_arm_joint_states"] = np.zeros((n, 6), np.float32)
                f[f"action/{arm}_ee_poses"] = _wxyz(poses).astype(np.float32)
                f[f"action/{arm}_ee_joint_states"] = g[:, None].astype(np.float32)
                f[f"action/{arm}_arm_joint_states"] = np.zeros((n, 6), np.float32)
            cam = f.create_group("vision/cam_head")
            cam.create_dataset("colors", data=blobs, dtype=f"S{size}")
            cam["shape"] = np.asarray(rec.rgb.shape[1:], np.int32)
            if depth:
                cam.create_dataset("depths", data=rec.depth.astype(np.float64) * 1000.0, compression="lzf")
            cam["intrinsic_matrix"] = np.broadcast_to(rec.K, (n, 3, 3))
            cam["extrinsics_matrix"] = gl.astype(np.float32)
        else:
            cam = f.create_group("observation/head_camera")
            cam.create_dataset("rgb", data=blobs, dtype=f"S{size}")
            cam["intrinsic_cv"] = np.broadcast_to(rec.K, (n, 3, 3))
            cam["cam2world_gl"] = gl
            cam["extrinsic_cv"] = invert_rigid(rec.T_world_cam)[:, :3, :4]
            if depth:
                cam["depth"] = rec.depth.astype(np.float64) * 1000.0
            f["endpose/left_endpose"] = _wxyz(rec.tcp_world)
            f["endpose/right_endpose"] = _wxyz(right)
            f["endpose/left_gripper"] = open_val
            f["endpose/right_gripper"] = np.ones(n)
            f["joint_action/vector"] = joints
            f["pointcloud"] = np.zeros((n, 0))
    if not v1:
        (root / "instructions").mkdir(exist_ok=True)
        (root / "instructions" / f"{name}.json").write_text(json.dumps(
            {"seen": [rec.script.instruction], "unseen": ["do the task"]}))
    return path


# ---------------------------------------------------------------------------------------------- CALVIN

CALVIN_FOV_DEG = 50.0


def calvin_camera(H: int = 48, W: int = 48) -> tuple[np.ndarray, np.ndarray, dict]:
    """(K, T_base_cam, cameras.static config) of a lookAt camera seeing the synthetic workspace,
    K with PyBullet's +0.5 pixel centres."""
    eye, target = np.array([1.1, 0.05, 0.6]), np.array([0.45, 0.0, 0.02])
    T_base_cam = scene.look_at(eye, target)
    up = -(T_WORLD_BASE[:3, :3] @ T_base_cam[:3, 1])
    f = H / (2 * np.tan(np.deg2rad(CALVIN_FOV_DEG) / 2))
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    wf = (T_WORLD_BASE @ np.append(eye, 1))[:3]
    wt = (T_WORLD_BASE @ np.append(target, 1))[:3]
    cfg = {"_target_": "calvin_env.camera.static_camera.StaticCamera", "name": "static",
           "fov": CALVIN_FOV_DEG, "aspect": 1, "nearval": 0.01, "farval": 10, "width": W, "height": H,
           "look_from": wf.tolist(), "look_at": wt.tolist(), "up_vector": up.tolist()}
    return K, T_base_cam, cfg


def write_calvin(split: Path, rec: Recording, static_cfg: dict, start: int = 358,
                 lang_window: tuple[int, int] | None = (2, 13)) -> Path:
    """A split folder: per-frame npz, ep_start_end_ids.npy, .hydra/merged_config.yaml,
    lang_annotations/auto_lang_ann.npy (one window, global frame numbers)."""
    split.mkdir(parents=True, exist_ok=True)
    n, s = rec.steps, rec.script
    euler = Rotation.from_matrix(rec.tcp_world[:, :3, :3]).as_euler("xyz")
    command = np.where(s.gripper >= 0.5, -1.0, 1.0)
    for t in range(n):
        nxt = min(t + 1, n - 1)
        robot_obs = np.concatenate([rec.tcp_world[t, :3, 3], euler[t], [0.08 * (1 - s.gripper[t])],
                                    np.linspace(-1, 1, 7) * 0.1 * t, [command[t]]]).astype(np.float32)
        actions = np.concatenate([rec.tcp_world[nxt, :3, 3], euler[nxt], [command[nxt]]]).astype(np.float32)
        np.savez_compressed(split / f"episode_{start + t:07d}.npz", rgb_static=rec.rgb[t],
                            depth_static=rec.depth[t], rgb_gripper=np.zeros((84, 84, 3), np.uint8),
                            depth_gripper=np.zeros((84, 84), np.float32), robot_obs=robot_obs,
                            actions=actions, rel_actions=np.zeros(7, np.float32),
                            scene_obs=np.zeros(24, np.float32))
    np.save(split / "ep_start_end_ids.npy", np.array([[start, start + n - 1]]))
    np.save(split / "ep_lens.npy", np.array([n]))
    (split / ".hydra").mkdir(exist_ok=True)
    base_pos = T_WORLD_BASE[:3, 3].tolist()
    base_orn = Rotation.from_matrix(T_WORLD_BASE[:3, :3]).as_euler("xyz").tolist()
    (split / ".hydra" / "merged_config.yaml").write_text(yaml.safe_dump({
        "cameras": {"static": static_cfg, "gripper": {"fov": 75, "width": 84, "height": 84}},
        "scene": {"robot_base_position": base_pos, "robot_base_orientation": base_orn},
        "env": {"control_freq": 30}}))
    if lang_window is not None:
        (split / "lang_annotations").mkdir(exist_ok=True)
        ann = {"language": {"ann": [s.instruction], "task": ["pick_place"], "emb": np.zeros((1, 1, 384))},
               "info": {"indx": [(start + lang_window[0], start + lang_window[1])], "episodes": []}}
        np.save(split / "lang_annotations" / "auto_lang_ann.npy", ann, allow_pickle=True)
    return split


# ---------------------------------------------------------------------------------------------- RLBench

RLB_NEAR, RLB_FAR = 0.01, 4.5
ROBOT_HANDLE, CUBE_HANDLE, TABLE_HANDLE = 31, 86, 0x01_02_03  # the table handle uses all 3 bytes


def _rlbench_classes() -> tuple[type, type]:
    """Classes whose pickles name rlbench.demo.Demo / rlbench.backend.observation.Observation
    (the real module paths), made without RLBench."""
    return (type("Demo", (), {"__module__": "rlbench.demo"}),
            type("Observation", (), {"__module__": "rlbench.backend.observation"}))


def write_rlbench(root: Path, rec: Recording, task: str = "pick_up_cup", variation: int = 0,
                  episode: int = 0, all_variations: bool = False) -> Path:
    """<root>/<task>/variation<V>/episodes/episode<E>/ (or all_variations/...) with front_* PNGs
    and low_dim_obs.pkl; the pickle is written with RLBench's module paths."""
    var = root / task / ("all_variations" if all_variations else f"variation{variation}")
    folder = var / "episodes" / f"episode{episode}"
    n, s = rec.steps, rec.script
    d = np.clip((rec.depth - RLB_NEAR) / (RLB_FAR - RLB_NEAR), 0, 1)
    v = np.floor(d * (2 ** 24 - 1) + 0.5).astype(np.int64)
    handles = np.select([rec.seg == scene.ROBOT_ID, rec.seg == scene.CUBE_ID, rec.seg == scene.TABLE_ID],
                        [ROBOT_HANDLE, CUBE_HANDLE, TABLE_HANDLE], 0)
    for kind in ("rgb", "depth", "mask"):
        (folder / f"front_{kind}").mkdir(parents=True, exist_ok=True)
    for t in range(n):
        Image.fromarray(rec.rgb[t]).save(folder / "front_rgb" / f"{t}.png")
        packed = np.stack([(v[t] >> 16) & 255, (v[t] >> 8) & 255, v[t] & 255], -1).astype(np.uint8)
        Image.fromarray(packed).save(folder / "front_depth" / f"{t}.png")
        h = handles[t]
        Image.fromarray(np.stack([h & 255, (h >> 8) & 255, (h >> 16) & 255], -1).astype(np.uint8)).save(
            folder / "front_mask" / f"{t}.png")
    Demo, Observation = _rlbench_classes()
    K_rlb = rec.K @ np.diag([-1.0, -1.0, 1.0])
    observations = []
    for t in range(n):
        o = Observation()
        o.__dict__.update(
            front_rgb=None, front_depth=None, front_mask=None, joint_positions=np.full(7, 0.1 * t),
            joint_velocities=np.zeros(7), gripper_open=float(s.gripper[t] < 0.5),
            gripper_pose=matrix_to_pose(rec.tcp_world[t]), gripper_joint_positions=np.zeros(2),
            misc={"front_camera_extrinsics": rec.T_world_cam[t] @ PYREP_TO_CV,
                  "front_camera_intrinsics": K_rlb, "front_camera_near": RLB_NEAR,
                  "front_camera_far": RLB_FAR, "variation_index": variation})
        observations.append(o)
    demo = Demo()
    demo.__dict__.update(_observations=observations, random_seed=np.random.RandomState(0).get_state(),
                         num_reset_attempts=1)
    saved = {m: sys.modules.get(m) for m in ("rlbench", "rlbench.demo", "rlbench.backend", "rlbench.backend.observation")}
    sys.modules.update({"rlbench": types.ModuleType("rlbench"), "rlbench.backend": types.ModuleType("rlbench.backend"),
                        "rlbench.demo": types.ModuleType("rlbench.demo"),
                        "rlbench.backend.observation": types.ModuleType("rlbench.backend.observation")})
    sys.modules["rlbench.demo"].Demo, sys.modules["rlbench.backend.observation"].Observation = Demo, Observation
    try:
        (folder / "low_dim_obs.pkl").write_bytes(pickle.dumps(demo))
    finally:
        for m, mod in saved.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
    desc = pickle.dumps([s.instruction, "another phrasing"])
    (folder if all_variations else var).joinpath("variation_descriptions.pkl").write_bytes(desc)
    return folder


# ---------------------------------------------------------------------------------------------- ManiSkill

MS_ROBOT_ID, MS_CUBE_ID, MS_TABLE_ID = 5, 17, 2


def write_maniskill(folder: Path, rec: Recording, stem: str = "trajectory.rgb+depth+segmentation."
                    "pd_ee_delta_pose.physx_cpu", traj_ids: tuple[int, ...] = (0,), obs: bool = True) -> Path:
    """<stem>.h5 + <stem>.json as RecordEpisode writes them, with recorded observations."""
    folder.mkdir(parents=True, exist_ok=True)
    n, s = rec.steps, rec.script
    path = folder / f"{stem}.h5"
    base = np.concatenate([T_WORLD_BASE[:3, 3], _wxyz(T_WORLD_BASE)[3:]])
    with h5py.File(path, "w") as f:
        for tid in traj_ids:
            g = f.create_group(f"traj_{tid}")
            g["actions"] = np.tile(np.array([0.1, 0, 0, 0, 0, 0, 1.0], np.float32), (n - 1, 1))
            for k in ("terminated", "truncated", "success", "fail"):
                g[k] = np.zeros(n - 1, bool)
            g["rewards"] = np.zeros(n - 1, np.float32)
            finger = 0.04 * (1 - s.gripper)
            art = np.zeros((n, 13 + 18), np.float32)
            art[:, :7] = base
            g["env_states/articulations/panda"] = art
            g["env_states/actors/cube"] = np.zeros((n, 13), np.float32)
            if not obs:
                continue
            g["obs/agent/qpos"] = np.concatenate([np.zeros((n, 7)), finger[:, None], finger[:, None]], 1).astype(np.float32)
            g["obs/extra/tcp_pose"] = _wxyz(rec.tcp_world).astype(np.float32)
            cam = g.create_group("obs/sensor_data/base_camera")
            cam.create_dataset("rgb", data=rec.rgb, compression="gzip")
            cam.create_dataset("depth", data=np.round(rec.depth * 1000).astype(np.int16)[..., None],
                               compression="gzip")
            ids = np.select([rec.seg == scene.ROBOT_ID, rec.seg == scene.CUBE_ID, rec.seg == scene.TABLE_ID],
                            [MS_ROBOT_ID, MS_CUBE_ID, MS_TABLE_ID], 0)
            cam["segmentation"] = ids.astype(np.int16)[..., None]
            par = g.create_group("obs/sensor_param/base_camera")
            par["intrinsic_cv"] = np.broadcast_to(rec.K, (n, 3, 3)).astype(np.float32)
            par["extrinsic_cv"] = invert_rigid(rec.T_world_cam)[:, :3, :4].astype(np.float32)
            par["cam2world_gl"] = (rec.T_world_cam @ GL_TO_CV).astype(np.float32)
    path.with_suffix(".json").write_text(json.dumps({
        "env_info": {"env_id": "PickCube-v1", "max_episode_steps": 50,
                     "env_kwargs": {"obs_mode": "rgb+depth+segmentation", "control_mode": "pd_ee_delta_pose"}},
        "commit_info": {}, "source_type": "motionplanning", "source_desc": "fixture",
        "episodes": [{"episode_id": tid, "episode_seed": tid, "reset_kwargs": {}, "control_mode":
                      "pd_ee_delta_pose", "elapsed_steps": n - 1, "success": True} for tid in traj_ids]}))
    return path
