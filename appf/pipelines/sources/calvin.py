"""The `calvin` source: CALVIN splits, one compressed npz per frame (formats-sim.md §3).

Layout of a split folder (`training/` or `validation/` of task_D_D, task_ABC_D, ...):
  episode_<7 digits>.npz        rgb_static (200,200,3), depth_static (200,200) m z-depth,
                                rgb_gripper (84,84,3), depth_gripper (84,84), actions (7,)
                                absolute TCP target (world xyz m, Euler xyz rad, gripper +1 open /
                                -1 close), robot_obs (15,) [tcp xyz, tcp Euler xyz, gripper width m,
                                7 joints rad, last gripper action], scene_obs (24,)
  ep_start_end_ids.npy          (E, 2) inclusive global frame ranges of the recordings
  .hydra/merged_config.yaml     cameras.static {fov, width, height, look_from, look_at,
                                up_vector}, scene.robot_base_position / robot_base_orientation
  lang_annotations/auto_lang_ann.npy   {"language": {"ann": [...]}, "info": {"indx": [(s, e)]}}

Episodes: `episodes: language` (default when annotations exist) makes one episode per annotated
window with its instruction (what language-conditioned training uses); `episodes: recordings`
one per recording (no language). Episode id "<split>/<start>-<end>" (global frame numbers).

Conventions applied: K from the vertical fov with pixel centres at +0.5 (PyBullet; cx = (W-1)/2 in
pixel-index coordinates); static camera-to-world from OpenGL lookAt as OpenCV axes
(R = [s, -u, f], t = look_from); gripper camera from the TCP pose through the URDF offsets
(tcp_joint xyz 0 0 0.1 rpy 0 0 pi, camera_joint xyz -0.1 0 0 rpy 1.3 0 -1.57, then OpenGL view
-> OpenCV) [inferred from calvin_env, verify by reprojection]; world -> robot base with the
config's robot_base_position/orientation (default [-0.34, -0.46, 0.24], [0, 0, 0]); Euler xyz
= scipy "xyz" (extrinsic, PyBullet getEulerFromQuaternion) [unconfirmed]; gripper = last command
(+1 open -> 0, -1 close -> 1; the measured width does not reach "closed" on a held block); rate
30 Hz. No segmentation is stored. Dirty cases -> SourceError: missing frame files, missing keys,
bad shapes, missing camera config, NaN depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import xyz_euler_to_matrix
from appf.pipelines.sources._sim_io import world_cam_to_base, world_pose7_to_base
from appf.pipelines.sources.base import SourceInfo
from appf.schemas import CameraStream, Episode, EpisodeRef, LazyFrames, RobotInfo, SourceError, Steps
from appf.transforms.geometry import matrix_to_pose

DATASET = "calvin"
CONTROL_HZ = 30.0
DEFAULT_BASE = ([-0.34, -0.46, 0.24], [0.0, 0.0, 0.0])
GRIPPER_CAM = {"fov": 75.0, "width": 84, "height": 84}
# panda_hand -> tcp and panda_hand -> gripper_cam from calvin_env's panda.urdf (formats-sim.md §3.4)
T_HAND_TCP = xyz_euler_to_matrix(np.array([0.0, 0.0, 0.1, 0.0, 0.0, 3.14]))
T_HAND_CAM = xyz_euler_to_matrix(np.array([-0.1, 0.0, 0.0, 1.3, 0.0, -1.57]))
CAM_LINK_TO_CV = np.array([[-1.0, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def fov_intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """PyBullet computeProjectionMatrixFOV (vertical fov, square pixels) as a pixel-index K."""
    f = height / (2.0 * np.tan(np.deg2rad(fov_deg) / 2.0))
    return np.array([[f, 0, (width - 1) / 2.0], [0, f, (height - 1) / 2.0], [0, 0, 1.0]])


def look_at_cv(look_from: Any, look_at: Any, up: Any) -> np.ndarray:
    """OpenGL lookAt -> camera-to-world 4x4 in OpenCV axes."""
    eye = np.asarray(look_from, np.float64)
    f = np.asarray(look_at, np.float64) - eye
    f /= np.linalg.norm(f)
    s = np.cross(f, np.asarray(up, np.float64))
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    T = np.eye(4)
    T[:3, :3] = np.stack([s, -u, f], axis=1)
    T[:3, 3] = eye
    return T


class NpzFrames:
    """Picklable loader of one key over per-frame npz files."""

    def __init__(self, paths: list[Path], key: str, episode_id: str):
        self.paths, self.key, self.episode_id = paths, key, episode_id

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = []
        for p in self.paths[start:stop]:
            try:
                with np.load(p) as z:
                    out.append(np.asarray(z[self.key]))
            except (OSError, KeyError, ValueError) as e:
                raise SourceError(f"cannot read frame: {e}", path=str(p), episode_id=self.episode_id,
                                  field=self.key) from e
        return np.stack(out)


class DepthFrames(NpzFrames):
    """Depth in metres; NaN/inf is an error (the ground-truth contract), negative -> invalid."""

    def __call__(self, start: int, stop: int) -> np.ndarray:
        d = super().__call__(start, stop).astype(np.float32)
        if not np.isfinite(d).all():
            raise SourceError("depth has NaN/inf values", path=str(self.paths[start]),
                              episode_id=self.episode_id, field=self.key)
        d[d < 0] = 0.0
        return d


def _low_dim(paths: list[Path], episode_id: str) -> tuple[np.ndarray, np.ndarray]:
    """robot_obs and actions of every frame, one archive open per frame."""
    robot, act = [], []
    for p in paths:
        try:
            with np.load(p) as z:
                robot.append(z["robot_obs"])
                act.append(z["actions"])
        except (OSError, KeyError, ValueError) as e:
            raise SourceError(f"cannot read frame: {e}", path=str(p), episode_id=episode_id,
                              field="robot_obs/actions") from e
    return np.stack(robot), np.stack(act)


class CalvinSource:
    """CALVIN split folders. Options: input (a split's training/ or validation/ folder, or the
    split root holding both), cameras (["static"] default, "gripper" [inferred pose]), episodes
    ("language" or "recordings"), robot_base_position, robot_base_orientation (override the
    config)."""

    info = SourceInfo(
        name="calvin",
        description="CALVIN splits (per-frame npz): static + gripper RGB-D (metres), TCP pose, "
                    "language windows, 30 Hz; extrinsics from the split's camera config",
        ground_truth_depth=True, calibration=True, arms="1", default_depth="ground_truth",
        default_masks="none", default_crop=((-0.1, 0.0, 0.0), (0.9, 1.0, 0.6)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ("static",),
                 episodes: str = "auto", robot_base_position: Any = None,
                 robot_base_orientation: Any = None, **unused: Any) -> None:
        if not input:
            raise SourceError("calvin needs source_options['input'] (--input PATH): a split folder")
        root = Path(input)
        self.splits = [root] if (root / "ep_start_end_ids.npy").is_file() else \
            [root / s for s in ("training", "validation") if (root / s / "ep_start_end_ids.npy").is_file()]
        if not self.splits:
            raise SourceError("no CALVIN split here (expected ep_start_end_ids.npy in it, or in "
                              "training/ or validation/)", path=str(root), field="ep_start_end_ids.npy")
        bad = [c for c in cameras if c not in ("static", "gripper")]
        if bad:
            raise SourceError(f"unknown cameras {bad}; choose among ['static', 'gripper']", field="cameras")
        if episodes not in ("auto", "language", "recordings"):
            raise SourceError("episodes must be auto, language or recordings", field="episodes")
        self.cameras, self.episodes = tuple(cameras), episodes
        self.base_override = (robot_base_position, robot_base_orientation)

    # -- locate ----------------------------------------------------------------------------------

    def _windows(self, split: Path) -> list[tuple[int, int, str]]:
        ann = split / "lang_annotations" / "auto_lang_ann.npy"
        if self.episodes != "recordings" and ann.is_file():
            d = np.load(ann, allow_pickle=True).item()  # a plain dict of lists (CALVIN's own format)
            return [(int(s), int(e), str(t)) for (s, e), t in zip(d["info"]["indx"], d["language"]["ann"])]
        if self.episodes == "language":
            raise SourceError("episodes: language needs lang_annotations/auto_lang_ann.npy",
                              path=str(ann), field="lang_annotations")
        ids = np.load(split / "ep_start_end_ids.npy")
        return [(int(s), int(e), "") for s, e in np.asarray(ids).reshape(-1, 2)]

    def list_refs(self) -> list[EpisodeRef]:
        items = []
        for split in self.splits:
            items += [(f"{split.name}/{s:07d}-{e:07d}", str(split), s, e, lang)
                      for s, e, lang in self._windows(split)]
        return [EpisodeRef(DATASET, eid, i, uri=uri, options=(("start", s), ("end", e), ("lang", lang)))
                for i, (eid, uri, s, e, lang) in enumerate(sorted(items))]

    # -- decode / convert ------------------------------------------------------------------------

    def _config(self, split: Path, eid: str) -> dict[str, Any]:
        import yaml

        path = split / ".hydra" / "merged_config.yaml"
        try:
            cfg = yaml.safe_load(path.read_text())
            static = cfg["cameras"]["static"]
            for k in ("fov", "width", "height", "look_from", "look_at", "up_vector"):
                static[k]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise SourceError(f"camera config unreadable or incomplete ({e!r}); CALVIN's static "
                              "camera is defined by cameras.static.{fov, width, height, look_from, "
                              "look_at, up_vector}", path=str(path), episode_id=eid,
                              field="cameras.static") from e
        return cfg

    def _base(self, cfg: dict[str, Any]) -> tuple[np.ndarray, str]:
        scene = cfg.get("scene") or {}
        pos, orn = self.base_override
        origin = "source options" if pos is not None else "merged_config scene.robot_base_*"
        pos = pos if pos is not None else scene.get("robot_base_position")
        orn = orn if orn is not None else scene.get("robot_base_orientation")
        if not isinstance(pos, list) or not isinstance(orn, list):
            pos, orn, origin = *DEFAULT_BASE, "calvin_env default (config has none)"
        return xyz_euler_to_matrix(np.array([*pos, *orn], np.float64)), origin

    def _frames(self, split: Path, start: int, end: int, eid: str) -> tuple[list[Path], np.ndarray, np.ndarray]:
        paths = [split / f"episode_{i:07d}.npz" for i in range(start, end + 1)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise SourceError(f"{len(missing)} frame file(s) missing, first {missing[0]}",
                              path=str(split), episode_id=eid, field="episode_*.npz")
        robot, act = _low_dim(paths, eid)
        if robot.shape[1:] != (15,) or act.shape[1:] != (7,):
            raise SourceError(f"robot_obs must be (15,) and actions (7,), found {robot.shape[1:]} and "
                              f"{act.shape[1:]}", path=str(paths[0]), episode_id=eid, field="robot_obs")
        return paths, robot.astype(np.float64), act.astype(np.float64)

    def _camera(self, name: str, paths: list[Path], cfg: dict[str, Any], T_world_base: np.ndarray,
                tcp_world: np.ndarray, eid: str) -> CameraStream:
        cam = cfg["cameras"]["static"] if name == "static" else {**GRIPPER_CAM, **(cfg["cameras"].get("gripper") or {})}
        with np.load(paths[0]) as z:
            if f"rgb_{name}" not in z or f"depth_{name}" not in z:
                raise SourceError(f"frame lacks rgb_{name}/depth_{name}", path=str(paths[0]),
                                  episode_id=eid, field=f"rgb_{name}")
            h, w = z[f"rgb_{name}"].shape[:2]
        K = fov_intrinsics(float(cam["fov"]), w, h)
        if name == "static":
            T_world_cam = look_at_cv(cam["look_from"], cam["look_at"], cam["up_vector"])
        else:  # hand = tcp @ inv(hand->tcp); camera link -> OpenCV through the view matrix's axes
            T_world_cam = tcp_world @ np.linalg.inv(T_HAND_TCP) @ T_HAND_CAM @ CAM_LINK_TO_CV
        n = len(paths)
        return CameraStream(
            name=name, rgb=LazyFrames((n, h, w, 3), np.dtype(np.uint8), NpzFrames(paths, f"rgb_{name}", eid)),
            intrinsics=K, T_base_cam=world_cam_to_base(T_world_base, T_world_cam),
            depth=LazyFrames((n, h, w), np.dtype(np.float32), DepthFrames(paths, f"depth_{name}", eid)),
            depth_provenance="simulator")

    # -- read ------------------------------------------------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        split, eid = Path(ref.uri), ref.episode_id
        cfg = self._config(split, eid)
        T_world_base, base_origin = self._base(cfg)
        paths, robot, act = self._frames(split, int(ref.option("start")), int(ref.option("end")), eid)
        tcp_world = xyz_euler_to_matrix(robot[:, :6])
        ee = world_pose7_to_base(T_world_base, matrix_to_pose(tcp_world))
        gripper = (1.0 - np.sign(robot[:, 14])) / 2.0
        cameras = {c: self._camera(c, paths, cfg, T_world_base, tcp_world, eid) for c in self.cameras}
        n = len(paths)
        notes = [f"base frame: T_world_base from {base_origin}",
                 "ee_pose: robot_obs TCP (world, Euler xyz as scipy 'xyz') -> base, xyzw",
                 "gripper: robot_obs[14] last command, +1 open -> 0, -1 close -> 1",
                 "static camera: lookAt -> OpenCV; K from fov, pixel centres +0.5"]
        if "gripper" in self.cameras:
            notes.append("gripper camera: pose from the TCP through panda.urdf offsets [inferred]")
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=str(ref.option("lang") or ""),
            robot=RobotInfo("franka_panda", 1), control_hz=CONTROL_HZ,
            steps=Steps(timestamp=np.arange(n) / CONTROL_HZ, ee_pose=ee[:, None],
                        gripper=gripper[:, None], joint_positions=robot[:, 7:14],
                        action=self._action(act, T_world_base)),
            cameras=cameras, action_space=ACTION_SPACE, conversions=notes,
            metadata={"split": str(split), "frames": [int(ref.option("start")), int(ref.option("end"))]})

    @staticmethod
    def _action(act: np.ndarray, T_world_base: np.ndarray) -> np.ndarray:
        target = world_pose7_to_base(T_world_base, matrix_to_pose(xyz_euler_to_matrix(act[:, :6])))
        return np.concatenate([target, ((1.0 - np.sign(act[:, 6:7])) / 2.0)], axis=1)


ACTION_SPACE = (
    "action[t] (8,) = CALVIN's absolute `actions`: TCP target xyz (m) + quaternion xyzw in the "
    "robot base frame (converted from world xyz + Euler xyz), then the gripper command (0 = open, "
    "1 = close; CALVIN +1 open / -1 close)")
