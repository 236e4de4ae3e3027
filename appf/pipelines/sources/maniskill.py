"""The `maniskill` source: ManiSkill3 trajectory files with recorded observations
(formats-sim.md §5): `<stem>.h5` + `<stem>.json` (RecordEpisode / replay_trajectory output).

Per trajectory group traj_<id> (T actions, T + 1 observations):
  actions (T, A) float32; env_states/articulations/<robot> (T+1, 13 + 2 dof) = root p, q (wxyz),
  velocities, qpos, qvel; obs/agent/qpos (T+1, dof); obs/extra/tcp_pose (T+1, 7) p + q wxyz
  (world); obs/sensor_data/<cam>/{rgb (T+1,H,W,3) uint8, depth (T+1,H,W,1) int16/uint16 mm,
  segmentation (T+1,H,W,1)}; obs/sensor_param/<cam>/{intrinsic_cv (T+1,3,3),
  extrinsic_cv (T+1,3,4) world -> camera OpenCV, cam2world_gl (T+1,4,4)}.
The JSON holds env_info (env_id, env_kwargs) and episodes[{episode_id, control_mode, ...}].

Replay: ManiSkill renders through SAPIEN on a Vulkan device; this machine class has none that
SAPIEN accepts (formats-sim.md §6), so appf reads recorded observations. Official demos carry
none: record them once where Vulkan works (`python -m mani_skill.trajectory.replay_trajectory
--traj-path X.h5 --obs-mode rgb+depth+segmentation --save-traj`), then read the output here; a
file without observations is refused with that command in the message.

Conventions applied: the robot base pose is the robot articulation's root pose (env_states,
wxyz -> xyzw), so ee pose and cameras are in the true base frame; tcp_pose wxyz -> xyzw; depth mm
-> m (0 stays invalid); extrinsic_cv inverted to camera-to-world; gripper closed fraction from the
two finger joints (Panda: 0.04 m open per finger); action[t] = actions[t] as stored in the file's
control mode, the last observation repeating the last action; language: none (ManiSkill has
none) unless `instruction` is given. Segmentation ids are per_scene_id (0 = background) with no
id -> name table in the file: categories come from `segment_ids`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import h5_array
from appf.pipelines.sources._sim_io import (
    fixed_intrinsics, segments_from_ids, world_cam_to_base, world_pose7_to_base, wxyz_to_xyzw,
)
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, RobotInfo, SourceError, Steps
from appf.transforms.geometry import invert_rigid, pose_to_matrix

DATASET = "maniskill3"
REPLAY_HINT = ("record observations with `python -m mani_skill.trajectory.replay_trajectory "
               "--traj-path FILE.h5 --obs-mode rgb+depth+segmentation --save-traj` on a machine "
               "with a Vulkan device, then read that output")


class ManiSkillSource:
    """ManiSkill3 trajectories with observations. Options: input (an .h5 or a folder of them),
    cameras (default ["base_camera"]), robot (articulation name; default: the one whose name
    starts with "panda", else the only one), finger_open_m (0.04), control_hz (20),
    instruction, segment_ids ({"robot": [...], "task_object": [...]})."""

    info = SourceInfo(
        name="maniskill",
        description="ManiSkill3 trajectory h5 + json with recorded rgb/depth/segmentation "
                    "observations; robot base pose from the file; 20 Hz",
        ground_truth_depth=True, segmentation=True, calibration=True, arms="1",
        default_depth="ground_truth", default_masks="none",
        default_crop=((-0.3, -0.6, -0.05), (0.9, 0.6, 0.6)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ("base_camera",),
                 robot: str | None = None, finger_open_m: float = 0.04, control_hz: float = 20.0,
                 instruction: str = "", segment_ids: dict[str, list[int]] | None = None,
                 **unused: Any) -> None:
        if not input:
            raise SourceError("maniskill needs source_options['input'] (--input PATH)")
        self.root = Path(input)
        if not self.root.exists():
            raise SourceError("input does not exist", path=str(self.root))
        self.cameras, self.robot = tuple(cameras), robot
        self.finger_open_m, self.control_hz, self.instruction = float(finger_open_m), float(control_hz), instruction
        self.segments = segments_from_ids(segment_ids, "segment_ids")

    # -- locate ----------------------------------------------------------------------------------

    def list_refs(self) -> list[EpisodeRef]:
        files = [self.root] if self.root.is_file() else sorted(self.root.rglob("*.h5"))
        refs = []
        for path in files:
            meta = path.with_suffix(".json")
            try:
                episodes = json.loads(meta.read_text())["episodes"]
                ids = [int(e["episode_id"]) for e in episodes]
            except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise SourceError(f"trajectory JSON missing or without episodes[].episode_id ({e!r})",
                                  path=str(meta), field="episodes") from e
            refs += [(f"{path.stem}/traj_{i}", str(path), i) for i in ids]
        return [EpisodeRef(DATASET, eid, k, uri=uri, options=(("traj", i),))
                for k, (eid, uri, i) in enumerate(sorted(refs))]

    # -- convert ---------------------------------------------------------------------------------

    def _robot_base(self, g: Any, path: Path, eid: str) -> tuple[np.ndarray, str]:
        arts = sorted(g["env_states/articulations"]) if "env_states/articulations" in g else []
        name = self.robot or next((a for a in arts if a.startswith("panda")), arts[0] if len(arts) == 1 else None)
        if name is None or name not in arts:
            raise SourceError(f"cannot tell the robot articulation among {arts}; pass the `robot` "
                              "source option", path=str(path), episode_id=eid, field="env_states/articulations")
        root = np.asarray(g[f"env_states/articulations/{name}"][0, :7], np.float64)
        return pose_to_matrix(np.concatenate([root[:3], wxyz_to_xyzw(root[3:7])])), name

    def _camera(self, g: Any, path: Path, eid: str, cam: str, n: int, T_world_base: np.ndarray) -> CameraStream:
        sd, sp = f"obs/sensor_data/{cam}", f"obs/sensor_param/{cam}"
        if sd not in g:
            have = sorted(g["obs/sensor_data"]) if "obs/sensor_data" in g else []
            raise SourceError(f"camera {cam!r} not recorded (has {have})", path=str(path), episode_id=eid, field=sd)
        rgb = h5_array(g, f"{sd}/rgb", path, eid, rows=n)
        depth_mm = h5_array(g, f"{sd}/depth", path, eid, rows=n).reshape(rgb.shape[:3])
        K = fixed_intrinsics(h5_array(g, f"{sp}/intrinsic_cv", path, eid, rows=n, trailing=(3, 3)),
                             path, eid, f"{sp}/intrinsic_cv")
        E = h5_array(g, f"{sp}/extrinsic_cv", path, eid, rows=n)
        if E.shape[1:] not in ((3, 4), (4, 4)):
            raise SourceError(f"extrinsic_cv must be (T, 3, 4) or (T, 4, 4), found {E.shape}",
                              path=str(path), episode_id=eid, field=f"{sp}/extrinsic_cv")
        W2C = np.tile(np.eye(4), (n, 1, 1))
        W2C[:, :3, :4] = E[:, :3, :4]
        T_base = world_cam_to_base(T_world_base, invert_rigid(W2C))
        fixed = np.allclose(T_base, T_base[0], atol=1e-6)
        seg = None
        if self.segments and f"{sd}/segmentation" in g:
            seg = h5_array(g, f"{sd}/segmentation", path, eid, rows=n).reshape(rgb.shape[:3]).astype(np.int32)
        return CameraStream(
            name=cam, rgb=rgb.astype(np.uint8), intrinsics=K, T_base_cam=T_base[0] if fixed else T_base,
            depth=np.clip(depth_mm.astype(np.float32), 0, None) / 1000.0,
            segmentation=seg, segments=self.segments if seg is not None else (),
            depth_provenance="simulator")

    # -- read ------------------------------------------------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        import h5py

        path, eid, traj = Path(ref.uri), ref.episode_id, f"traj_{int(ref.option('traj'))}"
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise SourceError(f"cannot open HDF5: {e}", path=str(path), episode_id=eid, field="file") from e
        with f:
            if traj not in f:
                raise SourceError("trajectory listed in the JSON is not in the h5", path=str(path),
                                  episode_id=eid, field=traj)
            g = f[traj]
            if "obs/sensor_data" not in g:
                raise SourceError(f"no camera observations recorded; {REPLAY_HINT}", path=str(path),
                                  episode_id=eid, field=f"{traj}/obs/sensor_data")
            actions = h5_array(g, "actions", path, eid)
            n = len(actions) + 1
            tcp = h5_array(g, "obs/extra/tcp_pose", path, eid, rows=n, trailing=(7,)).astype(np.float64)
            qpos = h5_array(g, "obs/agent/qpos", path, eid, rows=n).astype(np.float64)
            T_world_base, robot = self._robot_base(g, path, eid)
            cameras = {c: self._camera(g, path, eid, c, n, T_world_base) for c in self.cameras}
        return self._assemble(eid, path, tcp, qpos, actions, T_world_base, robot, cameras)

    def _assemble(self, eid: str, path: Path, tcp: np.ndarray, qpos: np.ndarray, actions: np.ndarray,
                  T_world_base: np.ndarray, robot: str, cameras: dict[str, CameraStream]) -> Episode:
        n = len(tcp)
        ee = world_pose7_to_base(T_world_base, np.concatenate([tcp[:, :3], wxyz_to_xyzw(tcp[:, 3:])], 1))
        closed = np.clip(1.0 - np.abs(qpos[:, -2:]).mean(axis=1) / self.finger_open_m, 0.0, 1.0)
        action = np.concatenate([actions, actions[-1:]], axis=0).astype(np.float64)
        notes = [f"base frame: root pose of articulation {robot!r} (env_states)",
                 "ee_pose: obs/extra/tcp_pose (world, wxyz) -> base, xyzw",
                 f"gripper: 1 - mean finger joint / {self.finger_open_m} m",
                 "depth: int16/uint16 mm -> m; extrinsic_cv (world->camera) inverted"]
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=self.instruction,
            robot=RobotInfo(robot, 1), control_hz=self.control_hz,
            steps=Steps(timestamp=np.arange(n) / self.control_hz, ee_pose=ee[:, None],
                        gripper=closed[:, None], joint_positions=qpos[:, :-2], action=action),
            cameras=cameras, action_space=self._action_space(path), conversions=notes,
            metadata={"file": str(path)})

    @staticmethod
    def _action_space(path: Path) -> str:
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            mode = meta["episodes"][0].get("control_mode") or meta["env_info"]["env_kwargs"].get("control_mode")
        except (OSError, json.JSONDecodeError, KeyError, IndexError, TypeError):
            mode = "unknown"
        return (f"action[t] = ManiSkill3 `actions[t]` as recorded, control mode {mode!r} (Panda: "
                "pd_joint_pos = 7 joint targets rad + gripper; pd_ee_delta_pose = normalised "
                "delta pose + gripper; gripper +1 = open, -1 = closed); the last observation "
                "repeats the last action")
