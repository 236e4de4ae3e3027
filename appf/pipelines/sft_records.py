"""Gripper-keyframe SFT rows (DESIGN §4): geometry from appf.transforms.sft_geometry, the
observation image encoded, and a ready-to-train chat `messages` column."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pyarrow as pa

from appf.schemas import SFT_SCHEMA, CameraStream, Episode
from appf.transforms.sft_geometry import KeyframeTarget, keyframe_targets

POINT_PROMPT = (
    "{instruction}\nWhere should the gripper interact next? "
    "Answer with the pixel (u, v) of the interaction point."
)
PLAN_PROMPT = (
    "The interaction point is at (u, v, d) = ({u:.1f}, {v:.1f}, {d:.3f}) (pixels, pixels, metres). "
    "Give the end-effector waypoints and the target pose in the camera frame."
)


def encode_image(rgb: np.ndarray, image_format: str, jpeg_quality: int = 95) -> bytes:
    """Encode an RGB uint8 image as JPEG or PNG bytes."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    if image_format == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {image_format}")
    return buf.tobytes()


def _round(values, ndigits: int = 4) -> list:
    return np.round(np.asarray(values, dtype=np.float64), ndigits).tolist()


def chat_messages(instruction: str, t: KeyframeTarget) -> list[dict]:
    """The two-turn chat sample: image + instruction -> anchor; (u, v, d) -> waypoints + pose."""
    u, v, d = (float(x) for x in t.anchor_uvd)
    plan = {
        "waypoints": _round(t.waypoints_cam, 4),
        "target_pose": _round(t.target_pose_cam, 4),
        "gripper": round(float(t.gripper_command), 3),
    }
    text = lambda s: {"type": "text", "text": s}  # noqa: E731
    return [
        {"role": "user", "content": [{"type": "image", "text": None},
                                     text(POINT_PROMPT.format(instruction=instruction))]},
        {"role": "assistant", "content": [text(f"({u:.1f}, {v:.1f})")]},
        {"role": "user", "content": [text(PLAN_PROMPT.format(u=u, v=v, d=d))]},
        {"role": "assistant", "content": [text(json.dumps(plan))]},
    ]


def sft_table(ep: Episode, cam: CameraStream, rgb: np.ndarray, keyframe_steps: np.ndarray,
              n_waypoints: int, image_format: str, jpeg_quality: int) -> pa.Table:
    """One row per keyframe target of `ep`, seen by camera `cam` (rgb: its decoded frames)."""
    cam.T_base_cam_at(0)  # raises the clear "no extrinsics" error for uncalibrated cameras
    T_per_step = np.asarray(cam.T_base_cam, dtype=np.float64)
    targets = keyframe_targets(
        np.asarray(ep.steps.ee_pose, dtype=np.float64), np.asarray(ep.steps.gripper),
        keyframe_steps, np.asarray(cam.intrinsics, dtype=np.float64), T_per_step,
        cam.height, cam.width, n_waypoints=n_waypoints)
    rows = []
    for i, t in enumerate(targets):
        rows.append({
            "dataset": ep.dataset, "episode_id": ep.episode_id, "keyframe_index": i,
            "obs_frame": int(t.obs_step), "target_frame": int(t.target_step), "arm": int(t.arm),
            "camera": cam.name,
            "image": {"bytes": encode_image(rgb[t.obs_step], image_format, jpeg_quality), "path": None},
            "image_format": image_format, "width": cam.width, "height": cam.height,
            "instruction": ep.language_instruction,
            "K": np.asarray(cam.intrinsics, dtype=np.float64).ravel().tolist(),
            "anchor_uv": [float(x) for x in t.anchor_uv],
            "anchor_uvd": [float(x) for x in t.anchor_uvd],
            "anchor_in_view": bool(t.in_view),
            "waypoints_cam": np.asarray(t.waypoints_cam, dtype=np.float64).tolist(),
            "target_pose_cam": [float(x) for x in t.target_pose_cam],
            "gripper_command": float(t.gripper_command),
            "messages": chat_messages(ep.language_instruction, t),
        })
    return pa.Table.from_pylist(rows, schema=SFT_SCHEMA)
