"""pyarrow schemas of the output tables: SFT records, failures, and the manifest's shard list."""

from __future__ import annotations

import json

import pyarrow as pa

from appf.schemas.version import SCHEMA_VERSION

_MESSAGE_CONTENT = pa.list_(pa.struct([("type", pa.string()), ("text", pa.string())]))
_MESSAGE = pa.struct([("role", pa.string()), ("content", _MESSAGE_CONTENT)])

# The Hugging Face `datasets` Image feature as `datasets.Features.arrow_schema` writes it: a struct
# of the encoded file bytes and an optional path, declared in the schema's "huggingface" metadata.
# `datasets.load_dataset` then yields PIL images and TRL's vision-language collator takes the rows
# as they are; columns the metadata leaves out get their feature from the Arrow type.
HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
_HF_FEATURES = json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})

SFT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("episode_id", pa.string()),
        ("keyframe_index", pa.int32()),        # k-th keyframe of the episode
        ("obs_frame", pa.int32()),             # step whose image is shown
        ("target_frame", pa.int32()),          # step of the keyframe (the target)
        ("arm", pa.int32()),
        ("camera", pa.string()),
        ("image", HF_IMAGE),                   # {"bytes": encoded image, "path": None}
        ("image_format", pa.string()),         # "jpeg" | "png"
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("instruction", pa.string()),
        ("K", pa.list_(pa.float64(), 9)),      # row-major 3x3, pixels
        ("anchor_uv", pa.list_(pa.float64(), 2)),     # pixels
        ("anchor_uvd", pa.list_(pa.float64(), 3)),    # pixels, pixels, metres (camera z)
        ("anchor_in_view", pa.bool_()),        # anchor inside the image and in front of the camera
        ("waypoints_cam", pa.list_(pa.list_(pa.float64(), 3))),  # metres, camera frame
        ("target_pose_cam", pa.list_(pa.float64(), 7)),          # xyz m + quat xyzw, camera frame
        ("gripper_command", pa.float64()),     # 0 = open, 1 = closed
        ("messages", pa.list_(_MESSAGE)),
    ],
    metadata={b"appf_schema_version": str(SCHEMA_VERSION).encode(),
              b"huggingface": _HF_FEATURES.encode()},
)

FAILURE_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("episode_id", pa.string()),
        ("stage", pa.string()),
        ("error_type", pa.string()),
        ("message", pa.string()),
        ("shard", pa.int32()),
    ],
    metadata={b"appf_schema_version": str(SCHEMA_VERSION).encode()},
)

MANIFEST_SHARD_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("path", pa.string()),              # relative to the output dir; null when no episode landed
        ("sft_path", pa.string()),
        ("failures_path", pa.string()),
        ("episodes", pa.int32()),
        ("frames", pa.int64()),
        ("failures", pa.int32()),
        ("sft_records", pa.int32()),
        ("checksum", pa.string()),          # sha256 over the shard's files, see sinks.checksum
    ]
)


def image_bytes(cell) -> bytes:
    """The encoded image of an SFT `image` cell: the HF Image struct {"bytes", "path"}, or raw bytes
    (records written before the column became an Image feature)."""
    if isinstance(cell, dict):
        if cell.get("bytes") is None:
            raise ValueError(f"SFT image cell has no bytes (path {cell.get('path')!r}); appf writes "
                             "the encoded image into the record")
        return cell["bytes"]
    return cell
