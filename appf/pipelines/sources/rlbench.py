"""The `rlbench` source: RLBench episode folders (formats-sim.md §4).

Layouts under `input` (both supported):
  <task>/variation<V>/variation_descriptions.pkl + <task>/variation<V>/episodes/episode<E>/
  <task>/all_variations/episodes/episode<E>/ with per-episode variation_descriptions.pkl (PerAct)
An episode folder holds low_dim_obs.pkl (a pickled rlbench.demo.Demo of Observations with the
images set to None) and <cam>_{rgb,depth,mask}/<i>.png for cam in left_shoulder, right_shoulder,
overhead, wrist, front.

Conventions applied (Episode.conversions):
- low_dim_obs.pkl through the restricted unpickler: Demo and Observation load as attribute-only
  stand-ins (no RLBench install, no code from the pickle runs).
- depth: 24-bit big-endian packed PNG (R << 16 | G << 8 | B) / (2^24 - 1) = normalised linear
  depth; z_m = near + d (far - near) with misc[<cam>_camera_near/far].
- cameras: misc[<cam>_camera_intrinsics] has negative focal lengths: K_cv = K @ diag(-1, -1, 1);
  misc[<cam>_camera_extrinsics] is the sensor's camera-to-world pose: T_cv = T @ diag(-1, -1, 1, 1);
  pixel coordinates are the integer row/column (no +0.5); per frame (the wrist camera moves).
- world -> robot base with `T_world_base` (RLBench stores no base pose: default identity, i.e. the
  world frame serves as base, which is where RLBench users' scene bounds live).
- ee_pose = gripper_pose (world, xyzw); gripper = 1 - gripper_open; no actions are stored, so
  action[t] is the next step's pose and gripper (the keyframe methods' convention).
- masks: RGB-packed CoppeliaSim handles, little-endian (R + 256 G + 65536 B); no handle -> name
  table is stored, so segment categories come from the `segment_ids` option.
Dirty cases -> SourceError: missing or refused pickle, image count != observations, missing
camera parameters in misc, depth PNG not 8-bit RGB, images of different sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._real_io import lazy_images, numbered_files
from appf.pipelines.sources._sim_io import (
    NEXT_TARGET_ACTION, PYREP_TO_CV, next_step_targets, pose_option, segments_from_ids,
    world_cam_to_base, world_pose7_to_base,
)
from appf.pipelines.sources.base import SourceInfo
from appf.pipelines.sources.safe_pickle import safe_load
from appf.schemas import CameraStream, Episode, EpisodeRef, LazyFrames, RobotInfo, SourceError, Steps

DATASET = "rlbench"
CAMERAS = ("left_shoulder", "right_shoulder", "overhead", "wrist", "front")
RECORDS = frozenset({("rlbench.demo", "Demo"), ("rlbench.backend.observation", "Observation")})
DEPTH_SCALE = 2 ** 24 - 1


class PackedPngs:
    """Picklable loader of RLBench's packed PNGs: depth (24-bit big-endian normalised, scaled to
    metres per frame) or masks (little-endian handles, int32)."""

    def __init__(self, paths: list[Path], episode_id: str, field: str,
                 near_far: np.ndarray | None = None):
        self.paths, self.episode_id, self.field, self.near_far = paths, episode_id, field, near_far

    def _rgb(self, p: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(p) as im:
                a = np.asarray(im)
        except OSError as e:
            raise SourceError(f"cannot decode PNG: {e}", path=str(p), episode_id=self.episode_id,
                              field=self.field) from e
        if a.ndim != 3 or a.shape[2] < 3 or a.dtype != np.uint8:
            raise SourceError(f"packed PNG must be 8-bit RGB, found {a.dtype} {a.shape}", path=str(p),
                              episode_id=self.episode_id, field=self.field)
        return a[..., :3].astype(np.int64)

    def __call__(self, start: int, stop: int) -> np.ndarray:
        out = []
        for t in range(start, stop):
            a = self._rgb(self.paths[t])
            if self.near_far is None:  # mask handles, little-endian
                out.append((a[..., 0] + 256 * a[..., 1] + 65536 * a[..., 2]).astype(np.int32))
            else:
                near, far = self.near_far[t]
                d = (a[..., 0] * 65536 + a[..., 1] * 256 + a[..., 2]) / DEPTH_SCALE
                out.append((near + d * (far - near)).astype(np.float32))
        return np.stack(out)


def _misc_array(obs: list[Any], key: str, path: Path, eid: str) -> np.ndarray:
    try:
        return np.stack([np.asarray(o.misc[key], np.float64) for o in obs])
    except (AttributeError, KeyError, TypeError) as e:
        raise SourceError(f"observation misc lacks {key!r} ({e!r})", path=str(path), episode_id=eid,
                          field=f"misc.{key}") from e


class RLBenchSource:
    """RLBench episodes. Options: input (root holding task folders, a task folder, or one episode
    folder), cameras (subset of CAMERAS; default ["front"]), T_world_base (4x4 or
    [x, y, z, qx, qy, qz, qw]; default identity), control_hz (default 20 [unconfirmed]),
    segment_ids ({"robot": [handles], "task_object": [...]}: enables ground-truth masks)."""

    info = SourceInfo(
        name="rlbench",
        description="RLBench episode folders: 5 cameras of RGB + packed linear depth + handle masks, "
                    "per-frame camera poses, gripper pose, no actions (next-pose targets)",
        ground_truth_depth=True, segmentation=True, calibration=True, arms="1",
        default_depth="ground_truth", default_masks="none",
        default_crop=((-0.3, -0.5, 0.76), (0.7, 0.5, 1.6)),
    )

    def __init__(self, input: str | None = None, cameras: list[str] | tuple[str, ...] = ("front",),
                 T_world_base: Any = None, control_hz: float = 20.0,
                 segment_ids: dict[str, list[int]] | None = None, **unused: Any) -> None:
        if not input:
            raise SourceError("rlbench needs source_options['input'] (--input PATH)")
        self.root = Path(input)
        if not self.root.is_dir():
            raise SourceError("input folder does not exist", path=str(self.root))
        bad = [c for c in cameras if c not in CAMERAS]
        if bad:
            raise SourceError(f"unknown cameras {bad}; choose among {CAMERAS}", field="cameras")
        self.cameras, self.control_hz = tuple(cameras), float(control_hz)
        self.base_given = T_world_base is not None
        self.T_world_base = np.eye(4) if T_world_base is None else pose_option(T_world_base, "T_world_base")
        self.segments = segments_from_ids(segment_ids, "segment_ids")

    # -- locate ----------------------------------------------------------------------------------

    def list_refs(self) -> list[EpisodeRef]:
        folders = sorted({p.parent for p in self.root.rglob("low_dim_obs.pkl")} |
                         ({self.root} if (self.root / "low_dim_obs.pkl").is_file() else set()))
        base = self.root.parent if (self.root / "low_dim_obs.pkl").is_file() else self.root
        return [EpisodeRef(DATASET, p.relative_to(base).as_posix().replace("/episodes/", "/"), i, uri=str(p))
                for i, p in enumerate(folders)]

    @staticmethod
    def _instruction(folder: Path, eid: str) -> str:
        for cand in (folder / "variation_descriptions.pkl", folder.parent.parent / "variation_descriptions.pkl"):
            if cand.is_file():
                texts = safe_load(cand, eid, "variation_descriptions.pkl")
                return str(texts[0]) if isinstance(texts, (list, tuple)) and texts else ""
        return ""

    def _observations(self, folder: Path, eid: str) -> list[Any]:
        path = folder / "low_dim_obs.pkl"
        demo = safe_load(path, eid, "low_dim_obs.pkl", records=RECORDS)
        obs = getattr(demo, "_observations", demo)
        if not isinstance(obs, list) or not obs or not all(hasattr(o, "gripper_pose") for o in obs):
            raise SourceError("expected a Demo (or list) of Observations with gripper_pose",
                              path=str(path), episode_id=eid, field="low_dim_obs.pkl")
        return obs

    # -- cameras ---------------------------------------------------------------------------------

    def _camera(self, cam: str, folder: Path, obs: list[Any], eid: str) -> CameraStream:
        n, pkl = len(obs), folder / "low_dim_obs.pkl"
        files = {k: numbered_files(folder / f"{cam}_{k}", "", ".png") for k in ("rgb", "depth", "mask")}
        for kind, paths in files.items():
            if len(paths) != n:
                raise SourceError(f"{len(paths)} {cam}_{kind} images for {n} observations",
                                  path=str(folder / f"{cam}_{kind}"), episode_id=eid, field=f"{cam}_{kind}")
        rgb = lazy_images(files["rgb"], eid, f"{cam}_rgb")
        h, w = rgb.shape[1:3]
        K = _misc_array(obs[:1], f"{cam}_camera_intrinsics", pkl, eid)[0] @ np.diag([-1.0, -1.0, 1.0])
        T_world = _misc_array(obs, f"{cam}_camera_extrinsics", pkl, eid) @ PYREP_TO_CV
        near_far = np.stack([_misc_array(obs, f"{cam}_camera_{k}", pkl, eid).reshape(n) for k in ("near", "far")], 1)
        T_base = world_cam_to_base(self.T_world_base, T_world)
        fixed = np.allclose(T_base, T_base[0], atol=1e-9)
        mask = LazyFrames((n, h, w), np.dtype(np.int32), PackedPngs(files["mask"], eid, f"{cam}_mask"))
        return CameraStream(
            name=cam, rgb=rgb, intrinsics=K, T_base_cam=T_base[0] if fixed else T_base,
            depth=LazyFrames((n, h, w), np.dtype(np.float32),
                             PackedPngs(files["depth"], eid, f"{cam}_depth", near_far)),
            segmentation=mask if self.segments else None, segments=self.segments,
            depth_provenance="simulator")

    # -- read ------------------------------------------------------------------------------------

    def read(self, ref: EpisodeRef) -> Episode:
        folder, eid = Path(ref.uri), ref.episode_id
        obs = self._observations(folder, eid)
        n = len(obs)
        try:
            pose = np.stack([np.asarray(o.gripper_pose, np.float64).reshape(7) for o in obs])
            grip = 1.0 - np.array([float(o.gripper_open) for o in obs])
            joints = np.stack([np.asarray(o.joint_positions, np.float64) for o in obs])
        except (AttributeError, TypeError, ValueError) as e:
            raise SourceError(f"observations need gripper_pose (7), gripper_open and joint_positions "
                              f"({e!r})", path=str(folder / "low_dim_obs.pkl"), episode_id=eid,
                              field="observation") from e
        ee = world_pose7_to_base(self.T_world_base, pose)[:, None]
        cameras = {c: self._camera(c, folder, obs, eid) for c in self.cameras}
        notes = ["depth: 24-bit big-endian PNG -> near + d (far - near) m",
                 "cameras: negative-focal K @ diag(-1,-1,1); pose @ diag(-1,-1,1,1) -> OpenCV",
                 "gripper: 1 - gripper_open; action: next step's pose + gripper (none stored)",
                 "base frame: " + ("T_world_base from the source options" if self.base_given else
                                   "the world frame (RLBench stores no base pose; pass T_world_base)")]
        return Episode(
            dataset=DATASET, episode_id=eid, language_instruction=self._instruction(folder, eid),
            robot=RobotInfo("franka_panda", 1), control_hz=self.control_hz,
            steps=Steps(timestamp=np.arange(n) / self.control_hz, ee_pose=ee, gripper=grip[:, None],
                        joint_positions=joints, action=next_step_targets(ee, grip[:, None])),
            cameras=cameras, action_space=NEXT_TARGET_ACTION, conversions=notes,
            metadata={"folder": str(folder)})
