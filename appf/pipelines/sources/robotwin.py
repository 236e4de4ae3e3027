"""The `robotwin` source: RoboTwin 2.0 episode HDF5 files (formats-sim.md §2), both layouts.

Classic layout (`envs/utils/pkl2hdf5.py` until 2026-08-07; all public releases):
  <task>/<config>/data/episode<i>.hdf5, <task>/<config>/instructions/episode<i>.json
  observation/<cam>/rgb (T,) JPEG bytes (RGB encoded as if BGR: decodes to RGB)
  observation/<cam>/{intrinsic_cv (T,3,3), cam2world_gl (T,4,4), extrinsic_cv (T,3,4) world->cam}
  observation/<cam>/depth (T,H,W) float64 mm, 0 = background (only when the collector enabled it)
  endpose/{left,right}_endpose (T,7) [x, y, z, qw, qx, qy, qz] world; endpose/{left,right}_gripper
  (T,) 1 = open, 0 = closed; joint_action/vector (T, 2 * (arm + 1)) drive targets.
XPolicyLab v1.0 layout (HEAD since 2026-08-07, `create_xpolicylab_hdf5`): `data_format_version`
  "v1.0", `instructions` (JSON list), state/* = frames[:-1], action/* = frames[1:],
  vision/cam_{head,left_wrist,right_wrist,third_view}/{colors, depths, intrinsic_matrix,
  extrinsics_matrix}; extrinsics_matrix is cam2world_gl (camera->world, OpenGL axes): the writer
  takes it first (`extrinsics_kind: world_to_camera_cv` reads files written by its fallback).

Conventions applied (Episode.conversions): camera-to-world OpenGL -> OpenCV (T @ diag(1,-1,-1,1));
world -> robot base with `T_world_base` (RoboTwin stores no base pose for its bimanual platforms:
default identity, i.e. the world frame serves as base, said in the conversions); quaternions wxyz
-> xyzw; gripper 1 - value (RoboTwin 1 = open); depth mm -> m (0 stays invalid); rate 250/15 Hz
(a frame every 15 sim steps at 1/250 s). Segmentation is stored as palette colours without the
id -> actor table, so it is not read. Dirty cases -> SourceError: unknown layout, missing camera,
JPEG that does not decode, length mismatches, K that changes, cam2world_gl and extrinsic_cv that
disagree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import h5_array
from appf.pipelines.sources._sim_io import (
    GL_TO_CV, fixed_intrinsics, lazy_jpegs, pose_option, world_cam_to_base, world_pose7_to_base,
    wxyz_to_xyzw,
)
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, RobotInfo, SourceError, Steps
from appf.transforms.geometry import invert_rigid

DATASET = "robotwin2"
CONTROL_HZ = 250.0 / 15.0
V1_CAMERAS = {"head_camera": "cam_head", "left_camera": "cam_left_wrist",
              "right_camera": "cam_right_wrist", "front_camera": "cam_third_view"}
ARMS = ("left", "right")
ACTION_SPACE = (
    "action[t] = the joint drive targets of step t + 1 (RoboTwin joint_action/vector: left arm "
    "joints (rad), left gripper (1 = open, 0 = closed, as stored), right arm joints, right "
    "gripper); the last step repeats its own targets")


def _extrinsics(T_stored: np.ndarray, kind: str) -> np.ndarray:
    """Stored camera matrices (T, 4, 4) -> camera-to-world, OpenCV axes."""
    if kind == "cam2world_gl":
        return T_stored @ GL_TO_CV
    return invert_rigid(T_stored)  # world_to_camera_cv (3x4 padded to 4x4)


class RoboTwinSource:
    """RoboTwin 2.0 episodes. Options: input (an episode .hdf5 or a folder searched
    recursively), cameras (classic names; default ["head_camera"]), T_world_base (4x4 or
    [x, y, z, qx, qy, qz, qw]; default identity), instruction_set ("seen" or "unseen"),
    extrinsics_kind (v1.0 files: "cam2world_gl" or "world_to_camera_cv")."""

    info = SourceInfo(
        name="robotwin",
        description="RoboTwin 2.0 HDF5 (classic and XPolicyLab v1.0): JPEG RGB, K and extrinsics "
                    "per camera, depth (mm) when recorded, two arms, ~16.7 Hz",
        ground_truth_depth=True, calibration=True, arms="2", default_depth="ground_truth",
        default_masks="none", default_crop=((-0.6, -0.45, 0.70), (0.6, 0.45, 1.30)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ("head_camera",),
                 T_world_base: Any = None, instruction_set: str = "seen",
                 extrinsics_kind: str = "cam2world_gl", **unused: Any) -> None:
        if not input:
            raise SourceError("robotwin needs source_options['input'] (--input PATH): an episode "
                              ".hdf5 or a folder of them")
        self.root = Path(input)
        if not self.root.exists():
            raise SourceError("input does not exist", path=str(self.root))
        bad = [c for c in cameras if c not in V1_CAMERAS]
        if bad:
            raise SourceError(f"unknown cameras {bad}; choose among {sorted(V1_CAMERAS)}", field="cameras")
        if instruction_set not in ("seen", "unseen"):
            raise SourceError("instruction_set must be 'seen' or 'unseen'", field="instruction_set")
        if extrinsics_kind not in ("cam2world_gl", "world_to_camera_cv"):
            raise SourceError("extrinsics_kind must be cam2world_gl or world_to_camera_cv",
                              field="extrinsics_kind")
        self.cameras = tuple(cameras)
        self.base_given = T_world_base is not None
        self.T_world_base = np.eye(4) if T_world_base is None else pose_option(T_world_base, "T_world_base")
        self.instruction_set, self.extrinsics_kind = instruction_set, extrinsics_kind

    def list_refs(self) -> list[EpisodeRef]:
        files = [self.root] if self.root.is_file() else sorted(self.root.rglob("*.hdf5"))
        base = self.root.parent if self.root.is_file() else self.root
        return [EpisodeRef(DATASET, p.relative_to(base).with_suffix("").as_posix(), i, uri=str(p))
                for i, p in enumerate(files)]

    # -- steps -----------------------------------------------------------------------------------

    def _classic_steps(self, f: Any, path: Path, eid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(h5_array(f, "endpose/left_endpose", path, eid, trailing=(7,)))
        poses = [h5_array(f, f"endpose/{a}_endpose", path, eid, rows=n, trailing=(7,)) for a in ARMS]
        grip = [h5_array(f, f"endpose/{a}_gripper", path, eid, rows=n).reshape(n) for a in ARMS]
        joints = h5_array(f, "joint_action/vector", path, eid, rows=n)
        return np.stack(poses, 1), np.stack(grip, 1), joints, joints

    def _v1_steps(self, f: Any, path: Path, eid: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(h5_array(f, "state/left_ee_poses", path, eid, trailing=(7,)))
        poses = [h5_array(f, f"state/{a}_ee_poses", path, eid, rows=n, trailing=(7,)) for a in ARMS]
        grip = [h5_array(f, f"state/{a}_ee_joint_states", path, eid, rows=n).reshape(n) for a in ARMS]

        def joint_vector(group: str) -> np.ndarray:
            parts = []
            for a in ARMS:
                parts += [h5_array(f, f"{group}/{a}_arm_joint_states", path, eid, rows=n),
                          h5_array(f, f"{group}/{a}_ee_joint_states", path, eid, rows=n).reshape(n, 1)]
            return np.concatenate(parts, axis=1)
        return np.stack(poses, 1), np.stack(grip, 1), joint_vector("state"), joint_vector("action")

    # -- cameras ---------------------------------------------------------------------------------

    def _camera(self, f: Any, path: Path, eid: str, cam: str, n: int, v1: bool,
                notes: list[str]) -> CameraStream:
        g = f"vision/{V1_CAMERAS[cam]}" if v1 else f"observation/{cam}"
        if g not in f:
            raise SourceError(f"camera {cam!r} not in the file (has: {sorted(f[g.split('/')[0]])})",
                              path=str(path), episode_id=eid, field=g)
        rgb = lazy_jpegs(f, path, f"{g}/{'colors' if v1 else 'rgb'}", n, eid)
        K = fixed_intrinsics(h5_array(f, f"{g}/{'intrinsic_matrix' if v1 else 'intrinsic_cv'}", path,
                                      eid, trailing=(3, 3))[:n], path, eid, f"{g}/intrinsics")
        key = f"{g}/{'extrinsics_matrix' if v1 else 'cam2world_gl'}"
        kind = self.extrinsics_kind if v1 else "cam2world_gl"
        T_world_cam = _extrinsics(h5_array(f, key, path, eid, trailing=(4, 4))[:n].astype(np.float64), kind)
        if len(T_world_cam) != n:
            raise SourceError(f"{len(T_world_cam)} camera poses for {n} steps", path=str(path),
                              episode_id=eid, field=key)
        if not v1 and f"{g}/extrinsic_cv" in f:
            self._check_agree(f, path, eid, g, T_world_cam, n)
        depth = None
        dkey = f"{g}/{'depths' if v1 else 'depth'}"
        if dkey in f and f[dkey].ndim == 3 and len(f[dkey]) >= n:
            depth = np.asarray(f[dkey][:n], np.float32)
            depth *= np.float32(1e-3)
            depth[~(depth > 0)] = 0.0  # NaN and negative -> invalid
            if depth.shape[1:] != rgb.shape[1:3]:
                raise SourceError(f"depth {depth.shape[1:]} and RGB {rgb.shape[1:3]} sizes differ",
                                  path=str(path), episode_id=eid, field=dkey)
            notes.append(f"{cam}: depth mm (float64) -> m; 0 = background")
        notes.append(f"{cam}: {kind} -> camera-to-world OpenCV -> camera-to-base")
        T_base_cam = world_cam_to_base(self.T_world_base, T_world_cam)
        fixed = np.allclose(T_base_cam, T_base_cam[0], atol=1e-9)
        return CameraStream(name=cam, rgb=rgb, intrinsics=K, T_base_cam=T_base_cam[0] if fixed else T_base_cam,
                            depth=depth, depth_provenance="simulator" if depth is not None else "")

    @staticmethod
    def _check_agree(f: Any, path: Path, eid: str, g: str, T_world_cam: np.ndarray, n: int) -> None:
        E = np.asarray(f[f"{g}/extrinsic_cv"][:n], np.float64)
        if E.shape[1:] != (3, 4):
            raise SourceError(f"extrinsic_cv must be (T, 3, 4), found {E.shape}", path=str(path),
                              episode_id=eid, field=f"{g}/extrinsic_cv")
        err = np.abs(invert_rigid(T_world_cam)[:, :3, :4] - E).max()
        if err > 1e-3:
            raise SourceError(f"cam2world_gl and extrinsic_cv disagree by {err:.3g} (m or rad)",
                              path=str(path), episode_id=eid, field=f"{g}/extrinsic_cv")

    # -- language --------------------------------------------------------------------------------

    def _instruction(self, f: Any, path: Path, v1: bool) -> str:
        if v1:
            raw = f["instructions"][()] if "instructions" in f else b"[]"
            items = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        else:
            j = path.parent.parent / "instructions" / f"{path.stem}.json"
            items = json.loads(j.read_text()).get(self.instruction_set, []) if j.is_file() else []
        return str(items[0]) if items else ""

    # -- read ------------------------------------------------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        import h5py

        path, eid = Path(ref.uri), ref.episode_id
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise SourceError(f"cannot open HDF5: {e}", path=str(path), episode_id=eid, field="file") from e
        with f:
            v1 = "vision" in f and "state" in f
            if not v1 and "observation" not in f:
                raise SourceError("neither the classic (observation/, endpose/) nor the v1.0 "
                                  "(vision/, state/) RoboTwin layout", path=str(path), episode_id=eid,
                                  field="layout")
            pose_wxyz, grip_open, joints, targets = (self._v1_steps if v1 else self._classic_steps)(f, path, eid)
            n = len(pose_wxyz)
            notes = [f"layout: {'XPolicyLab v1.0' if v1 else 'classic'}"]
            cameras = {c: self._camera(f, path, eid, c, n, v1, notes) for c in self.cameras}
            lang = self._instruction(f, path, v1)
        return self._assemble(eid, path, pose_wxyz, grip_open, joints, targets, cameras, lang, notes, v1)

    def _assemble(self, eid: str, path: Path, pose_wxyz: np.ndarray, grip_open: np.ndarray,
                  joints: np.ndarray, targets: np.ndarray, cameras: dict[str, CameraStream],
                  lang: str, notes: list[str], v1: bool) -> Episode:
        n = len(pose_wxyz)
        pose_xyzw = np.concatenate([pose_wxyz[..., :3], wxyz_to_xyzw(pose_wxyz[..., 3:])], axis=-1)
        ee = world_pose7_to_base(self.T_world_base, pose_xyzw)
        action = targets if v1 else np.concatenate([targets[1:], targets[-1:]], axis=0)
        notes += ["ee_pose: endpose (world, wxyz, RoboTwin's TCP offset) -> base, xyzw",
                  "gripper: 1 - stored value (RoboTwin 1 = open)",
                  "base frame: " + ("T_world_base from the source options" if self.base_given else
                                    "the world frame (RoboTwin stores no robot-base pose; pass T_world_base)")]
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=lang,
            robot=RobotInfo("robotwin_bimanual", 2), control_hz=CONTROL_HZ,
            steps=Steps(timestamp=np.arange(n) / CONTROL_HZ, ee_pose=ee,
                        gripper=np.clip(1.0 - grip_open.astype(np.float64), 0.0, 1.0),
                        joint_positions=np.asarray(joints, np.float64),
                        action=np.asarray(action, np.float64)),
            cameras=cameras, action_space=ACTION_SPACE, conversions=notes,
            metadata={"file": str(path), "layout": "v1.0" if v1 else "classic"})
