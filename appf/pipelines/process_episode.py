"""Per-episode composition of the pure stages, with no Beam: point clouds for every frame,
keyframes, SFT rows. The Beam graph and the plain-loop benchmark both call these."""

from __future__ import annotations

import numpy as np

from appf.annotators.protocols import LABEL_BACKGROUND, LABEL_ROBOT, LABEL_TASK_OBJECT
from appf.pipelines.config import JobConfig
from appf.pipelines.processed import MASK_ARRAY_PREFIX, ProcessedEpisode
from appf.pipelines.sft_records import sft_table
from appf.schemas import Episode, materialize
from appf.transforms.crop import CropBox
from appf.transforms.keyframes import keyframe_mask, keyframes
from appf.transforms.pointcloud import CameraView, CloudConfig, frame_point_cloud

_KEEP_LABELS = {
    "none": None,
    "no_robot": (LABEL_BACKGROUND, LABEL_TASK_OBJECT),
    "task_objects": (LABEL_TASK_OBJECT,),
    "foreground": (LABEL_ROBOT, LABEL_TASK_OBJECT),
}


class StageError(Exception):
    """An episode failed in one stage; `stage` goes into the failures table."""

    def __init__(self, stage: str, error: BaseException):
        self.stage = stage
        self.error = error
        super().__init__(f"[{stage}] {type(error).__name__}: {error}")


def cloud_config(cfg: JobConfig, default_crop=None) -> CloudConfig:
    crop = cfg.crop if cfg.crop is not None else default_crop
    return CloudConfig(
        n_points=cfg.n_points,
        crop=None if crop is None else CropBox.from_list(crop),
        near_m=cfg.near_m, far_m=cfg.far_m,
        flying_rel_threshold=cfg.flying_rel_threshold,
        flying_abs_threshold_m=cfg.flying_abs_threshold_m,
        isolated_window=cfg.isolated_window,
        isolated_min_neighbors=cfg.isolated_min_neighbors,
        keep_labels=_KEEP_LABELS[cfg.mask_mode],
        fps_method=cfg.fps_method,
    )


def robot_state(ee_pose: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(T, 8 * arms) float32: per arm TCP xyz (m), quat xyzw, gripper (0 open, 1 closed)."""
    T, arms = gripper.shape
    return np.concatenate([ee_pose, gripper[..., None]], axis=-1).reshape(T, arms * 8).astype(np.float32)


def episode_point_clouds(ep: Episode, labels: dict[str, np.ndarray] | None, cameras: list[str],
                         ccfg: CloudConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point clouds of every step, fused over `cameras`: (T, N, 6), (T, N) labels, (T,) real counts."""
    T = ep.num_steps
    cams = [ep.cameras[c] for c in cameras]
    rgbs = [materialize(c.rgb) for c in cams]
    depths = [materialize(c.depth) for c in cams]
    points = np.empty((T, ccfg.n_points, 6), dtype=np.float32)
    point_labels = np.empty((T, ccfg.n_points), dtype=np.uint8)
    n_real = np.empty((T,), dtype=np.int32)
    for t in range(T):
        views = [
            CameraView(depth_m=depths[i][t], rgb=rgbs[i][t],
                       K=np.asarray(c.intrinsics, dtype=np.float64), T_base_cam=c.T_base_cam_at(t),
                       labels=None if labels is None else labels[c.name][t])
            for i, c in enumerate(cams)
        ]
        try:
            cloud = frame_point_cloud(views, ccfg)
        except ValueError as e:  # keep the type (EmptyCloudError...), say where
            e.args = (f"{ep.key} step {t} (cameras {cameras}): {e}", *e.args[1:])
            raise
        points[t], point_labels[t], n_real[t] = cloud.points, cloud.labels, cloud.n_real
    return points, point_labels, n_real


def select_cameras(ep: Episode, cfg: JobConfig) -> list[str]:
    names = cfg.cameras or [n for n, c in ep.cameras.items() if c.depth is not None]
    missing = [n for n in names if n not in ep.cameras]
    if missing:
        raise ValueError(f"{ep.key}: camera(s) {missing} not in the episode (has {list(ep.cameras)})")
    if not names:
        raise ValueError(f"{ep.key}: no camera has depth after the depth pass")
    no_depth = [n for n in names if ep.cameras[n].depth is None]
    if no_depth:
        raise ValueError(f"{ep.key}: camera(s) {no_depth} have no depth")
    return names


def process_episode(ep: Episode, labels: dict[str, np.ndarray] | None, cfg: JobConfig,
                    index: int, default_crop=None, provenance: dict | None = None) -> ProcessedEpisode:
    """Point clouds, keyframes and SFT rows of one annotated episode. Raises StageError."""
    try:
        cameras = select_cameras(ep, cfg)
        points, point_labels, n_real = episode_point_clouds(
            ep, labels, cameras, cloud_config(cfg, default_crop))
    except Exception as e:  # noqa: BLE001 - recorded as a failure of this stage
        raise StageError("pointcloud", e) from e
    try:
        ee = np.asarray(ep.steps.ee_pose, dtype=np.float32)
        grip = np.asarray(ep.steps.gripper, dtype=np.float32)
        kf = keyframes(grip)
        sft_cam = ep.cameras[cfg.sft_camera or next(iter(ep.cameras))]
        sft = sft_table(ep, sft_cam, materialize(sft_cam.rgb), kf.steps, cfg.n_waypoints,
                        cfg.image_format, cfg.jpeg_quality)
    except Exception as e:  # noqa: BLE001
        raise StageError("keyframes", e) from e
    arrays = {
        "point_cloud": points,
        "point_label": point_labels,
        "point_count_real": n_real,
        "state": robot_state(ee, grip),
        "action": np.asarray(ep.steps.action, dtype=np.float32),
        "ee_pose": ee,
        "gripper": grip,
        "timestamp": np.asarray(ep.steps.timestamp, dtype=np.float64),
        "keyframe": keyframe_mask(ep.num_steps, kf.steps).astype(np.uint8),
    }
    if cfg.store_masks and labels:
        arrays.update({f"{MASK_ARRAY_PREFIX}{cam}": np.asarray(lab, np.uint8)
                       for cam, lab in labels.items()})
    prov = dict(provenance or {})
    prov["depth"] = sorted({ep.cameras[c].depth_provenance for c in cameras})
    prov["cameras"] = cameras
    prov["action_space"] = ep.action_space
    return ProcessedEpisode(ep.dataset, ep.episode_id, index, arrays, sft, prov)
