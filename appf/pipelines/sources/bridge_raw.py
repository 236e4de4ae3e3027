"""The `bridge_raw` source: BridgeData V2 raw release (formats-real.md §3.2-3.7).

Every folder under `input` holding `obs_dict.pkl` (folders with `lmdb` in the path skipped) is
one trajectory: `images<i>/im_<t>.jpg` (T+1 frames per camera), `depth_images0/im_<t>.png`
(some episodes; uint16, millimetres [inferred], D435 `image_rect_raw`, NOT registered to
colour [inferred]), `obs_dict.pkl` (full_state (T+1, 7), qpos, time_stamp, ...),
`policy_out.pkl` (T dicts with "actions" (7,), or T arrays), `lang.txt`. Pickles are loaded
with the restricted unpickler (safe_pickle). Episode id = path relative to `input`, "/" -> "__".

Conventions applied (Episode.conversions):
- ee_pose: full_state xyz (m) + Euler [roll, pitch, yaw] that are RELATIVE to the default
  gripper-down rotation DEFAULT_ROT, R = Rz Ry Rx (scipy "xyz"): R_abs = R_rel @ default_rot,
  default_rot = Rz(base_angle_rad) @ DEFAULT_ROT (base_angle_rad option, default 0; the
  composition order of the setup's `normal_base_angle` is unverified) -> quaternion xyzw. The
  pose is the WidowX end effector as reported by its controller.
- gripper: raw 1 = open, 0 = closed -> canonical 1 - g (0 = open, 1 = closed).
- action (T+1, 7) = [dx, dy, dz (m, base axes), droll, dpitch, dyaw (rad, Rz Ry Rx deltas) as
  stored, gripper target converted to 0 = open / 1 = closed]; the last observation has no
  action: zero deltas + its own gripper.
- data collected before 2021-07-23 (date of the dated folder): first observation and last action
  dropped (1-step camera latency, as the official converters do).
- no calibration: CameraStream(intrinsics=None, intrinsics_unknown=True) unless the user gives
  `intrinsics={camera: 3x3}`; extrinsics only from the user's `extrinsics={camera: 4x4
  camera-to-base}`, else T_base_cam=None with extrinsics_unknown=True: the episode validates and
  gets depth, and the job fails it at the point-cloud stage with the "no extrinsics" message
  (base-frame clouds need camera-to-base extrinsics; there is no released calibration).
- depth_images<i> in 8-bit (PIL mode "L"; a few trajectories, formats-real.md §3.2) are not
  millimetres: left out (noted in conversions and metadata["depth_left_out"]); an 8-bit frame
  inside a 16-bit sequence is a SourceError when decoded.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from appf.pipelines.sources._real_io import continuous_quats, lazy_images, numbered_files, relative_timestamps
from appf.pipelines.sources.base import SourceInfo
from appf.pipelines.sources.safe_pickle import safe_load
from appf.schemas import CameraStream, Episode, EpisodeRef, LazyFrames, RobotInfo, SourceError, Steps

DATASET = "bridge"
CONTROL_HZ = 5.0
DEFAULT_ROT = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
LATENCY_FIX_BEFORE = date(2021, 7, 23)
ACTION_SPACE = (
    "action[t] (7,) = BridgeData policy_out action: [dx, dy, dz] m (base axes), [droll, dpitch, "
    "dyaw] rad (R = Rz Ry Rx deltas, about the EE with world-aligned axes), gripper target "
    "converted to 0 = open / 1 = closed; last step: zero deltas + its own gripper"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_\d{2}-\d{2}-\d{2}$")


def bridge_state_to_pose7(full_state: np.ndarray, base_angle_rad: float = 0.0) -> np.ndarray:
    """(N, >=6) [x, y, z, roll, pitch, yaw, ...] relative to the gripper-down default ->
    (N, 7) xyz + quaternion xyzw of the absolute orientation R_rel @ default_rot."""
    s = np.asarray(full_state, np.float64)
    default = Rotation.from_euler("z", base_angle_rad).as_matrix() @ DEFAULT_ROT
    R = Rotation.from_euler("xyz", s[:, 3:6]).as_matrix() @ default
    return np.concatenate([s[:, :3], continuous_quats(Rotation.from_matrix(R).as_quat())], axis=1)


_EIGHT_BIT_MODES = ("1", "L", "P", "LA", "PA")


def _image_mode(path: Path, episode_id: str, field: str) -> str:
    """PIL mode of an image file (header only), SourceError naming it if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(im.mode)
    except OSError as e:
        raise SourceError(f"cannot decode image: {e}", path=str(path), episode_id=episode_id,
                          field=field) from e


def _collection_date(parts: tuple[str, ...]) -> date | None:
    for p in reversed(parts):
        m = _DATE.match(p)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
    return None


def calibration_note(name: str, K: np.ndarray | None, T_base_cam: np.ndarray | None) -> str:
    """Conversions line saying whether a camera's K and T_base_cam came from the user's config
    (Bridge releases no calibration)."""
    return (f"{name}: " + ("intrinsics from the user's config" if K is not None
                           else "intrinsics unknown (no calibration released)")
            + "; " + ("extrinsics from the user's config" if T_base_cam is not None
                      else "extrinsics unknown (no calibration released)"))


def _decode_obs(d: Path, eid: str) -> tuple[dict[str, Any], np.ndarray]:
    """obs_dict.pkl and its full_state (T+1, >=7), checked finite."""
    obs = safe_load(d / "obs_dict.pkl", eid, "obs_dict.pkl")
    if not isinstance(obs, dict) or "full_state" not in obs:
        raise SourceError("obs_dict.pkl must be a dict with full_state", path=str(d / "obs_dict.pkl"),
                          episode_id=eid, field="full_state")
    state = np.asarray(obs["full_state"], np.float64)
    if state.ndim != 2 or state.shape[1] < 7 or len(state) < 2 or not np.isfinite(state).all():
        raise SourceError(f"full_state must be finite (T+1, 7), found {state.shape}",
                          path=str(d / "obs_dict.pkl"), episode_id=eid, field="full_state")
    return obs, state


def _decode_actions(d: Path, eid: str, n_obs: int) -> np.ndarray:
    """policy_out.pkl as (n_obs - 1, 7) float64 actions."""
    pol = safe_load(d / "policy_out.pkl", eid, "policy_out.pkl")
    try:
        acts = np.stack([np.asarray(p["actions"] if isinstance(p, dict) else p, np.float64).reshape(-1)
                         for p in pol])
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"policy_out.pkl must be a list of {{'actions': (7,)}} or (7,) arrays ({e!r})",
                          path=str(d / "policy_out.pkl"), episode_id=eid, field="actions") from e
    if acts.shape != (n_obs - 1, 7):
        raise SourceError(f"expected {n_obs - 1} actions of 7 (one fewer than the {n_obs} "
                          f"observations), found {acts.shape}", path=str(d / "policy_out.pkl"),
                          episode_id=eid, field="actions")
    return acts


def _depth(d: Path, i: int, rgb: LazyFrames, eid: str, n: int, first: int, conversions: list[str],
           depth_left_out: dict[str, str]) -> tuple[LazyFrames | None, str]:
    """depth_images<i> as lazy float32 metres and its provenance; (None, "") when absent or
    8-bit (left out, said so in conversions and depth_left_out)."""
    name = f"image_{i}"
    dfiles = numbered_files(d / f"depth_images{i}", "im_", ".png")
    mode = _image_mode(dfiles[0], eid, f"depth_images{i}") if dfiles else ""
    if mode in _EIGHT_BIT_MODES:
        # A few trajectories store 8-bit depth (PIL mode "L", formats-real.md §3.2):
        # not millimetres, units unknown -> left out (said so), never read as metres.
        conversions.append(f"{name}: depth_images{i} is 8-bit (PIL mode {mode!r}), not "
                           "uint16 mm: units unknown, depth left out")
        depth_left_out[name] = f"depth_images{i}: 8-bit PIL mode {mode!r}"
        return None, ""
    if not dfiles:
        return None, ""
    if len(dfiles) != n + first:
        raise SourceError(f"{len(dfiles)} depth images for {n + first} observations",
                          path=str(d / f"depth_images{i}"), episode_id=eid, field=f"depth_images{i}")
    depth = lazy_images(dfiles[first:], eid, f"depth_images{i}", depth_mm=True)
    if depth.shape[1:] != rgb.shape[1:3]:
        raise SourceError(f"depth size {depth.shape[1:]} differs from images{i} {rgb.shape[1:3]}",
                          path=str(d / f"depth_images{i}"), episode_id=eid, field=f"depth_images{i}")
    conversions.append(f"{name}: depth_images{i} uint16 mm -> float32 m")
    return depth, "sensor: D435 image_rect_raw, uint16 mm [inferred], not registered to colour [inferred]"


class BridgeRawSource:
    """BridgeData V2 raw trajectories. Options: input, cameras (e.g. ["image_0"]; default every
    images<i> folder), intrinsics / extrinsics (user calibration per camera name),
    base_angle_rad."""

    info = SourceInfo(
        name="bridge_raw",
        description="BridgeData V2 raw (images0..3 JPEG, obs_dict/policy_out pickles, lang.txt, "
                    "optional D435 depth); no calibration (K estimated downstream), 5 Hz",
        stereo=False, sensor_depth=True, ground_truth_depth=False, segmentation=False,
        calibration=False, arms="1", default_depth="moge2", default_masks="roboengine+sam2",
        default_crop=None,
    )

    def __init__(self, input: str | None = None, cameras: list[str] | None = None,
                 intrinsics: dict[str, Any] | None = None, extrinsics: dict[str, Any] | None = None,
                 base_angle_rad: float = 0.0, **unused: Any) -> None:
        if not input:
            raise SourceError("bridge_raw needs source_options['input'] (--input PATH)")
        self.root = Path(input)
        if not self.root.is_dir():
            raise SourceError("input folder does not exist", path=str(self.root))
        self.cameras = list(cameras) if cameras else None
        self.intrinsics = {k: np.asarray(v, np.float64) for k, v in (intrinsics or {}).items()}
        self.extrinsics = {k: np.asarray(v, np.float64) for k, v in (extrinsics or {}).items()}
        self.base_angle_rad = float(base_angle_rad)

    def list_refs(self) -> list[EpisodeRef]:
        dirs = sorted(p.parent for p in self.root.rglob("obs_dict.pkl")
                      if not any("lmdb" in part for part in p.relative_to(self.root).parts))
        ids = sorted((d.relative_to(self.root).as_posix().replace("/", "__"), d) for d in dirs)
        return [EpisodeRef(DATASET, eid, i, uri=str(d)) for i, (eid, d) in enumerate(ids)]

    # -- read: locate -> decode -> convert -> assemble ------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        d, eid = Path(ref.uri), ref.episode_id
        obs, state = _decode_obs(d, eid)
        acts = _decode_actions(d, eid, len(state))
        conversions: list[str] = []
        day = _collection_date(d.parts)
        first = 1 if day is not None and day < LATENCY_FIX_BEFORE else 0
        if first:
            state, acts = state[1:], acts[:-1]
            conversions.append(f"latency fix: collected {day} (< 2021-07-23): first observation "
                               "and last action dropped")
        steps = self._convert_steps(obs, state, acts, first, conversions)
        cameras, depth_left_out = self._cameras(d, eid, len(state), first, conversions)
        return self._assemble_episode(d, eid, day, steps, cameras, conversions, depth_left_out)

    def _convert_steps(self, obs: dict[str, Any], state: np.ndarray, acts: np.ndarray, first: int,
                       conversions: list[str]) -> Steps:
        """Relative Euler -> absolute xyzw, gripper 1 = open -> 0 = open, actions padded to n."""
        n = len(state)
        ee = bridge_state_to_pose7(state, self.base_angle_rad)
        conversions.append("ee_pose: full_state Euler (Rz Ry Rx) relative to the gripper-down "
                           f"default rotation -> absolute quaternion xyzw (base_angle_rad={self.base_angle_rad})")
        grip = np.clip(1.0 - state[:, 6], 0.0, 1.0)
        conversions.append("gripper: Bridge 1 = open -> canonical 1 - g (0 = open, 1 = closed)")
        action = np.zeros((n, 7))
        action[:-1] = acts
        action[:-1, 6] = np.clip(1.0 - acts[:, 6], 0.0, 1.0)
        action[-1, 6] = grip[-1]
        ts = obs.get("time_stamp")
        ts = None if ts is None else np.asarray(ts, np.float64).reshape(-1)[first:first + n]
        timestamp, note = relative_timestamps(ts, n, CONTROL_HZ)
        conversions.append(f"timestamp: {note}")
        qpos = obs.get("qpos")
        joints = (np.asarray(qpos, np.float64)[first:first + n] if qpos is not None
                  and len(qpos) >= first + n else np.zeros((n, 0)))
        return Steps(timestamp=timestamp, ee_pose=ee[:, None, :], gripper=grip[:, None],
                     joint_positions=joints, action=action)

    def _cameras(self, d: Path, eid: str, n: int, first: int, conversions: list[str]
                 ) -> tuple[dict[str, CameraStream], dict[str, str]]:
        """Every requested images<i> folder as a CameraStream (name image_<i>), in folder order."""
        folders = sorted((int(p.name[len("images"):]), p) for p in d.glob("images*")
                         if p.is_dir() and p.name[len("images"):].isdigit())
        cameras: dict[str, CameraStream] = {}
        depth_left_out: dict[str, str] = {}
        for i, folder in folders:
            name = f"image_{i}"
            if self.cameras is None or name in self.cameras:
                cameras[name] = self._camera(d, i, folder, eid, n, first, conversions, depth_left_out)
        if not cameras:
            raise SourceError("no images<i> folder (or none of the requested cameras)", path=str(d),
                              episode_id=eid, field="images")
        return cameras, depth_left_out

    def _camera(self, d: Path, i: int, folder: Path, eid: str, n: int, first: int,
                conversions: list[str], depth_left_out: dict[str, str]) -> CameraStream:
        name = f"image_{i}"
        files = numbered_files(folder, "im_", ".jpg")
        if len(files) != n + first:
            raise SourceError(f"{len(files)} images for {n + first} observations", path=str(folder),
                              episode_id=eid, field=f"images{i}")
        rgb = lazy_images(files[first:], eid, f"images{i}")
        depth, prov = _depth(d, i, rgb, eid, n, first, conversions, depth_left_out)
        K = self.intrinsics.get(name)
        T = self.extrinsics.get(name)
        conversions.append(calibration_note(name, K, T))
        return CameraStream(name=name, rgb=rgb, intrinsics=K, T_base_cam=T,
                            intrinsics_unknown=K is None, extrinsics_unknown=T is None,
                            depth=depth, depth_provenance=prov)

    @staticmethod
    def _assemble_episode(d: Path, eid: str, day: date | None, steps: Steps,
                          cameras: dict[str, CameraStream], conversions: list[str],
                          depth_left_out: dict[str, str]) -> Episode:
        lines = []
        if (d / "lang.txt").is_file():
            lines = [ln.strip() for ln in (d / "lang.txt").read_text().splitlines()
                     if ln.strip() and "confidence" not in ln]
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=lines[0] if lines else "",
            robot=RobotInfo("widowx_250", 1), control_hz=CONTROL_HZ, steps=steps,
            cameras=cameras, action_space=ACTION_SPACE, conversions=conversions,
            metadata={"trajectory_dir": str(d), "language_instructions": lines,
                      "collection_date": str(day) if day else "", "calibration": "none released",
                      "depth_left_out": depth_left_out,
                      "ee_frame": "WidowX end effector (controller)"},
        )
