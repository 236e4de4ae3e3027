"""Writes a tiny DROID raw release (exact on-disk layout of formats-real.md §1.2-1.7) rendered
from the synthetic scene, so every pose and pixel has a known answer.

<root>/<LAB>/success/<date>/<Day_Mon_DD_HH:MM:SS_YYYY>/
    metadata_<LAB>+<hash>+<date-time>.json, trajectory.h5,
    recordings/MP4/<serial>-stereo.mp4 (left | right side by side, 60 fps container)
<root>/intrinsics.json, <root>/cam2base_extrinsics.json, <root>/aggregated-annotations-030724.json

`intrinsics_form` (one for all episodes, or one per episode) picks the intrinsics.json entry:
- "appf": {fx, fy, cx, cy, baseline_m, width, height} with K at twice the decoded size;
- "released": the DROID calibration release, {"cameraMatrix": [fx, cx, fy, cy], "width",
  "height"} with K at twice the decoded size and NO baseline (the reader takes it from the h5);
- "released_hd720": {"cameraMatrix": [fx, cx, fy, cy]} alone, K at HD720 1280x720 (the frames must
  be 16:9, e.g. 320x180 = HD720 / 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from scipy.spatial.transform import Rotation

from appf.transforms import synthetic_scene as scene
from tests.fixtures_media import write_mp4

SERIALS = {"ext1": "11111111", "ext2": "22222222", "wrist": "33333333"}
# Wrist camera rigidly on the TCP: 8 cm along TCP x, 10 cm back along the approach axis,
# camera axes = TCP axes (looks along the approach direction).
WRIST_OFFSET = scene.translation(0.08, 0.0, -0.10)


@dataclass
class DroidFixture:
    root: Path
    episode_dirs: list[Path] = field(default_factory=list)
    episode_ids: list[str] = field(default_factory=list)
    K: np.ndarray | None = None          # per-eye K at the decoded size
    baseline_m: float = scene.BASELINE_M
    scripts: list = field(default_factory=list)
    T_ext: list[dict[str, np.ndarray]] = field(default_factory=list)  # true camera-to-base


def euler6(T: np.ndarray) -> np.ndarray:
    """4x4 -> [x, y, z, rx, ry, rz] with scipy lowercase 'xyz' (DROID's writer)."""
    return np.concatenate([T[:3, 3], Rotation.from_matrix(T[:3, :3]).as_euler("xyz")])


def _render_pair(script, T_cam_t, K, H, W):
    T = script.steps
    frames = np.empty((T, H, 2 * W, 3), np.uint8)
    for t in range(T):
        Tc = T_cam_t[t] if T_cam_t.ndim == 3 else T_cam_t
        state = script.state(t)
        frames[t, :, :W] = scene.render_view(state, K, Tc, H, W)[0]
        frames[t, :, W:] = scene.render_view(state, K, scene.right_camera_pose(Tc), H, W)[0]
    return frames


def K_at(K: np.ndarray, from_wh: tuple[int, int], to_wh: tuple[int, int]) -> np.ndarray:
    """The same camera's K for another image size (pixel centres at integer coordinates)."""
    sx, sy = to_wh[0] / from_wh[0], to_wh[1] / from_wh[1]
    out = K.copy()
    out[0, 0], out[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    out[0, 2], out[1, 2] = (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5
    return out


def intrinsics_entry(K: np.ndarray, W: int, H: int, form: str) -> dict:
    """One camera's intrinsics.json entry in `form` (see the module doc) for true K at W x H."""
    if form == "released_hd720":
        assert W * 720 == H * 1280, "released_hd720 needs 16:9 frames"
        Kh = K_at(K, (W, H), (1280, 720))
        return {"cameraMatrix": [Kh[0, 0], Kh[0, 2], Kh[1, 1], Kh[1, 2]]}
    K2 = K_at(K, (W, H), (2 * W, 2 * H))
    if form == "released":
        return {"cameraMatrix": [K2[0, 0], K2[0, 2], K2[1, 1], K2[1, 2]], "width": 2 * W, "height": 2 * H}
    return {"fx": K2[0, 0], "fy": K2[1, 1], "cx": K2[0, 2], "cy": K2[1, 2],
            "baseline_m": scene.BASELINE_M, "width": 2 * W, "height": 2 * H}


def write_droid_raw(root: Path, n_episodes: int = 1, steps: int = 16, H: int = 48, W: int = 64,
                    lab: str = "TESTLAB", noisy_ext2_in_h5: bool = True,
                    intrinsics_form: str | list[str] = "appf") -> DroidFixture:
    """Episodes seeded 0..n-1. The h5 ext2 extrinsics are perturbed (5 cm, 3 deg) when
    `noisy_ext2_in_h5`, while cam2base_extrinsics.json carries the exact pose: only a reader that
    prefers the refined file reproduces the ext2 images."""
    fx = scene.intrinsics_from_fov(W, H)
    forms = [intrinsics_form] * n_episodes if isinstance(intrinsics_form, str) else list(intrinsics_form)
    fix = DroidFixture(root=root, K=fx)
    intr: dict = {}
    refined: dict = {}
    ann: dict = {}
    for k in range(n_episodes):
        script = scene.make_script(k, steps)
        T = steps
        eid = f"{lab}+{k:08x}+2024-02-13-10h-46m-{k:02d}s"
        ep_dir = root / lab / "success" / "2024-02-13" / f"Tue_Feb_13_10:46:{k:02d}_2024"
        (ep_dir / "recordings" / "MP4").mkdir(parents=True)
        # Cameras: ext1 = the script's camera, ext2 = the same moved 0.3 m sideways and re-aimed.
        T1 = script.T_base_cam
        T2 = scene.look_at(T1[:3, 3] + [0.0, 0.3, 0.0], [0.45, 0.0, 0.02])
        Tw = np.stack([P @ WRIST_OFFSET for P in script.tcp_poses])
        true = {"ext1": T1, "ext2": T2, "wrist": Tw}
        for role, Tc in true.items():
            write_mp4(ep_dir / "recordings" / "MP4" / f"{SERIALS[role]}-stereo.mp4",
                      _render_pair(script, Tc, fx, H, W), fps=60)
        noisy_T2 = T2 @ scene._pose(Rotation.from_euler("z", 3, degrees=True).as_matrix(), [0.05, 0, 0])
        h5_T2 = noisy_T2 if noisy_ext2_in_h5 else T2
        with h5py.File(ep_dir / "trajectory.h5", "w") as f:
            obs = f.create_group("observation")
            rs = obs.create_group("robot_state")
            rs["cartesian_position"] = np.stack([euler6(P) for P in script.tcp_poses])
            rs["gripper_position"] = script.gripper.astype(np.float64)
            rs["joint_positions"] = scene.synthetic_joint_positions(script.ee_pose())
            rs["joint_velocities"] = np.zeros((T, 7))
            ts = obs.create_group("timestamp/robot_state")
            t_ns = 1_700_000_000 * 10**9 + np.arange(T, dtype=np.int64) * 66_666_667
            ts["robot_timestamp_seconds"] = t_ns // 10**9
            ts["robot_timestamp_nanos"] = t_ns % 10**9
            ce = obs.create_group("camera_extrinsics")
            for role, Tc in (("ext1", T1), ("ext2", h5_T2), ("wrist", Tw)):
                Tl = np.broadcast_to(Tc, (T, 4, 4)) if Tc.ndim == 2 else Tc
                ce[f"{SERIALS[role]}_left"] = np.stack([euler6(P) for P in Tl])
                ce[f"{SERIALS[role]}_right"] = np.stack([euler6(scene.right_camera_pose(P)) for P in Tl])
            ct = obs.create_group("camera_type")
            for role in SERIALS:
                ct[SERIALS[role]] = np.full(T, 0 if role == "wrist" else 1)
            act = f.create_group("action")
            nxt = np.minimum(np.arange(T) + 1, T - 1)
            act["cartesian_position"] = np.stack([euler6(script.tcp_poses[i]) for i in nxt])
            act["gripper_position"] = script.gripper[nxt].astype(np.float64)
            act["cartesian_velocity"] = np.zeros((T, 6))
            f.attrs["version_number"] = "1.3"
            f.attrs["robot_serial_number"] = "panda-0001"
            f.attrs["current_task"] = "fallback task"
        meta = {"uuid": eid, "lab": lab, "success": True, "trajectory_length": T,
                "current_task": "fallback task", "robot_serial": "panda-0001",
                "droid_version": "1.3", "hdf5_path": str(ep_dir.relative_to(root / lab) / "trajectory.h5")}
        for role in SERIALS:
            meta[f"{role}_cam_serial"] = SERIALS[role]
            meta[f"{role}_mp4_path"] = f"recordings/MP4/{SERIALS[role]}.mp4"
        (ep_dir / f"metadata_{eid}.json").write_text(json.dumps(meta))
        intr[eid] = {SERIALS[r]: intrinsics_entry(fx, W, H, forms[k]) for r in SERIALS}
        refined[eid] = {SERIALS["ext2"]: euler6(T2).tolist(),
                        f"{SERIALS['ext2']}_metric_type": "Reprojection_error",
                        f"{SERIALS['ext2']}_quality_metric": 0.4}
        ann[eid] = {"language_instruction1": script.instruction,
                    "language_instruction2": "alt " + script.instruction,
                    "language_instruction3": ""}
        fix.episode_dirs.append(ep_dir)
        fix.episode_ids.append(eid)
        fix.scripts.append(script)
        fix.T_ext.append(true)
    (root / "intrinsics.json").write_text(json.dumps(intr))
    (root / "cam2base_extrinsics.json").write_text(json.dumps(refined))
    (root / "aggregated-annotations-030724.json").write_text(json.dumps(ann))
    return fix
