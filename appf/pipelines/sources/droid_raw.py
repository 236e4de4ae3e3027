"""The `droid_raw` source: the DROID raw release (trajectory.h5 + metadata JSON + stereo MP4s).

Layout (formats-real.md §1.2): `<input>/.../<LAB>/{success,failure}/<date>/<episode dir>/` with
`trajectory.h5`, `metadata_<uuid>.json` and `recordings/MP4/<serial>-stereo.mp4` (left eye =
columns [:W/2], right eye = [W/2:]) or `<serial>.mp4` (left eye only). Any directory holding a
`trajectory.h5` under `input` is an episode; its id is the uuid of the metadata file name (with
two metadata files, the one the post-hoc calibration/annotations know, see _choose_metadata).

Conventions applied (each listed in Episode.conversions):
- EE pose `observation/robot_state/cartesian_position` [x, y, z m, rx, ry, rz rad] with scipy
  lowercase "xyz" Euler (R = Rz Ry Rx) -> xyz + quaternion xyzw. It is the FLANGE (panda_link8);
  `tcp_offset_m` (default 0, i.e. flange) moves it along the flange z axis to a TCP.
- gripper `robot_state/gripper_position` is already 0 = open, 1 = closed (clipped to [0, 1]).
- extrinsics `observation/camera_extrinsics/<serial>_left` (T, 6) are camera-to-base (OpenCV
  camera axes) -> per-step 4x4 T_base_cam; for exterior cameras a refined constant pose from
  `cam2base_extrinsics.json` replaces them when given (see droid_calibration).
- K from droid_calibration (never from the h5); the stereo baseline from the calibration entry's
  `baseline_m`, else the median distance between the h5 `<serial>_left` and `<serial>_right`
  extrinsics (the origin is recorded in Episode.conversions); frames are RGB from PyAV and
  aligned to h5 rows by decode index, never by container timestamps.
- action (T, 8) = `action/cartesian_position` converted like the state (target flange xyz +
  quat xyzw) + `action/gripper_position` (target, 0 = open, 1 = closed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from appf.pipelines.sources._real_io import (
    h5_array, lazy_stereo_video, lazy_video, relative_timestamps, video_info, xyz_euler_to_matrix, xyz_euler_to_pose7,
)
from appf.pipelines.sources.base import SourceInfo
from appf.pipelines.sources.droid_calibration import CalibrationResolver
from appf.schemas import CameraStream, Episode, EpisodeRef, RobotInfo, SourceError, Steps

DATASET = "droid"
CONTROL_HZ = 15.0
ROLES = ("ext1", "ext2", "wrist")
ACTION_SPACE = (
    "action[t] (8,) = DROID action/cartesian_position (absolute commanded FLANGE pose, base "
    "frame) as xyz (m) + quaternion xyzw, then action/gripper_position (target, 0 = open, "
    "1 = closed)"
)


def _metadata_files(ep_dir: Path) -> list[Path]:
    return sorted(ep_dir.glob("metadata_*.json"))


def _uuid_of(meta: Path) -> str:
    return meta.name[len("metadata_"):-len(".json")]


def _h5_left_right_distance_m(extr_left: np.ndarray, extr_right: np.ndarray | None) -> float | None:
    """Median distance (m) between the h5 left- and right-eye camera positions, or None."""
    if extr_right is None or extr_right.shape != extr_left.shape:
        return None
    d = np.linalg.norm(np.asarray(extr_right)[:, :3] - np.asarray(extr_left)[:, :3], axis=1)
    d = d[np.isfinite(d)]
    return float(np.median(d)) if d.size and np.median(d) > 0 else None


class _H5Episode(NamedTuple):
    """The trajectory.h5 arrays one episode needs, as stored (see _decode_h5)."""
    cart: np.ndarray
    grip: np.ndarray
    joints: np.ndarray
    a_cart: np.ndarray
    a_grip: np.ndarray
    ts: np.ndarray | None
    attrs: dict[str, Any]
    serials: dict[str, str]
    extr: dict[str, np.ndarray]
    extr_right: dict[str, np.ndarray | None]


class DroidRawSource:
    """DROID raw episodes (see the module docstring). Options: input (root folder), cameras
    (roles among ext1, ext2, wrist), intrinsics_file, extrinsics_file (cam2base_extrinsics.json),
    calibration (user K/baseline per serial or role), accept_nominal_zed, stereo (load the
    right eye), tcp_offset_m, max_reprojection_error_px, min_quality_metric, annotations_file."""

    info = SourceInfo(
        name="droid_raw",
        description="DROID raw release: trajectory.h5 + side-by-side stereo MP4 (rectified "
                    "left/right, K and baseline from post-hoc calibration or config), 15 Hz",
        stereo=True, sensor_depth=False, ground_truth_depth=False, segmentation=False,
        calibration=True, arms="1", default_depth="foundation_stereo", default_masks="roboengine+sam2",
        default_crop=((0.2, -0.6, -0.1), (1.0, 0.6, 0.7)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ROLES,
                 intrinsics_file: str | None = None, extrinsics_file: str | None = None,
                 calibration: dict[str, Any] | None = None, accept_nominal_zed: bool = False,
                 stereo: bool = True, tcp_offset_m: float = 0.0,
                 max_reprojection_error_px: float | None = None,
                 min_quality_metric: float | None = None, annotations_file: str | None = None,
                 **unused: Any) -> None:
        if not input:
            raise SourceError("droid_raw needs source_options['input'] (--input PATH): the raw root")
        self.root = Path(input)
        if not self.root.is_dir():
            raise SourceError("input folder does not exist", path=str(self.root))
        bad = [c for c in cameras if c not in ROLES]
        if bad:
            raise SourceError(f"unknown camera roles {bad}; choose among {ROLES}", field="cameras")
        self.cameras = tuple(cameras)
        self.stereo = bool(stereo)
        self.tcp_offset_m = float(tcp_offset_m)
        root_file = lambda name: str(self.root / name) if (self.root / name).is_file() else None  # noqa: E731
        self.calib = CalibrationResolver(
            intrinsics_file or root_file("intrinsics.json"),
            extrinsics_file or root_file("cam2base_extrinsics.json"),
            calibration, accept_nominal_zed, max_reprojection_error_px, min_quality_metric)
        self.annotations_file = annotations_file
        self._annotations: dict | None = None

    # -- listing ------------------------------------------------------------------------------

    def list_refs(self) -> list[EpisodeRef]:
        found = []
        for h5 in self.root.rglob("trajectory.h5"):
            metas = _metadata_files(h5.parent)
            if metas:
                meta = self._choose_metadata(h5.parent, metas)
                found.append((_uuid_of(meta), h5.parent, (("metadata", meta.name),)))
            else:
                eid = "nometa-" + h5.parent.relative_to(self.root).as_posix().replace("/", "--")
                found.append((eid, h5.parent, ()))
        found.sort()
        return [EpisodeRef(DATASET, eid, i, uri=str(d), options=opts)
                for i, (eid, d, opts) in enumerate(found)]

    def _choose_metadata(self, ep_dir: Path, metas: list[Path]) -> Path:
        """Some episode folders hold two metadata_*.json (formats-real.md §1.2). Prefer the one
        whose uuid the post-hoc calibration / annotation files know (the rule of the third-party
        DROID-3D builder, PAOK-2001/depth_droid_dataset_builder), then one whose camera serials
        have videos in recordings/MP4; ties -> the first by name. Deterministic."""
        if len(metas) == 1:
            return metas[0]
        mp4 = ep_dir / "recordings" / "MP4"

        def rank(m: Path) -> tuple[bool, bool, str]:
            uuid = _uuid_of(m)
            known = uuid in self.calib.extrinsics_table() or uuid in self._annotation_table(uuid)
            try:
                meta = json.loads(m.read_text())
            except (OSError, json.JSONDecodeError):
                meta = None
            serials = ([str(meta.get(f"{r}_cam_serial") or "") for r in self.cameras]
                       if isinstance(meta, dict) else [""])
            videos = all(s and ((mp4 / f"{s}-stereo.mp4").is_file() or (mp4 / f"{s}.mp4").is_file())
                         for s in serials)
            return (not known, not videos, m.name)

        return min(metas, key=rank)

    # -- reading ------------------------------------------------------------------------------

    def _annotation_table(self, episode_id: str) -> dict:
        if self._annotations is None:
            path = Path(self.annotations_file) if self.annotations_file else None
            if path is None:
                cands = sorted(self.root.glob("aggregated-annotations*.json"))
                path = cands[-1] if cands else None
            try:
                self._annotations = json.loads(path.read_text()) if path else {}
            except (OSError, json.JSONDecodeError) as e:
                raise SourceError(f"cannot parse the language annotations JSON: {e}", path=str(path),
                                  episode_id=episode_id, field="annotations_file") from e
        return self._annotations

    def _language(self, episode_id: str, meta: dict, attrs: dict) -> tuple[str, list[str]]:
        ann = self._annotation_table(episode_id).get(episode_id, {})
        all_ = [str(ann[k]) for k in sorted(ann) if k.startswith("language_instruction") and ann[k]]
        fallback = str(meta.get("current_task") or attrs.get("current_task") or "")
        return (all_[0] if all_ else fallback), all_

    def read(self, ref: EpisodeRef) -> Episode:
        ep_dir, eid = Path(ref.uri), ref.episode_id
        metas, meta_path, meta = self._locate_metadata(ref, ep_dir)
        h5 = self._decode_h5(ep_dir / "trajectory.h5", eid, meta, meta_path)
        conversions: list[str] = []
        ee, g, action, timestamp = self._convert_steps(h5, conversions)
        cameras: dict[str, CameraStream] = {}
        cam_meta: dict[str, Any] = {}
        for role in self.cameras:
            cameras[role], cam_meta[role] = self._camera(ep_dir, eid, role, h5.serials[role], len(ee),
                                                         h5.extr[role], h5.extr_right[role], conversions)
        steps = Steps(timestamp=timestamp, ee_pose=ee[:, None, :], gripper=g[:, None],
                      joint_positions=np.asarray(h5.joints, np.float64), action=action)
        return self._assemble_episode(ep_dir, eid, metas, meta_path, meta, h5.attrs, steps, cameras,
                                      cam_meta, conversions)

    def _locate_metadata(self, ref: EpisodeRef, ep_dir: Path) -> tuple[list[Path], Path, dict]:
        """The episode's metadata files, the chosen one and its parsed JSON."""
        eid = ref.episode_id
        metas = _metadata_files(ep_dir)
        if not metas:
            raise SourceError("no metadata_*.json in the episode folder", path=str(ep_dir),
                              episode_id=eid, field="metadata")
        chosen = ref.option("metadata")
        meta_path = ep_dir / chosen if chosen else self._choose_metadata(ep_dir, metas)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SourceError(f"cannot parse metadata JSON: {e}", path=str(meta_path),
                              episode_id=eid, field="metadata") from e
        return metas, meta_path, meta

    def _decode_h5(self, h5_path: Path, eid: str, meta: dict, meta_path: Path) -> _H5Episode:
        """Read the trajectory.h5 arrays this source uses; checks shapes and finite state."""
        import h5py

        try:
            f = h5py.File(h5_path, "r")
        except OSError as e:
            raise SourceError(f"cannot open HDF5: {e}", path=str(h5_path), episode_id=eid) from e
        with f:
            cart = h5_array(f, "observation/robot_state/cartesian_position", h5_path, eid, trailing=(6,))
            T = cart.shape[0]
            grip = h5_array(f, "observation/robot_state/gripper_position", h5_path, eid, rows=T)
            joints = h5_array(f, "observation/robot_state/joint_positions", h5_path, eid, rows=T)
            a_cart = h5_array(f, "action/cartesian_position", h5_path, eid, rows=T, trailing=(6,))
            a_grip = h5_array(f, "action/gripper_position", h5_path, eid, rows=T)
            ts = None
            k_s, k_ns = ("observation/timestamp/robot_state/robot_timestamp_seconds",
                         "observation/timestamp/robot_state/robot_timestamp_nanos")
            if k_s in f and k_ns in f:
                ts = np.asarray(f[k_s][()], np.float64) + np.asarray(f[k_ns][()], np.float64) * 1e-9
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            serials = {role: str(meta.get(f"{role}_cam_serial") or "") for role in ROLES}
            extr, extr_right = self._decode_extrinsics(f, h5_path, eid, T, serials, meta_path)
        for name, arr in (("robot_state/cartesian_position", cart), ("robot_state/gripper_position", grip)):
            if not np.isfinite(arr).all():
                raise SourceError("NaN/inf values", path=str(h5_path), episode_id=eid, field=name)
        return _H5Episode(cart, grip, joints, a_cart, a_grip, ts, attrs, serials, extr, extr_right)

    def _decode_extrinsics(self, f: Any, h5_path: Path, eid: str, T: int, serials: dict[str, str],
                           meta_path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
        """Per role: the h5 `<serial>_left` (T, 6) extrinsics and the `_right` ones when present."""
        extr = {}
        extr_right = {}
        for role in self.cameras:
            s = serials[role]
            if not s:
                raise SourceError(f"metadata has no {role}_cam_serial", path=str(meta_path),
                                  episode_id=eid, field=f"{role}_cam_serial")
            extr[role] = h5_array(f, f"observation/camera_extrinsics/{s}_left", h5_path, eid,
                                  rows=T, trailing=(6,))
            k_r = f"observation/camera_extrinsics/{s}_right"
            extr_right[role] = np.asarray(f[k_r][()]) if k_r in f else None
        return extr, extr_right

    def _convert_steps(self, h5: _H5Episode, conversions: list[str]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ee_pose (T, 7) xyz + quat xyzw, gripper (T,) 0 = open, action (T, 8), timestamp_s (T,))."""
        cart = h5.cart
        T = cart.shape[0]
        ee = xyz_euler_to_pose7(cart)
        conversions.append("ee_pose: DROID cartesian_position [xyz, scipy 'xyz' Euler rad] -> xyz + quat xyzw")
        if self.tcp_offset_m:
            R = xyz_euler_to_matrix(cart)[:, :3, :3]
            ee[:, :3] += R[:, :, 2] * self.tcp_offset_m
            conversions.append(f"ee_pose: flange moved {self.tcp_offset_m} m along flange z to the TCP")
        else:
            conversions.append("ee_pose: FLANGE (panda_link8) pose, no TCP offset applied (tcp_offset_m=0)")
        g = np.clip(np.asarray(h5.grip, np.float64).reshape(T), 0.0, 1.0)
        conversions.append("gripper: DROID gripper_position already 0 = open, 1 = closed (clipped to [0, 1])")
        action = np.concatenate([xyz_euler_to_pose7(h5.a_cart),
                                 np.clip(h5.a_grip.reshape(T, 1), 0.0, 1.0)], axis=1)
        timestamp, ts_note = relative_timestamps(h5.ts, T, CONTROL_HZ)
        conversions.append(f"timestamp: {ts_note}")
        return ee, g, action, timestamp

    def _assemble_episode(self, ep_dir: Path, eid: str, metas: list[Path], meta_path: Path, meta: dict,
                          attrs: dict, steps: Steps, cameras: dict[str, CameraStream],
                          cam_meta: dict[str, Any], conversions: list[str]) -> Episode:
        lang, all_lang = self._language(eid, meta, attrs)
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=lang,
            robot=RobotInfo(str(meta.get("robot_serial") or attrs.get("robot_serial_number") or "franka"), 1),
            control_hz=CONTROL_HZ, steps=steps,
            cameras=cameras, action_space=ACTION_SPACE, conversions=conversions,
            metadata={
                "episode_dir": str(ep_dir), "metadata_file": meta_path.name,
                "metadata_files": [m.name for m in metas],
                "success": "success" in ep_dir.parts or bool(meta.get("success", False)),
                "lab": meta.get("lab", ""), "droid_version": str(attrs.get("version_number", meta.get("droid_version", ""))),
                "language_instructions": all_lang, "cameras": cam_meta,
                "ee_frame": "flange" if not self.tcp_offset_m else f"flange + {self.tcp_offset_m} m",
            },
        )

    def _camera(self, ep_dir: Path, eid: str, role: str, serial: str, T: int, extr_left: np.ndarray,
                extr_right: np.ndarray | None, conversions: list[str]) -> tuple[CameraStream, dict]:
        mp4_dir = ep_dir / "recordings" / "MP4"
        stereo_path, mono_path = mp4_dir / f"{serial}-stereo.mp4", mp4_dir / f"{serial}.mp4"
        use_stereo = self.stereo and stereo_path.is_file()
        if self.stereo and not use_stereo:
            raise SourceError("stereo video missing (stereo=True); pass stereo=False to read the "
                              "left eye only", path=str(stereo_path), episode_id=eid,
                              field=f"{role} stereo video")
        path = stereo_path if use_stereo else mono_path
        field = f"{role} video"
        n, h, w = video_info(path, eid, field)
        if n < T:
            raise SourceError(f"video has {n} frames, trajectory.h5 has {T} rows (frames are "
                              "aligned by index)", path=str(path), episode_id=eid, field=field)
        eye_w = w // 2 if use_stereo else w
        calib = self.calib.stereo(eid, serial, role, "zed_mini" if role == "wrist" else "zed2",
                                  (eye_w, h), ep_dir / "intrinsics.json")
        conversions.append(f"{role}: {calib.origin}")
        refined = self.calib.refined_extrinsics(eid, serial) if role != "wrist" else None
        if refined is not None:
            T_base_cam = xyz_euler_to_matrix(refined[0])
            conversions.append(f"{role}: {refined[1]} replaces the per-step h5 extrinsics")
        else:
            T_base_cam = xyz_euler_to_matrix(extr_left)
            conversions.append(f"{role}: T_base_cam from h5 camera_extrinsics/{serial}_left "
                               "(camera-to-base, scipy 'xyz' Euler) per step")
        if not np.isfinite(T_base_cam).all():
            raise SourceError("NaN/inf in camera extrinsics", path=str(ep_dir / "trajectory.h5"),
                              episode_id=eid, field=f"observation/camera_extrinsics/{serial}_left")
        info: dict[str, Any] = {"serial": serial, "video": path.name, "video_frames": n}
        h5_baseline = _h5_left_right_distance_m(extr_left, extr_right)
        if h5_baseline is not None:
            info["h5_left_right_distance_m"] = h5_baseline
        rgb_right = None
        baseline_m = calib.baseline_m
        if use_stereo:
            rgb, rgb_right = lazy_stereo_video(path, T, h, w, eid, field)
            if baseline_m is None and h5_baseline is None:
                raise SourceError(f"no stereo baseline for camera {serial}: no baseline_m in its "
                                  f"calibration entry and no h5 camera_extrinsics/{serial}_right; add "
                                  "baseline_m, or pass stereo=False", episode_id=eid,
                                  field=f"baseline_m[{serial}]")
            if baseline_m is None:
                baseline_m = h5_baseline
                conversions.append(f"{role}: stereo baseline {baseline_m:.4f} m = median distance of the "
                                   f"h5 camera_extrinsics/{serial}_left and _right (no baseline_m in "
                                   "the calibration)")
        else:
            rgb = lazy_video(path, T, h, w, eid, field)
            conversions.append(f"{role}: left eye only ({path.name})")
        cam = CameraStream(name=role, rgb=rgb, intrinsics=calib.K, T_base_cam=T_base_cam,
                           rgb_right=rgb_right, baseline_m=baseline_m if use_stereo else None)
        return cam, info
