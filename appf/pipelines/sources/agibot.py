"""The `agibot` source: AgiBot World Alpha/Beta after untarring (formats-real.md §2).

Layout under `input`:
  task_info/task_<task_id>.json                      list of {episode_id, task_name, init_scene_text,
                                                     label_info.action_config[{start_frame, end_frame,
                                                     action_text, skill}]}
  observations/<task>/<ep>/videos/<cam>_color.mp4    30 fps (AV1 in the release [inferred])
  observations/<task>/<ep>/depth/head_depth_<NNNNNN>.png   uint16 mm, 0 = invalid, head only
  parameters/<task>/<ep>/[parameters/]camera/<cam>_intrinsic_params.json   {"intrinsic": {fx, fy, ppx, ppy}}
  parameters/<task>/<ep>/[parameters/]camera/<cam>_extrinsic_params_aligned.json
                                                     per-frame [{"extrinsic": {rotation_matrix, translation_vector}}]
                                                     camera-to-base (issue #45)
  proprio_stats/<task>/<ep>/proprio_stats.h5

Joined on (task_id, episode_id); episode id "<task_id>_<episode_id>". Frame i of the videos =
depth PNG i = aligned extrinsic i = proprio row i (index alignment, no timestamps).

Conventions applied (Episode.conversions): ee_pose = state/end/{position, orientation}
(FLANGE, xyzw quaternions, normalised), arms [left, right]; gripper = the commanded
action/effector/position (0 = open, 1 = closed, verified) scattered onto frames through
action/effector/index and held between commands (the state gripper is documented as "open
range in mm" [unconfirmed], so it is kept out of the canonical gripper); depth mm -> metres;
extrinsics taken as camera-to-base as stored.

Documented dirty cases -> SourceError (the job records a "read" failure): missing task_info
(unless allow_missing_task_info), empty (0,) datasets where data is needed, action arrays longer
than state (any4lerobot's skip list), action arrays shorter than state without a usable index,
dexhand effectors (12-D, not a gripper), frame-count mismatches, missing parameter files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from appf.pipelines.sources._real_io import (
    continuous_quats, h5_array, lazy_images, lazy_video, numbered_files, pinhole_K,
    relative_timestamps, rt_to_matrix, video_info,
)
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, LazyFrames, RobotInfo, SourceError, Steps

DATASET = "agibot_world"
CONTROL_HZ = 30.0
CAMERAS = ("head", "hand_left", "hand_right")
ACTION_SPACE = (
    "action[t] (16,) = per arm [left, right]: commanded flange xyz (m, base) + quaternion xyzw "
    "(action/end/*) then commanded gripper (action/effector/position, 0 = open, 1 = closed); "
    "commands are placed at their action/<part>/index frames and held until the next command"
)


def _int_dirs(folder: Path) -> list[str]:
    return sorted((p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=int) \
        if folder.is_dir() else []


class _Proprio(NamedTuple):
    """The proprio_stats.h5 arrays one episode needs, as stored (n = state rows)."""

    n: int
    pos: np.ndarray
    quat: np.ndarray
    joints: np.ndarray
    ts: Any
    a_eff: np.ndarray
    a_pos: np.ndarray
    a_quat: np.ndarray
    end_idx: np.ndarray | None
    eff_idx: np.ndarray | None


def _gripper_commands(f: Any, h5_path: Path, eid: str) -> np.ndarray:
    """action/effector/position as (M, 2) gripper commands; dexhand (12-D) episodes refused."""
    a_eff = h5_array(f, "action/effector/position", h5_path, eid)
    if a_eff.ndim == 2 and a_eff.shape[1] == 12:
        raise SourceError("dexhand effector (12 joint angles) is not a gripper; this source "
                          "reads gripper episodes only", path=str(h5_path), episode_id=eid,
                          field="action/effector/position")
    if a_eff.ndim != 2 or a_eff.shape[1] != 2:
        raise SourceError(f"expected (M, 2) gripper commands, found {a_eff.shape}",
                          path=str(h5_path), episode_id=eid, field="action/effector/position")
    return a_eff


def _head_depth(obs: Path, n: int, h: int, w: int, eid: str) -> LazyFrames:
    """The head depth PNG sequence as lazy float32 metres, checked against the video size."""
    pngs = numbered_files(obs / "depth", "head_depth_", ".png")
    if len(pngs) != n:
        raise SourceError(f"{len(pngs)} head depth PNGs for {n} frames", path=str(obs / "depth"),
                          episode_id=eid, field="depth/head_depth")
    depth = lazy_images(pngs, eid, "depth/head_depth", depth_mm=True)
    if depth.shape[1:] != (h, w):
        raise SourceError(f"depth size {depth.shape[1:]} differs from head video {(h, w)}",
                          path=str(obs / "depth"), episode_id=eid, field="depth/head_depth")
    return depth


class AgiBotSource:
    """AgiBot World episodes. Options: input (root), cameras (subset of head, hand_left,
    hand_right; default head only, the camera with sensor depth), allow_missing_task_info."""

    info = SourceInfo(
        name="agibot",
        description="AgiBot World Alpha/Beta (untarred): head RGB-D (uint16 mm depth) + hand "
                    "cameras, per-frame camera-to-base extrinsics, dual-arm proprio, 30 Hz",
        stereo=False, sensor_depth=True, ground_truth_depth=False, segmentation=False,
        calibration=True, arms="2", default_depth="promptda", default_masks="roboengine+sam2",
        default_crop=((0.2, -0.7, -0.2), (1.2, 0.7, 1.5)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ("head",),
                 allow_missing_task_info: bool = False, **unused: Any) -> None:
        if not input:
            raise SourceError("agibot needs source_options['input'] (--input PATH): the untarred root")
        self.root = Path(input)
        if not self.root.is_dir():
            raise SourceError("input folder does not exist", path=str(self.root))
        bad = [c for c in cameras if c not in CAMERAS]
        if bad:
            raise SourceError(f"unknown cameras {bad}; choose among {CAMERAS}", field="cameras")
        self.cameras = tuple(cameras)
        self.allow_missing_task_info = bool(allow_missing_task_info)

    def list_refs(self) -> list[EpisodeRef]:
        keys: set[tuple[int, int]] = set()
        for tree in ("observations", "proprio_stats"):
            for task in _int_dirs(self.root / tree):
                keys.update((int(task), int(ep)) for ep in _int_dirs(self.root / tree / task))
        return [EpisodeRef(DATASET, f"{t}_{e}", i, uri=str(self.root), options=(("task_id", t), ("ep", e)))
                for i, (t, e) in enumerate(sorted(keys))]

    # -- parts ---------------------------------------------------------------------------------

    def _task_info(self, task: int, ep: int, eid: str) -> dict[str, Any]:
        path = self.root / "task_info" / f"task_{task}.json"
        if not path.is_file():
            if self.allow_missing_task_info:
                return {}
            raise SourceError("task_info file missing (known AgiBot dirty case); pass "
                              "allow_missing_task_info=True to read without language",
                              path=str(path), episode_id=eid, field="task_info")
        try:
            entries = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SourceError(f"cannot parse task_info: {e}", path=str(path), episode_id=eid,
                              field="task_info") from e
        for entry in entries if isinstance(entries, list) else []:
            if int(entry.get("episode_id", -1)) == ep:
                return entry
        if self.allow_missing_task_info:
            return {}
        raise SourceError(f"no entry for episode {ep} in task_info", path=str(path),
                          episode_id=eid, field="task_info.episode_id")

    def _camera_dir(self, task: int, ep: int, eid: str) -> Path:
        base = self.root / "parameters" / str(task) / str(ep)
        for cand in (base / "parameters" / "camera", base / "camera"):
            if cand.is_dir():
                return cand
        raise SourceError("camera parameter folder missing (looked for parameters/camera and camera)",
                          path=str(base), episode_id=eid, field="parameters/camera")

    def _read_json(self, path: Path, eid: str, field: str) -> Any:
        if not path.is_file():
            raise SourceError("camera parameter file missing", path=str(path), episode_id=eid, field=field)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SourceError(f"cannot parse JSON: {e}", path=str(path), episode_id=eid, field=field) from e

    def _calibration(self, cam_dir: Path, cam: str, n: int, eid: str) -> tuple[np.ndarray, np.ndarray]:
        ipath = cam_dir / f"{cam}_intrinsic_params.json"
        intr = self._read_json(ipath, eid, f"{cam} intrinsic")
        try:
            i = intr["intrinsic"]
            K = pinhole_K(float(i["fx"]), float(i["fy"]), float(i["ppx"]), float(i["ppy"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(f"intrinsics need intrinsic.fx, fy, ppx, ppy ({e!r})", path=str(ipath),
                              episode_id=eid, field=f"{cam} intrinsic") from e
        epath = cam_dir / f"{cam}_extrinsic_params_aligned.json"
        extr = self._read_json(epath, eid, f"{cam} extrinsic_aligned")
        if not isinstance(extr, list) or len(extr) != n:
            raise SourceError(f"aligned extrinsics must be a list of {n} per-frame entries, found "
                              f"{len(extr) if isinstance(extr, list) else type(extr).__name__}",
                              path=str(epath), episode_id=eid, field=f"{cam} extrinsic_aligned")
        try:
            T = np.stack([rt_to_matrix(e["extrinsic"]["rotation_matrix"], e["extrinsic"]["translation_vector"])
                          for e in extr])
        except (KeyError, TypeError, ValueError) as e:
            raise SourceError(f"extrinsic entries need extrinsic.rotation_matrix (3x3) and "
                              f"translation_vector (3) ({e!r})", path=str(epath), episode_id=eid,
                              field=f"{cam} extrinsic_aligned") from e
        return K, T

    @staticmethod
    def _scatter(values: np.ndarray, index: np.ndarray | None, n: int, path: Path, eid: str,
                 field: str) -> np.ndarray:
        """Place command rows at their frame indices and hold them; rows before the first
        command take the first command."""
        m = len(values)
        if m > n:
            raise SourceError(f"action has {m} rows, more than the {n} state rows (known dirty "
                              "episode, skipped by the reference converters)", path=str(path),
                              episode_id=eid, field=field)
        if index is None or index.size == 0:
            if m == n:
                return values
            raise SourceError(f"action has {m} rows for {n} frames and no usable index",
                              path=str(path), episode_id=eid, field=field)
        idx = np.asarray(index, np.int64).reshape(-1)
        if len(idx) != m or idx.min() < 0 or idx.max() >= n or np.any(np.diff(idx) < 0):
            raise SourceError(f"index must be {m} sorted frame numbers in [0, {n}), found "
                              f"{len(idx)} in [{idx.min()}, {idx.max()}]", path=str(path),
                              episode_id=eid, field=field.rsplit("/", 1)[0] + "/index")
        slot = np.searchsorted(idx, np.arange(n), side="right") - 1
        return values[np.maximum(slot, 0)]

    # -- read: locate -> decode -> convert -> assemble ------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        task, ep, eid = int(ref.option("task_id")), int(ref.option("ep")), ref.episode_id
        info = self._task_info(task, ep, eid)
        h5_path = self._locate_proprio(task, ep, eid)
        raw = self._decode_proprio(h5_path, eid)
        steps, conversions = self._convert_steps(raw, h5_path, eid)
        obs = self.root / "observations" / str(task) / str(ep)
        cam_dir = self._camera_dir(task, ep, eid)
        cameras = {cam: self._camera(obs, cam_dir, cam, raw.n, eid, conversions) for cam in self.cameras}
        return self._assemble_episode(task, ep, eid, info, steps, cameras, conversions)

    def _locate_proprio(self, task: int, ep: int, eid: str) -> Path:
        h5_path = self.root / "proprio_stats" / str(task) / str(ep) / "proprio_stats.h5"
        if not h5_path.is_file():
            raise SourceError("proprio_stats.h5 missing", path=str(h5_path), episode_id=eid,
                              field="proprio_stats")
        return h5_path

    @staticmethod
    def _decode_proprio(h5_path: Path, eid: str) -> _Proprio:
        """Read the state, commanded action and action index arrays from proprio_stats.h5."""
        import h5py

        try:
            f = h5py.File(h5_path, "r")
        except OSError as e:  # h5py's message names no file (e.g. a truncated tar extract)
            raise SourceError(f"cannot open HDF5: {e}", path=str(h5_path), episode_id=eid,
                              field="proprio_stats") from e
        with f:
            pos = h5_array(f, "state/end/position", h5_path, eid, trailing=(2, 3))
            n = len(pos)
            quat = h5_array(f, "state/end/orientation", h5_path, eid, rows=n, trailing=(2, 4))
            joints = h5_array(f, "state/joint/position", h5_path, eid, rows=n)
            ts = f["timestamp"][()] if "timestamp" in f else None
            a_eff = _gripper_commands(f, h5_path, eid)
            a_pos = h5_array(f, "action/end/position", h5_path, eid, trailing=(2, 3))
            a_quat = h5_array(f, "action/end/orientation", h5_path, eid, rows=len(a_pos), trailing=(2, 4))

            def index(part: str) -> np.ndarray | None:
                k = f"action/{part}/index"
                return np.asarray(f[k][()]) if k in f else None
            end_idx, joint_idx = index("end"), index("joint")
            if end_idx is None or end_idx.size == 0:
                end_idx = joint_idx  # any4lerobot's fallback when action/end/index is empty
            eff_idx = index("effector")
        return _Proprio(n, pos, quat, joints, ts, a_eff, a_pos, a_quat, end_idx, eff_idx)

    def _convert_steps(self, raw: _Proprio, h5_path: Path, eid: str) -> tuple[Steps, list[str]]:
        """Quaternions to continuous xyzw, commands scattered onto frames, timestamps ns -> s."""
        n, conversions = raw.n, []
        ee = np.concatenate([raw.pos, continuous_quats(raw.quat)], axis=-1)
        conversions.append("ee_pose: state/end position + orientation (xyzw, normalised), arms "
                           "[left, right]; FLANGE, no TCP offset applied")
        grip = self._scatter(raw.a_eff.astype(np.float64), raw.eff_idx, n, h5_path, eid,
                             "action/effector/position")
        grip = np.clip(grip, 0.0, 1.0)
        conversions.append("gripper: commanded action/effector/position (0 = open, 1 = closed), "
                           "placed at action/effector/index and held; state gripper (mm) not used")
        a_ee = self._scatter(np.concatenate([raw.a_pos, continuous_quats(raw.a_quat)], axis=-1),
                             raw.end_idx, n, h5_path, eid, "action/end/position")
        action = np.concatenate([a_ee, grip[..., None]], axis=-1).reshape(n, 16)
        ts = raw.ts
        timestamp, note = relative_timestamps(
            None if ts is None or np.size(ts) != n else np.asarray(ts, np.float64) * 1e-9, n, CONTROL_HZ)
        conversions.append(f"timestamp: ns -> s, {note}")
        steps = Steps(timestamp=timestamp, ee_pose=ee, gripper=grip,
                      joint_positions=np.asarray(raw.joints, np.float64), action=action)
        return steps, conversions

    def _camera(self, obs: Path, cam_dir: Path, cam: str, n: int, eid: str,
                conversions: list[str]) -> CameraStream:
        """One camera: lazy colour video, K and per-frame T_base_cam, head depth (mm -> m)."""
        video = obs / "videos" / f"{cam}_color.mp4"
        nf, h, w = video_info(video, eid, f"{cam}_color video")
        if nf != n:
            raise SourceError(f"video has {nf} frames, proprio_stats has {n} rows", path=str(video),
                              episode_id=eid, field=f"{cam}_color video")
        K, T_base_cam = self._calibration(cam_dir, cam, n, eid)
        depth = None
        if cam == "head":
            depth = _head_depth(obs, n, h, w, eid)
            conversions.append("head depth: uint16 mm PNG -> float32 m (0 = invalid)")
        stream = CameraStream(name=cam, rgb=lazy_video(video, n, h, w, eid, f"{cam}_color video"),
                              intrinsics=K, T_base_cam=T_base_cam, depth=depth,
                              depth_provenance="sensor" if depth is not None else "")
        conversions.append(f"{cam}: T_base_cam per frame from {cam}_extrinsic_params_aligned.json "
                           "(camera-to-base as stored)")
        return stream

    @staticmethod
    def _assemble_episode(task: int, ep: int, eid: str, info: dict[str, Any], steps: Steps,
                          cameras: dict[str, CameraStream], conversions: list[str]) -> Episode:
        segments = [dict(start_frame=int(s.get("start_frame", 0)), end_frame=int(s.get("end_frame", 0)),
                         action_text=str(s.get("action_text") or ""), skill=str(s.get("skill") or ""))
                    for s in (info.get("label_info") or {}).get("action_config") or []]
        lang = str(info.get("task_name") or "").strip() or next(
            (s["action_text"] for s in segments if s["action_text"]), "")
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=lang,
            robot=RobotInfo("agibot_g1", 2), control_hz=CONTROL_HZ, steps=steps,
            cameras=cameras, action_space=ACTION_SPACE, conversions=conversions,
            metadata={"task_id": task, "episode_id": ep, "init_scene_text": str(info.get("init_scene_text") or ""),
                      "segments": segments, "task_info_found": bool(info),
                      "ee_frame": "flange"},
        )
