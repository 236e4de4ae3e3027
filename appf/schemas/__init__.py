"""Canonical records and their validation (no I/O beyond (de)serialisation)."""

from appf.schemas.episode import (
    CameraStream,
    Episode,
    EpisodeRef,
    FrameArray,
    LazyFrames,
    RobotInfo,
    Segment,
    SegmentCategory,
    Steps,
    materialize,
)
from appf.schemas.errors import (
    AppfError,
    ConfigError,
    EpisodeValidationError,
    Problem,
    SourceError,
)
from appf.schemas.tables import FAILURE_SCHEMA, MANIFEST_SHARD_SCHEMA, SFT_SCHEMA
from appf.schemas.validation import check_episode, validate_episode
from appf.schemas.version import SCHEMA_VERSION

__all__ = [
    "AppfError", "CameraStream", "ConfigError", "Episode", "EpisodeRef", "EpisodeValidationError",
    "FAILURE_SCHEMA", "FrameArray", "LazyFrames", "MANIFEST_SHARD_SCHEMA", "Problem", "RobotInfo",
    "SCHEMA_VERSION", "SFT_SCHEMA", "Segment", "SegmentCategory", "SourceError", "Steps",
    "check_episode", "materialize", "validate_episode",
]
