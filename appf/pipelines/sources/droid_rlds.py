"""The `droid_rlds` source: the DROID TFDS/RLDS release (`droid`, `droid_100`; versions 1.0.0
and 1.0.1; formats-real.md §1.8), read without TensorFlow (see _rlds_io).

`input` = the version folder (`.../droid/1.0.1`, holding dataset_info.json, features.json and
`<builder name>-<split>.tfrecord-NNNNN-of-MMMMM`) or its parent with one version folder. One
TFRecord record = one episode; episode id `<builder name>-<version>-<split>-<shard>-<record>`
(droid_100's builder is named `r2d2_faceblur`). RLDS has no episode uuid: the raw h5 path is in
`metadata["file_path"]`.

Per step (builder `droid.py`, kylehsu-tri/droid_dataset_builder, a copy of the official one):
observation/{exterior_image_1_left, exterior_image_2_left, wrist_image_left} (180x320 JPEG, left
eye, RGB), observation/{cartesian_position (6,), gripper_position (1,), joint_position (7,)}
float64, action_dict/{cartesian_position, cartesian_velocity, gripper_position, gripper_velocity,
joint_position, joint_velocity}, action (7,), language_instruction[_2, _3] (the _2/_3 fields
are in droid_100 1.0.0 and droid 1.0.1, not in the builder copy: read when present).

Precision: tf.train.Example keeps floats in a 32-bit FloatList, so TFDS float64 Tensors come
back with float32 precision (~1e-7 relative: 0.1 um at 1 m) -- seen with tfds' own serializer on
the fixtures; [inferred] for the released files, written by the same serializer.

Conventions applied (Episode.conversions):
- ee_pose: observation/cartesian_position [x, y, z m, rx, ry, rz rad], scipy lowercase "xyz"
  Euler (R = Rz Ry Rx) -> xyz + quaternion xyzw. FLANGE (panda_link8); `tcp_offset_m` moves it
  along the flange z axis (as droid_raw).
- gripper: observation/gripper_position is already 0 = open, 1 = closed (DROID writes
  1 - width / max_width, formats-real.md §1.3 [verified]); clipped to [0, 1].
- action (T, 8) = action_dict/cartesian_position converted like the state + action_dict/
  gripper_position (the same layout as droid_raw). The stored `action` (7,) is checked against
  concat(action_dict/cartesian_position, action_dict/gripper_position), which is what the builder
  code writes (its doc string says "joint velocities": wrong per the code; sources disagree,
  formats-real.md §1.8 [unconfirmed]); a mismatch is a SourceError naming file, episode and
  field (`check_action=False` skips the check).
- timestamps: step index / 15 Hz (RLDS stores no clock).
- cameras "ext1", "ext2", "wrist" = exterior_image_1_left, exterior_image_2_left,
  wrist_image_left (the names droid_raw uses; ext1/ext2 are exterior cameras in the builder's
  camera_type key order, which is by serial [inferred] -- not left/right of the robot).
- no intrinsics in RLDS: intrinsics=None, intrinsics_unknown=True unless the user gives
  `intrinsics={camera: 3x3}` at the stored resolution (RLDS is 320x180 = HD720 / 4: scale a
  ZED K by 0.25 [inferred]).
- no extrinsics in RLDS 1.0.0: T_base_cam=None, extrinsics_unknown=True (the point-cloud and SFT
  stages then fail with the "no extrinsics" message) unless the user gives
  `extrinsics={"ext1"|"ext2": 4x4 or [x,y,z,rx,ry,rz] camera-to-base}` (one scene: options apply
  to every episode) and, for the wrist camera, `wrist_offset` (camera pose in the flange frame,
  4x4 or 6-vector; T_base_cam[t] = T_base_flange[t] @ offset, as DROID's
  robot_env.get_camera_extrinsics composes the gripper offset with the EE pose).
  1.0.1 carries episode_metadata/extrinsics_exterior_cam_{1,2} (6-vectors): they are kept in
  metadata, and used as constant ext1/ext2 T_base_cam only with `episode_extrinsics=True`: their
  meaning (camera-to-base pose of the left eye at t = 0, like the raw metadata
  *_cam_extrinsics, scipy "xyz" Euler) and the pairing exterior_cam_1 <-> exterior_image_1 are
  [inferred], not verified against a real file. extrinsics_wrist_cam is never used (t = 0 pose
  or gripper offset: unconfirmed).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import xyz_euler_to_matrix, xyz_euler_to_pose7
from appf.pipelines.sources._rlds_io import (
    decode_episode, feature_at, lazy_encoded, list_episode_refs, open_dataset_dir, skip_image_decoders,
    stack_field, text, user_matrix, user_pose,
)
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, RobotInfo, SourceError, Steps

DATASET = "droid"
CONTROL_HZ = 15.0
CAMERA_KEYS = {"ext1": "exterior_image_1_left", "ext2": "exterior_image_2_left",
               "wrist": "wrist_image_left"}
EPISODE_EXTRINSICS = {"ext1": "extrinsics_exterior_cam_1", "ext2": "extrinsics_exterior_cam_2"}
REQUIRED = ("steps/observation/cartesian_position", "steps/observation/gripper_position",
            "steps/observation/joint_position", "steps/action_dict/cartesian_position",
            "steps/action_dict/gripper_position", "steps/action")
LANGUAGE = ("language_instruction", "language_instruction_2", "language_instruction_3")
ACTION_TOL = 1e-6
ACTION_SPACE = (
    "action[t] (8,) = DROID action_dict/cartesian_position (absolute commanded FLANGE pose, base "
    "frame) as xyz (m) + quaternion xyzw, then action_dict/gripper_position (target, 0 = open, "
    "1 = closed); the RLDS `action` field is checked equal to their concatenation"
)


class DroidRldsSource:
    """DROID RLDS (see the module docstring). Options: input, version, splits, cameras (among
    ext1, ext2, wrist), intrinsics / extrinsics (per camera), wrist_offset, episode_extrinsics,
    tcp_offset_m, check_action, verify_crc."""

    info = SourceInfo(
        name="droid_rlds",
        description="DROID RLDS/TFDS release (droid, droid_100; 1.0.0/1.0.1): 3 left-eye 320x180 "
                    "JPEG views, no depth, no intrinsics, extrinsics only with options; 15 Hz",
        stereo=False, sensor_depth=False, ground_truth_depth=False, segmentation=False,
        calibration=False, arms="1", default_depth="moge2", default_masks="none",
        default_crop=((0.2, -0.6, -0.1), (1.0, 0.6, 0.7)),
    )

    def __init__(self, input: str | None = None, version: str | None = None,
                 splits: list[str] | None = None, cameras: list[str] | tuple[str, ...] = tuple(CAMERA_KEYS),
                 intrinsics: dict[str, Any] | None = None, extrinsics: dict[str, Any] | None = None,
                 wrist_offset: Any = None, episode_extrinsics: bool = False, tcp_offset_m: float = 0.0,
                 check_action: bool = True, verify_crc: bool = True, **unused: Any) -> None:
        if not input:
            raise SourceError("droid_rlds needs source_options['input'] (--input PATH): the TFDS "
                              "version folder (e.g. .../droid_100/1.0.0)")
        bad = [c for c in cameras if c not in CAMERA_KEYS]
        if bad:
            raise SourceError(f"unknown cameras {bad}; choose among {list(CAMERA_KEYS)}", field="cameras")
        self.cameras = tuple(cameras)
        self.ds = open_dataset_dir(input, version)
        missing = [p for p in (*REQUIRED, *(f"steps/observation/{CAMERA_KEYS[c]}" for c in self.cameras))
                   if feature_at(self.ds.features, p) is None]
        if missing:
            raise SourceError(f"not a DROID RLDS schema: features.json lacks {missing}",
                              path=self.ds.features_json, field=missing[0])
        self.splits = list(splits) if splits else None
        self.intrinsics = {k: user_matrix(v, (3, 3), f"intrinsics[{k!r}]") for k, v in (intrinsics or {}).items()}
        if "wrist" in (extrinsics or {}):
            raise SourceError("the wrist camera moves with the arm: give its pose in the flange frame "
                              "as `wrist_offset`, not a constant camera-to-base `extrinsics['wrist']`",
                              field="extrinsics['wrist']")
        self.extrinsics = {k: user_pose(v, f"extrinsics[{k!r}]") for k, v in (extrinsics or {}).items()}
        self.wrist_offset = None if wrist_offset is None else user_pose(wrist_offset, "wrist_offset")
        self.episode_extrinsics = bool(episode_extrinsics)
        self.tcp_offset_m = float(tcp_offset_m)
        self.check_action = bool(check_action)
        self.verify_crc = bool(verify_crc)
        self._decoders = skip_image_decoders(feature_at(self.ds.features, "steps"))
        meta = feature_at(self.ds.features, "episode_metadata")
        self._meta_keys = sorted(meta.keys()) if meta is not None else []
        self._language = [k for k in LANGUAGE if feature_at(self.ds.features, f"steps/{k}") is not None]

    def list_refs(self) -> list[EpisodeRef]:
        return list_episode_refs(self.ds, DATASET, self.splits)

    def read(self, ref: EpisodeRef) -> Episode:
        ex, steps = decode_episode(self.ds, ref, self._decoders, self.verify_crc)
        cart, grip, joints, a_cart, a_grip, action_raw = self._decode_steps(steps, ref)
        conversions: list[str] = []
        if self.check_action:
            self._check_action(action_raw, a_cart, a_grip, ref, conversions)
        ee, g, action, T_base_flange = self._convert_steps(cart, grip, a_cart, a_grip, conversions)
        meta = {k: ex["episode_metadata"][k] for k in self._meta_keys}
        ep_extr = self._episode_extrinsics(meta, ref)
        cameras = {role: self._camera(role, steps, T_base_flange, ep_extr, ref, conversions)
                   for role in self.cameras}
        T = len(steps)
        arrays = Steps(timestamp=np.arange(T, dtype=np.float64) / CONTROL_HZ, ee_pose=ee[:, None, :],
                       gripper=g[:, None], joint_positions=joints, action=action)
        return self._assemble_episode(ref, steps, meta, ep_extr, arrays, cameras, conversions)

    @staticmethod
    def _decode_steps(steps: list[dict], ref: EpisodeRef) -> tuple[np.ndarray, ...]:
        """(cartesian_position (T, 6), gripper_position (T,), joint_position, action_dict/
        cartesian_position (T, 6), action_dict/gripper_position (T, 1), action (T, 7)) as stored."""
        cart = stack_field(steps, "observation/cartesian_position", ref, (6,))
        grip = stack_field(steps, "observation/gripper_position", ref, (1,))[:, 0]
        joints = stack_field(steps, "observation/joint_position", ref)
        a_cart = stack_field(steps, "action_dict/cartesian_position", ref, (6,))
        a_grip = stack_field(steps, "action_dict/gripper_position", ref, (1,))
        action_raw = stack_field(steps, "action", ref, (7,))
        return cart, grip, joints, a_cart, a_grip, action_raw

    @staticmethod
    def _check_action(action_raw: np.ndarray, a_cart: np.ndarray, a_grip: np.ndarray, ref: EpisodeRef,
                      conversions: list[str]) -> None:
        """Fail unless `action` == concat(action_dict/cartesian_position, gripper_position)."""
        diff = np.abs(action_raw - np.concatenate([a_cart, a_grip], axis=1))
        if diff.max() > ACTION_TOL:
            t, j = (int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
            raise SourceError(
                f"`action` is not concat(action_dict/cartesian_position, action_dict/"
                f"gripper_position): step {t} dim {j} differs by {diff[t, j]:.3g} "
                f"(action={action_raw[t, j]!r}); the builder code writes that concatenation "
                "(formats-real.md §1.8); pass check_action=False to read it anyway",
                path=ref.uri, episode_id=ref.episode_id, field="steps/action")
        conversions.append("action: RLDS `action` checked equal to concat(action_dict/"
                           "cartesian_position, action_dict/gripper_position)")

    def _convert_steps(self, cart: np.ndarray, grip: np.ndarray, a_cart: np.ndarray, a_grip: np.ndarray,
                       conversions: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(ee_pose (T, 7) xyz + quat xyzw, gripper (T,) 0 = open, action (T, 8), T_base_flange (T, 4, 4))."""
        ee = xyz_euler_to_pose7(cart)
        conversions.append("ee_pose: DROID cartesian_position [xyz, scipy 'xyz' Euler rad] -> xyz + quat xyzw")
        T_base_flange = xyz_euler_to_matrix(cart)
        if self.tcp_offset_m:
            ee[:, :3] += T_base_flange[:, :3, 2] * self.tcp_offset_m
            conversions.append(f"ee_pose: flange moved {self.tcp_offset_m} m along flange z to the TCP")
        else:
            conversions.append("ee_pose: FLANGE (panda_link8) pose, no TCP offset applied (tcp_offset_m=0)")
        g = np.clip(grip, 0.0, 1.0)
        conversions.append("gripper: DROID gripper_position already 0 = open, 1 = closed (clipped to [0, 1])")
        action = np.concatenate([xyz_euler_to_pose7(a_cart), np.clip(a_grip, 0.0, 1.0)], axis=1)
        conversions.append(f"timestamp: step index / {CONTROL_HZ} Hz (RLDS stores no clock)")
        return ee, g, action, T_base_flange

    @staticmethod
    def _episode_extrinsics(meta: dict[str, Any], ref: EpisodeRef) -> dict[str, np.ndarray]:
        """Per exterior role: the 1.0.1 episode_metadata extrinsics 6-vector, when present."""
        ep_extr = {}
        for role, key in EPISODE_EXTRINSICS.items():
            if key in meta:
                v = np.asarray(meta[key], np.float64).reshape(-1)
                if v.shape != (6,) or not np.isfinite(v).all():
                    raise SourceError(f"expected a finite 6-vector, found {v.tolist()}", path=ref.uri,
                                      episode_id=ref.episode_id, field=f"episode_metadata/{key}")
                ep_extr[role] = v
        return ep_extr

    def _camera(self, role: str, steps: list[dict], T_base_flange: np.ndarray,
                ep_extr: dict[str, np.ndarray], ref: EpisodeRef, conversions: list[str]) -> CameraStream:
        key = CAMERA_KEYS[role]
        declared = feature_at(self.ds.features, f"steps/observation/{key}").shape
        rgb = lazy_encoded([s["observation"][key] for s in steps], declared, ref,
                           f"steps/observation/{key}")
        K = self.intrinsics.get(role)
        Tc, note = self._extrinsics(role, T_base_flange, ep_extr, ref)
        conversions.append(f"{role}: {key}; " + ("intrinsics from the user's config" if K is not None
                                                 else "intrinsics unknown (not in RLDS)") + f"; {note}")
        return CameraStream(name=role, rgb=rgb, intrinsics=K, T_base_cam=Tc,
                            intrinsics_unknown=K is None, extrinsics_unknown=Tc is None)

    def _assemble_episode(self, ref: EpisodeRef, steps: list[dict], meta: dict[str, Any],
                          ep_extr: dict[str, np.ndarray], arrays: Steps, cameras: dict[str, CameraStream],
                          conversions: list[str]) -> Episode:
        lang = {k: text(steps[0][k]) for k in self._language}
        all_lang = [v for v in lang.values() if v]
        file_path = text(meta.get("file_path", ""))
        metadata: dict[str, Any] = {
            "rlds": {"dir": str(self.ds.path), "builder": self.ds.name, "version": self.ds.version,
                     "split": ref.option("split"), "file": ref.uri, "record": ref.option("record")},
            "file_path": file_path, "success": "/success/" in file_path,
            "language_instructions": all_lang, "ee_frame": "flange" if not self.tcp_offset_m
            else f"flange + {self.tcp_offset_m} m",
            "episode_extrinsics": {k: v.tolist() for k, v in ep_extr.items()},
        }
        for k in self._meta_keys:
            if k in ("file_path",) or k in EPISODE_EXTRINSICS.values():
                continue
            v = meta[k]
            metadata[k] = text(v) if isinstance(v, (bytes, bytearray)) else np.asarray(v).tolist()
        return Episode(
            dataset=DATASET, episode_id=ref.episode_id, language_instruction=all_lang[0] if all_lang else "",
            robot=RobotInfo("franka", 1), control_hz=CONTROL_HZ, steps=arrays,
            cameras=cameras, action_space=ACTION_SPACE, conversions=conversions, metadata=metadata,
        )

    def _extrinsics(self, role: str, T_base_flange: np.ndarray, ep_extr: dict[str, np.ndarray],
                    ref: EpisodeRef) -> tuple[np.ndarray | None, str]:
        if role == "wrist":
            if self.wrist_offset is None:
                return None, "extrinsics unknown (no wrist_offset given)"
            return T_base_flange @ self.wrist_offset, "T_base_cam[t] = flange pose[t] @ user wrist_offset"
        if role in self.extrinsics:
            return self.extrinsics[role], "extrinsics from the user's config (constant)"
        if self.episode_extrinsics:
            if role not in ep_extr:
                raise SourceError("episode_extrinsics=True but the episode has no such field (RLDS "
                                  "1.0.0 has none; 1.0.1 has it)", path=ref.uri, episode_id=ref.episode_id,
                                  field=f"episode_metadata/{EPISODE_EXTRINSICS[role]}")
            return (xyz_euler_to_matrix(ep_extr[role]),
                    f"T_base_cam from episode_metadata/{EPISODE_EXTRINSICS[role]} (6-vector, scipy "
                    "'xyz', camera-to-base at t = 0 [inferred]), constant")
        return None, "extrinsics unknown (not in RLDS; see the extrinsics / episode_extrinsics options)"
