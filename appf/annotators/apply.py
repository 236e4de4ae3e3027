"""Apply an annotator to a whole episode, frames in batches (no Beam here: the Beam
model-handler in appf.pipelines.inference calls these)."""

from __future__ import annotations

import dataclasses

import numpy as np

from appf.annotators.protocols import DepthAnnotator, DepthBatch, Masker, MaskBatch
from appf.schemas import Episode, materialize


def _frame_ranges(T: int, batch_frames: int):
    for start in range(0, T, max(1, batch_frames)):
        yield start, min(T, start + batch_frames)


def depth_provenance(annotator: DepthAnnotator) -> str:
    """`name@weights_id:revision` (or just the name for weight-free backends)."""
    if not annotator.weights_id:
        return annotator.name
    return f"{annotator.name}@{annotator.weights_id}:{annotator.revision}"


def annotate_episode_depth(ep: Episode, annotator: DepthAnnotator, batch_frames: int = 8,
                           provenance: str | None = None) -> Episode:
    """Depth for every camera of `ep`, in batches of `batch_frames` frames; returns a new episode
    whose cameras carry `depth` (T, H, W) float32 metres, K, and the depth provenance.

    `provenance` defaults to the annotator's own; pass it when `annotator` is a proxy (Beam's
    shared model copies forward method calls, not attributes)."""
    provenance = provenance or depth_provenance(annotator)
    cameras = {}
    for name, cam in ep.cameras.items():
        T = ep.num_steps
        depth = np.zeros((T, cam.height, cam.width), dtype=np.float32)
        K = cam.intrinsics
        for a, b in _frame_ranges(T, batch_frames):
            batch = DepthBatch(
                rgb=np.asarray(cam.rgb[a:b]),
                K=K,
                rgb_right=None if cam.rgb_right is None else np.asarray(cam.rgb_right[a:b]),
                baseline_m=cam.baseline_m,
                sensor_depth=None if cam.depth is None else np.asarray(cam.depth[a:b]),
                where=f"{ep.key} camera {name!r} frames {a}..{b - 1}",
            )
            result = annotator.annotate(batch)
            depth[a:b] = result.depth_m
            K = result.K
        cameras[name] = dataclasses.replace(
            cam, depth=depth, intrinsics=K, intrinsics_unknown=False, depth_provenance=provenance)
    return dataclasses.replace(ep, cameras=cameras)


def mask_batch(ep: Episode, name: str) -> MaskBatch:
    """Camera `name` of `ep` as one MaskBatch: every frame, with what prompt-based maskers use
    (instruction, K, per-step T_base_cam, joint positions, the first arm's gripper) where the
    episode has it."""
    cam = ep.cameras[name]
    T = ep.num_steps
    joints = np.asarray(ep.steps.joint_positions, np.float64)
    return MaskBatch(
        rgb=materialize(cam.rgb),
        segmentation=materialize(cam.segmentation),
        segments=cam.segments,
        where=f"{ep.key} camera {name!r}",
        instruction=ep.language_instruction,
        K=None if cam.intrinsics is None else np.asarray(cam.intrinsics, np.float64),
        T_base_cam=(None if cam.T_base_cam is None
                    else np.stack([cam.T_base_cam_at(t) for t in range(T)])),
        joint_positions=joints if joints.size else None,
        gripper=np.asarray(ep.steps.gripper, np.float64).reshape(T, -1)[:, 0],
    )


def annotate_episode_masks(ep: Episode, masker: Masker) -> dict[str, np.ndarray]:
    """Per-camera labels (T, H, W) uint8 (robot / task object / background), each camera's
    frames in one batch (trackers need the whole episode)."""
    return {name: masker.masks(mask_batch(ep, name)).labels for name in ep.cameras}
