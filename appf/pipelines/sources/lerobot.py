"""The `lerobot` source: LeRobot datasets, format v3.0 and v2.1 (dp3-training.md §3), from a local
folder or a Hub dataset id `owner/name[@revision]` (files fetched one by one as episodes need them,
through huggingface_hub's cache; `HF_HUB_OFFLINE=1` reads the cache only). File layout and errors:
_lerobot_io (files, tables) and _lerobot_video (MP4 frames).

One episode of the episode table = one canonical episode, id `episode_NNNNNN` (episode_index).
- images: each camera is a `video` feature (frames decoded by index from the MP4, PyAV) or an
  `image` feature (PNG/JPEG bytes in the data parquet). `cameras` option: feature keys or their
  short names (`observation.images.front` -> camera "front"); default every image/video feature
  not used as depth. Depth-map videos (`info["video.is_depth_map"]`, newer LeRobot releases' 12-bit
  quantised depth) are not decoded: asking for one is a SourceError.
- depth: `depth_keys={camera: feature}`, an `image` feature (16-bit PNG) or a numeric (H, W[, 1])
  feature, times `depth_scale_m` (default 0.001: millimetres). LeRobot has no depth convention
  of its own for these; say what the units are.
- state: LeRobot stores one flat vector; `state_layout` says where the TCP pose and the gripper are:
  "appf" (what `appf export lerobot` writes: `observation.state` = per arm xyz m, quat xyzw,
  gripper 0 open / 1 closed), "droid" (the DROID 1.0.1 port: `observation.state.cartesian_position`
  [x, y, z m, roll, pitch, yaw rad, scipy "xyz"] FLANGE pose, `observation.state.gripper_position`
  0 open / 1 closed, `observation.state.joint_position`), or a dict {ee_pose_key, ee_pose_format
  ("xyz_euler_xyz" | "xyz_quat_xyzw" | "xyz_quat_wxyz"), ee_pose_start (index of x, default 0),
  gripper_key, gripper_index, gripper_open_is_one (bool, default false), joints_key}. Default
  "auto": droid when the DROID features are there, appf when `observation.state` carries appf's
  names, else a SourceError listing the features.
- action: `action_key` (default "action") as stored, float64; action_space names it and its names.
- language: the episode's task from the task table (first frame's `task_index`); all of the
  episode's tasks in metadata["tasks"].
- timestamps: the `timestamp` column (s) relative to the first frame.
- calibration: LeRobot stores none. `intrinsics={camera: 3x3}` (pixels, at the stored resolution)
  and `extrinsics={camera: 4x4 camera-to-base or [x, y, z, rx, ry, rz]}` from the user, else
  intrinsics_unknown / extrinsics_unknown (as bridge_raw: depth backends that estimate K work; the
  point-cloud stage fails the episode with the "no extrinsics" message). `extrinsics_keys={camera:
  feature}` reads a per-frame 6-vector feature (first frame) as a constant camera-to-base pose:
  for DROID 1.0.1 `camera_extrinsics.exterior_1_left` / `..._2_left` (meaning [inferred], as
  droid_rlds's episode_extrinsics; never use `camera_extrinsics.wrist_left` for the moving wrist).

DROID 1.0.1 (`lerobot/droid_1.0.1`, 15 fps, 180x320 views):
  source_options: {input: lerobot/droid_1.0.1, state_layout: droid, cameras: [exterior_1_left],
  extrinsics_keys: {exterior_1_left: camera_extrinsics.exterior_1_left}, intrinsics:
  {exterior_1_left: <ZED K scaled to 320x180>}} (or leave intrinsics out and use --depth moge2).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._lerobot_io import (
    DatasetFiles, EpisodeEntry, episode_rows, lazy_parquet_images, load_episodes, load_info, load_tasks,
    numeric_column,
)
from appf.pipelines.sources._lerobot_video import lazy_episode_video
from appf.pipelines.sources._real_io import continuous_quats, relative_timestamps, xyz_euler_to_pose7
from appf.pipelines.sources._rlds_io import user_matrix, user_pose
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, FrameArray, RobotInfo, SourceError, Steps

APPF_STATE_NAMES = ("x", "y", "z", "qx", "qy", "qz", "qw", "gripper")
LAYOUTS: dict[str, dict[str, Any]] = {
    "appf": {"ee_pose_key": "observation.state", "ee_pose_format": "appf_state",
             "gripper_key": "observation.state", "gripper_index": 7, "joints_key": None},
    "droid": {"ee_pose_key": "observation.state.cartesian_position", "ee_pose_format": "xyz_euler_xyz",
              "gripper_key": "observation.state.gripper_position", "gripper_index": 0,
              "joints_key": "observation.state.joint_position"},
}
POSE_FORMATS = ("appf_state", "xyz_euler_xyz", "xyz_quat_xyzw", "xyz_quat_wxyz")


def feature_names(feature: dict[str, Any]) -> list[str]:
    """A feature's `names` as a flat list (LeRobot writes a list or {"axes": [...]})."""
    names = feature.get("names")
    if isinstance(names, dict):
        names = next(iter(names.values()), None)
    return [str(n) for n in names] if isinstance(names, list) else []


def detect_layout(features: dict[str, Any]) -> str:
    """"droid" or "appf" from the features, else SourceError."""
    if "observation.state.cartesian_position" in features:
        return "droid"
    names = feature_names(features.get("observation.state", {}))
    if names and len(names) % 8 == 0 and all(
            n.endswith(APPF_STATE_NAMES[i % 8]) for i, n in enumerate(names)):
        return "appf"
    raise SourceError("cannot tell where the TCP pose and gripper are in this dataset: set "
                      "source_options.state_layout ('appf', 'droid' or a dict, see the lerobot "
                      f"source's docstring); features: {sorted(features)}", field="state_layout")


def pose7_from(values: np.ndarray, fmt: str) -> np.ndarray:
    """(T, >=6|7) in `fmt` -> (T, 7) xyz + quaternion xyzw (sign-continuous)."""
    if fmt == "xyz_euler_xyz":
        return xyz_euler_to_pose7(values[:, :6])
    q = values[:, 3:7] if fmt == "xyz_quat_xyzw" else values[:, [4, 5, 6, 3]]
    return np.concatenate([values[:, :3], continuous_quats(q)], axis=1)


class LeRobotSource:
    """LeRobot v3.0 / v2.1 datasets (see the module docstring). Options: input, cameras,
    depth_keys, depth_scale_m, state_layout, action_key, intrinsics, extrinsics, extrinsics_keys,
    dataset (name in episode keys; default the folder / repo name), robot."""

    info = SourceInfo(
        name="lerobot",
        description="LeRobot datasets v3.0 / v2.1 (local folder or Hub id): MP4/PNG views, state, "
                    "action, tasks; no calibration (from options)",
        stereo=False, sensor_depth=True, ground_truth_depth=False, segmentation=False,
        calibration=False, arms="1-2", default_depth="moge2", default_masks="none", default_crop=None,
    )

    def __init__(self, input: str | None = None, cameras: list[str] | None = None,
                 depth_keys: dict[str, str] | None = None, depth_scale_m: float = 0.001,
                 state_layout: str | dict[str, Any] = "auto", action_key: str = "action",
                 intrinsics: dict[str, Any] | None = None, extrinsics: dict[str, Any] | None = None,
                 extrinsics_keys: dict[str, str] | None = None, dataset: str | None = None,
                 robot: str | None = None, **unused: Any) -> None:
        if not input:
            raise SourceError("lerobot needs source_options['input'] (--input PATH or owner/name[@rev])")
        self.files = DatasetFiles(str(input))
        self.meta = load_info(self.files)
        self.features: dict[str, Any] = self.meta["features"]
        self.fps = float(self.meta["fps"])
        self.layout = self._layout(state_layout)
        self.action_key = self._require_feature(action_key, "action_key")
        self.depth_keys = {c: self._require_feature(k, f"depth_keys[{c!r}]") for c, k in (depth_keys or {}).items()}
        self.depth_scale_m = float(depth_scale_m)
        self.cameras = self._cameras(cameras)
        stray = sorted(set(self.depth_keys) - set(self.cameras))
        if stray:
            raise SourceError(f"depth_keys name cameras {stray} that are not read; cameras: {sorted(self.cameras)}",
                              field="depth_keys")
        self.intrinsics = {k: user_matrix(v, (3, 3), f"intrinsics[{k!r}]") for k, v in (intrinsics or {}).items()}
        self.extrinsics = {k: user_pose(v, f"extrinsics[{k!r}]") for k, v in (extrinsics or {}).items()}
        self.extrinsics_keys = {c: self._require_feature(k, f"extrinsics_keys[{c!r}]")
                                for c, k in (extrinsics_keys or {}).items()}
        name = dataset or (Path(self.files.spec).name if self.files.root is not None
                           else str(self.files.repo_id).split("/")[-1])
        self.dataset = re.sub(r"[^\w.-]", "_", name)
        self.robot = robot or str(self.meta.get("robot_type") or "unknown")
        self._task_table: dict[int, str] | None = None

    # -- options -------------------------------------------------------------------------------

    def _require_feature(self, key: str, option: str) -> str:
        if key not in self.features:
            raise SourceError(f"feature {key!r} not in the dataset; features: {sorted(self.features)}",
                              path=self.files.describe("meta/info.json"), field=option)
        return key

    def _layout(self, layout: str | dict[str, Any]) -> dict[str, Any]:
        if layout == "auto":
            layout = detect_layout(self.features)
        spec = dict(LAYOUTS[layout]) if isinstance(layout, str) and layout in LAYOUTS else layout
        if not isinstance(spec, dict):
            raise SourceError(f"state_layout {layout!r}: expected 'auto', {sorted(LAYOUTS)} or a dict",
                              field="state_layout")
        spec = {"ee_pose_start": 0, "gripper_open_is_one": False, "joints_key": None, **spec}
        if spec.get("ee_pose_format") not in POSE_FORMATS:
            raise SourceError(f"ee_pose_format must be one of {POSE_FORMATS}", field="state_layout.ee_pose_format")
        for k in ("ee_pose_key", "gripper_key", "joints_key"):
            if spec.get(k) is not None:
                self._require_feature(spec[k], f"state_layout.{k}")
        return spec

    def _cameras(self, requested: list[str] | None) -> dict[str, str]:
        """camera name -> feature key."""
        visual = {k: f for k, f in self.features.items() if f.get("dtype") in ("video", "image")}
        short = lambda k: k.split("observation.images.", 1)[-1]  # noqa: E731
        depth = set(self.depth_keys.values())
        if requested is None:
            keys = [k for k, f in visual.items() if k not in depth
                    and not f.get("info", {}).get("video.is_depth_map", False)]
        else:
            by_name = {short(k): k for k in visual} | {k: k for k in visual}
            missing = [c for c in requested if c not in by_name]
            if missing:
                raise SourceError(f"cameras {missing} not among the image/video features "
                                  f"{sorted(visual)}", path=self.files.describe("meta/info.json"),
                                  field="cameras")
            keys = [by_name[c] for c in requested]
        for k in keys:
            if visual[k].get("info", {}).get("video.is_depth_map", False):
                raise SourceError("depth-map videos (12-bit quantised, newer LeRobot) are not decoded "
                                  "by appf", path=self.files.describe("meta/info.json"), field=k)
        if not keys:
            raise SourceError("the dataset has no image or video feature", field="cameras",
                              path=self.files.describe("meta/info.json"))
        return {short(k): k for k in keys}

    # -- episodes ------------------------------------------------------------------------------

    def list_refs(self) -> list[EpisodeRef]:
        entries = load_episodes(self.files, self.meta)
        return [EpisodeRef(self.dataset, f"episode_{e.index:06d}", i, uri=self.files.spec,
                           options=(("entry", e),)) for i, e in enumerate(entries)]

    def read(self, ref: EpisodeRef) -> Episode:
        entry: EpisodeEntry = ref.option("entry")
        eid = ref.episode_id
        rows = self._rows(entry, eid)
        steps, conversions = self._steps(rows, entry, eid)
        cameras = {name: self._camera(name, key, entry, rows, eid, conversions)
                   for name, key in self.cameras.items()}
        tasks = self._tasks(rows, entry, eid)
        names = feature_names(self.features[self.action_key])
        return Episode(
            dataset=self.dataset, episode_id=eid, language_instruction=tasks[0] if tasks else "",
            robot=RobotInfo(self.robot, steps.gripper.shape[1]), control_hz=self.fps, steps=steps,
            cameras=cameras, conversions=conversions,
            action_space=f"LeRobot `{self.action_key}` as stored" + (f" ({', '.join(names)})" if names else ""),
            metadata={"lerobot": {"input": self.files.spec, "codebase_version": self.meta["codebase_version"],
                                  "episode_index": entry.index, "data_file": entry.data_file},
                      "tasks": tasks, "calibration": "none in LeRobot; from source options"},
        )

    def _rows(self, entry: EpisodeEntry, eid: str) -> dict[str, np.ndarray]:
        lay = self.layout
        keys = {lay["ee_pose_key"], lay["gripper_key"], self.action_key, "timestamp", "task_index",
                *self.extrinsics_keys.values()}
        keys |= {lay["joints_key"]} if lay["joints_key"] else set()
        keys |= {k for k in self.depth_keys.values() if self.features[k]["dtype"] not in ("image", "video")}
        cols = episode_rows(self.files, entry, sorted(keys), eid)
        where = self.files.describe(entry.data_file)
        return {k: numeric_column(c, where, eid, k) for k, c in cols.items()}

    def _steps(self, rows: dict[str, np.ndarray], entry: EpisodeEntry, eid: str) -> tuple[Steps, list[str]]:
        lay, T = self.layout, entry.length
        where = self.files.describe(entry.data_file)
        pose_raw = rows[lay["ee_pose_key"]][:, lay["ee_pose_start"]:]
        if lay["ee_pose_format"] == "appf_state":
            if pose_raw.shape[1] % 8:
                raise SourceError(f"appf state needs 8 values per arm, found {pose_raw.shape[1]}",
                                  path=where, episode_id=eid, field=lay["ee_pose_key"])
            per_arm = pose_raw.reshape(T, -1, 8)
            ee = np.stack([pose7_from(per_arm[:, a], "xyz_quat_xyzw") for a in range(per_arm.shape[1])], 1)
            grip = per_arm[..., 7]
        else:
            need = 6 if lay["ee_pose_format"] == "xyz_euler_xyz" else 7
            if pose_raw.shape[1] < need:
                raise SourceError(f"{lay['ee_pose_format']} needs {need} values, found {pose_raw.shape[1]}",
                                  path=where, episode_id=eid, field=lay["ee_pose_key"])
            ee = pose7_from(pose_raw, lay["ee_pose_format"])[:, None]
            grip = rows[lay["gripper_key"]][:, [lay["gripper_index"]]]
        conversions = [f"ee_pose: {lay['ee_pose_key']}[{lay['ee_pose_start']}:] as {lay['ee_pose_format']} "
                       "-> xyz + quat xyzw"]
        if lay["gripper_open_is_one"]:
            grip = 1.0 - grip
            conversions.append("gripper: 1 = open in the dataset -> 1 - g (0 = open, 1 = closed)")
        timestamp, note = relative_timestamps(rows["timestamp"][:, 0], T, self.fps)
        conversions.append(f"timestamp: {note}")
        joints = rows[lay["joints_key"]] if lay["joints_key"] else np.zeros((T, 0))
        steps = Steps(timestamp=timestamp, ee_pose=ee, gripper=np.clip(grip, 0.0, 1.0),
                      joint_positions=joints, action=rows[self.action_key])
        return steps, conversions

    def _camera(self, name: str, key: str, entry: EpisodeEntry, rows: dict[str, np.ndarray], eid: str,
                conversions: list[str]) -> CameraStream:
        if self.features[key]["dtype"] == "video":
            rgb: FrameArray = lazy_episode_video(self.files, entry, key, self.fps, eid)
        else:
            rgb = lazy_parquet_images(self.files, entry, key, eid)
        depth = self._depth(name, entry, rows, eid, rgb.shape[1:3])
        K = self.intrinsics.get(name)
        T, how = self.extrinsics.get(name), "the user's config"
        if T is None and name in self.extrinsics_keys:
            k = self.extrinsics_keys[name]
            T, how = user_pose(rows[k][0], k), f"feature {k} (first frame, [x y z rx ry rz] scipy 'xyz')"
        conversions.append(f"{name}: {key}; intrinsics " + ("from the user's config" if K is not None else
                           "unknown (LeRobot stores none)") + "; extrinsics " +
                           (f"from {how}" if T is not None else "unknown (LeRobot stores none)"))
        return CameraStream(name=name, rgb=rgb, intrinsics=K, T_base_cam=T, depth=depth,
                            intrinsics_unknown=K is None, extrinsics_unknown=T is None,
                            depth_provenance=f"dataset feature {self.depth_keys[name]} x {self.depth_scale_m} m"
                            if depth is not None else "")

    def _depth(self, name: str, entry: EpisodeEntry, rows: dict[str, np.ndarray], eid: str,
               hw: tuple[int, int]) -> FrameArray | None:
        key = self.depth_keys.get(name)
        if key is None:
            return None
        if self.features[key]["dtype"] == "image":
            depth: FrameArray = lazy_parquet_images(self.files, entry, key, eid, self.depth_scale_m)
        else:
            shape = tuple(self.features[key]["shape"])
            depth = (rows[key].reshape(entry.length, *shape)[..., 0] if shape[-1:] == (1,) and len(shape) == 3
                     else rows[key].reshape(entry.length, *shape)).astype(np.float32) * np.float32(self.depth_scale_m)
        if tuple(depth.shape[1:3]) != tuple(hw) or len(depth.shape) != 3:
            raise SourceError(f"depth shape {tuple(depth.shape[1:])} does not match the camera's {tuple(hw)}",
                              path=self.files.describe(entry.data_file), episode_id=eid, field=key)
        return depth

    def _tasks(self, rows: dict[str, np.ndarray], entry: EpisodeEntry, eid: str) -> list[str]:
        if self._task_table is None:
            self._task_table = load_tasks(self.files, self.meta)
        table = self._task_table
        first = int(rows["task_index"][0, 0])
        if first not in table:
            raise SourceError(f"task_index {first} not in the task table", path=self.files.describe(entry.data_file),
                              episode_id=eid, field="task_index")
        return [table[first]] + [t for t in entry.tasks if t != table[first]]
