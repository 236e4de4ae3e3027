"""The `bridge_rlds` source: BridgeData V2 in RLDS/TFDS form, read without TensorFlow (see
_rlds_io). Two schemas, told apart by the dataset directory's features.json:

- "bridge_dataset" (the rail release, a.k.a. bridge_orig; kpertsch/bridge_rlds_builder,
  formats-real.md §3.4): steps/observation/image_0..image_3 (256x256 JPEG, 640x480 squashed;
  missing views zero-filled), observation/state (7,) = full_state, action (7,) = the policy_out
  action, language_instruction, language_embedding; episode_metadata/{file_path, episode_id,
  has_image_0..3, has_language}. A later builder revision (480x640, adds depth_0) has the same
  field names; its depth_0 is uint8 JPEG (the uint16 values are destroyed) and is ignored.
- "oxe" (the Open X-Embodiment copy gs://gresearch/robotics/bridge/0.1.0, formats-real.md §3.5):
  steps/observation/image (480x640), observation/state (7,), observation/
  natural_language_instruction, action = {world_vector (3,), rotation_delta (3,),
  open_gripper (bool, True = open), terminate_episode}; no episode_metadata.

Both `state` vectors are taken as full_state [x, y, z, roll, pitch, yaw, gripper]: verified for
the rail builder (built from obs_dict full_state); for the OXE copy it is [inferred] from
OpenVLA/Octo, which slice both the same way (EEF = state[:6], gripper = state[-1]) -- the TFDS
catalog's description ("joint angles") is a template leftover in both.

Conventions applied (Episode.conversions), reusing bridge_raw's functions:
- ee_pose: xyz + Euler relative to the gripper-down default rotation -> absolute quaternion xyzw
  (bridge_state_to_pose7, base_angle_rad option as bridge_raw).
- gripper: state[6] 1 = open -> canonical 1 - g (0 = open, 1 = closed).
- action (T, 7) = [dx, dy, dz, droll, dpitch, dyaw as stored, gripper target as 0 = open /
  1 = closed] (rail: 1 - action[6]; OXE: 1 - open_gripper). A rail episode whose last action is
  all zeros (the raw-based revision pads one) gets its last gripper target = its own gripper.
  OXE's first action is all zeros (OpenVLA drops that step); kept, noted in metadata.
- the pre-2021-07-23 latency shift was already applied by the builders.
- cameras: rail "image_0".."image_3" (image_0 fixed, image_3 wrist; image_1/2 side views whose
  identity depends on the raw folder numbering in the 256x256 build [inferred]); a view whose
  frames are all byte-identical and whose first frame is black is a zero-filled missing view and
  is left out (the has_image_* flags are unreliable, formats-real.md §3.7 pitfall 4; kept in
  metadata). OXE: "image" (one view).
- no calibration: intrinsics=None (intrinsics_unknown) and T_base_cam=None (extrinsics_unknown)
  unless given as `intrinsics={camera: 3x3}` (for the STORED resolution: the 256x256 build
  squashes 4:3 to 1:1, so fx and fy differ) / `extrinsics={camera: 4x4 camera-to-base}`
  (one setup: options apply to every episode; the wrist view moves, do not give it one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appf.pipelines.sources._rlds_io import (
    decode_episode, decode_image, feature_at, lazy_encoded, list_episode_refs, open_dataset_dir,
    skip_image_decoders, stack_field, text, user_matrix, user_pose,
)
from appf.pipelines.sources.base import SourceInfo
from appf.pipelines.sources.bridge_raw import CONTROL_HZ, DATASET, bridge_state_to_pose7, calibration_note
from appf.schemas import CameraStream, Episode, EpisodeRef, RobotInfo, SourceError, Steps

RAIL = "bridge_dataset"
OXE = "oxe"
RAIL_VIEWS = ("image_0", "image_1", "image_2", "image_3")
ACTION_SPACE = (
    "action[t] (7,) = BridgeData action: [dx, dy, dz] m (base axes), [droll, dpitch, dyaw] rad "
    "(R = Rz Ry Rx deltas) as stored, gripper target converted to 0 = open / 1 = closed"
)


def detect_schema(features: Any, features_json: str) -> str:
    """"bridge_dataset" or "oxe" from the features; SourceError naming what is missing."""
    obs = feature_at(features, "steps/observation")
    act = feature_at(features, "steps/action")
    if obs is None or act is None or "state" not in obs:
        raise SourceError("not a Bridge RLDS schema: features.json needs steps/observation/state "
                          "and steps/action", path=features_json, field="steps/observation/state")
    import tensorflow_datasets as tfds

    if isinstance(act, tfds.features.FeaturesDict):
        need = [k for k in ("world_vector", "rotation_delta", "open_gripper") if k not in act]
        if "image" in obs and not need:
            return OXE
        raise SourceError(f"dict-valued steps/action looks like the OXE bridge schema but lacks "
                          f"{need or ['observation/image']}", path=features_json,
                          field=f"steps/action/{need[0]}" if need else "steps/observation/image")
    views = [v for v in RAIL_VIEWS if v in obs]
    if views and "language_instruction" in feature_at(features, "steps"):
        return RAIL
    raise SourceError(f"tensor steps/action looks like the rail bridge_dataset schema but "
                      f"observation has {sorted(obs.keys())} (need image_0..image_3) and steps "
                      "needs language_instruction", path=features_json, field="steps/observation/image_0")


def _missing_view(blobs: list[bytes]) -> bool:
    """Zero-filled view: every frame the same bytes and the first one black (decoded once)."""
    if any(b != blobs[0] for b in blobs[1:]):
        return False
    a = decode_image(blobs[0])
    return a is not None and int(a.max()) <= 2


class BridgeRldsSource:
    """BridgeData V2 RLDS, rail `bridge_dataset` or OXE `bridge` (see the module docstring).
    Options: input, version, splits, cameras, intrinsics / extrinsics (per camera),
    base_angle_rad, verify_crc."""

    info = SourceInfo(
        name="bridge_rlds",
        description="BridgeData V2 RLDS/TFDS (rail bridge_dataset 256x256 x4 views, or the OXE "
                    "bridge copy 480x640 x1): no depth, no calibration (K estimated downstream), 5 Hz",
        stereo=False, sensor_depth=False, ground_truth_depth=False, segmentation=False,
        calibration=False, arms="1", default_depth="moge2", default_masks="roboengine+sam2",
        default_crop=None,
    )

    def __init__(self, input: str | None = None, version: str | None = None,
                 splits: list[str] | None = None, cameras: list[str] | None = None,
                 intrinsics: dict[str, Any] | None = None, extrinsics: dict[str, Any] | None = None,
                 base_angle_rad: float = 0.0, verify_crc: bool = True, **unused: Any) -> None:
        if not input:
            raise SourceError("bridge_rlds needs source_options['input'] (--input PATH): the TFDS "
                              "version folder (e.g. .../bridge_dataset/1.0.0 or .../bridge/0.1.0)")
        self.ds = open_dataset_dir(input, version)
        self.schema = detect_schema(self.ds.features, self.ds.features_json)
        obs = feature_at(self.ds.features, "steps/observation")
        self.views = [v for v in RAIL_VIEWS if v in obs] if self.schema == RAIL else ["image"]
        self.cameras = list(cameras) if cameras else None
        bad = [c for c in self.cameras or [] if c not in self.views]
        if bad:
            raise SourceError(f"unknown cameras {bad}; this {self.schema} schema has {self.views}",
                              path=self.ds.features_json, field="cameras")
        self.splits = list(splits) if splits else None
        self.intrinsics = {k: user_matrix(v, (3, 3), f"intrinsics[{k!r}]") for k, v in (intrinsics or {}).items()}
        self.extrinsics = {k: user_pose(v, f"extrinsics[{k!r}]") for k, v in (extrinsics or {}).items()}
        self.base_angle_rad = float(base_angle_rad)
        self.verify_crc = bool(verify_crc)
        self._decoders = skip_image_decoders(feature_at(self.ds.features, "steps"))
        meta = feature_at(self.ds.features, "episode_metadata")
        self._meta_keys = sorted(meta.keys()) if meta is not None else []

    def list_refs(self) -> list[EpisodeRef]:
        return list_episode_refs(self.ds, DATASET, self.splits)

    # -- read: decode -> convert -> cameras -> assemble -----------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        ex, steps = decode_episode(self.ds, ref, self._decoders, self.verify_crc)
        state = stack_field(steps, "observation/state", ref, (7,))
        conversions = [f"schema: {self.schema} (from features.json)"]
        deltas, grip_target, lang_key = self._decode_actions(steps, ref, conversions)
        step_arrays = self._convert_steps(state, deltas, grip_target, conversions)
        cameras, missing = self._cameras(steps, ref, conversions)
        return self._assemble_episode(ref, ex, steps, lang_key, step_arrays, cameras, missing, conversions)

    def _decode_actions(self, steps: list[dict], ref: EpisodeRef, conversions: list[str]
                        ) -> tuple[np.ndarray, np.ndarray, str]:
        """(T, 6) deltas, (T,) gripper target (1 = open) and the language field, per schema."""
        if self.schema == RAIL:
            acts = stack_field(steps, "action", ref, (7,))
            return acts[:, :6], acts[:, 6], "language_instruction"
        wv = stack_field(steps, "action/world_vector", ref, (3,))
        rd = stack_field(steps, "action/rotation_delta", ref, (3,))
        grip_target = stack_field(steps, "action/open_gripper", ref, (), dtype=np.float64)
        conversions.append("action: OXE world_vector + rotation_delta + open_gripper (bool, True = open)")
        return np.concatenate([wv, rd], axis=1), grip_target, "observation/natural_language_instruction"

    def _convert_steps(self, state: np.ndarray, deltas: np.ndarray, grip_target: np.ndarray,
                       conversions: list[str]) -> Steps:
        """Relative Euler -> absolute xyzw, gripper 1 = open -> 0 = open, rail last-step padding."""
        T = len(state)
        ee = bridge_state_to_pose7(state, self.base_angle_rad)
        conversions.append("ee_pose: state Euler (Rz Ry Rx) relative to the gripper-down default rotation "
                           f"-> absolute quaternion xyzw (base_angle_rad={self.base_angle_rad})")
        grip = np.clip(1.0 - state[:, 6], 0.0, 1.0)
        conversions.append("gripper: Bridge 1 = open -> canonical 1 - g (0 = open, 1 = closed)")
        action = np.concatenate([deltas, np.clip(1.0 - grip_target, 0.0, 1.0)[:, None]], axis=1)
        padded_last = self.schema == RAIL and T > 1 and not np.any(np.concatenate([deltas[-1], grip_target[-1:]]))
        if padded_last:
            action[-1, 6] = grip[-1]
            conversions.append("action: last step is the builder's all-zero padding -> zero deltas + "
                               "its own gripper")
        conversions.append(f"timestamp: step index / {CONTROL_HZ} Hz (RLDS stores no clock)")
        return Steps(timestamp=np.arange(T, dtype=np.float64) / CONTROL_HZ, ee_pose=ee[:, None, :],
                     gripper=grip[:, None], joint_positions=np.zeros((T, 0)), action=action)

    def _cameras(self, steps: list[dict], ref: EpisodeRef, conversions: list[str]
                 ) -> tuple[dict[str, CameraStream], list[str]]:
        """The requested views as CameraStreams; rail views zero-filled by the builder left out
        (SourceError if one was asked for by name, or if none is left)."""
        cameras: dict[str, CameraStream] = {}
        missing = []
        for name in self.views:
            if self.cameras is not None and name not in self.cameras:
                continue
            blobs = [s["observation"][name] for s in steps]
            if self.schema == RAIL and _missing_view(blobs):
                missing.append(name)
                continue
            cameras[name] = self._camera(name, blobs, ref, conversions)
        wanted = [m for m in missing if self.cameras is not None and m in self.cameras]
        if wanted or not cameras:
            bad = wanted or missing or list(self.views)
            raise SourceError(f"view(s) {bad} are zero-filled (missing in this episode)"
                              + ("" if cameras else "; no camera left"), path=ref.uri,
                              episode_id=ref.episode_id, field=f"steps/observation/{bad[0]}")
        if missing:
            conversions.append(f"views {missing} zero-filled by the builder (missing): left out")
        return cameras, missing

    def _camera(self, name: str, blobs: list[bytes], ref: EpisodeRef, conversions: list[str]) -> CameraStream:
        field = f"steps/observation/{name}"
        rgb = lazy_encoded(blobs, feature_at(self.ds.features, field).shape, ref, field)
        K = self.intrinsics.get(name)
        Tc = self.extrinsics.get(name)
        conversions.append(calibration_note(name, K, Tc))
        return CameraStream(name=name, rgb=rgb, intrinsics=K, T_base_cam=Tc,
                            intrinsics_unknown=K is None, extrinsics_unknown=Tc is None)

    def _assemble_episode(self, ref: EpisodeRef, ex: dict, steps: list[dict], lang_key: str,
                          step_arrays: Steps, cameras: dict[str, CameraStream], missing: list[str],
                          conversions: list[str]) -> Episode:
        first = steps[0]
        for k in lang_key.split("/"):
            first = first[k]
        lang = text(first)
        meta = ex.get("episode_metadata", {}) if self._meta_keys else {}
        metadata: dict[str, Any] = {
            "rlds": {"dir": str(self.ds.path), "builder": self.ds.name, "version": self.ds.version,
                     "schema": self.schema, "split": ref.option("split"), "file": ref.uri,
                     "record": ref.option("record")},
            "language_instructions": [lang] if lang else [], "calibration": "none released",
            "missing_views": missing, "ee_frame": "WidowX end effector (controller)",
        }
        for k in self._meta_keys:
            v = meta[k]
            metadata[k] = text(v) if isinstance(v, (bytes, bytearray)) else np.asarray(v).tolist()
        if self.schema == OXE:
            metadata["first_action_all_zero"] = bool(not np.any(step_arrays.action[0, :6]))
        return Episode(
            dataset=DATASET, episode_id=ref.episode_id, language_instruction=lang,
            robot=RobotInfo("widowx_250", 1), control_hz=CONTROL_HZ, steps=step_arrays,
            cameras=cameras, action_space=ACTION_SPACE, conversions=conversions, metadata=metadata,
        )
