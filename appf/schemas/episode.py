"""The canonical episode record (DESIGN §2): what every source produces and every stage reads.

Conventions: metres, seconds, radians; camera axes OpenCV (x right, y down, z forward);
quaternions xyzw; `T_base_cam` maps camera to base (p_base = T @ p_cam); gripper 0 = open,
1 = closed. Pixel arrays may be `LazyFrames`, decoded only by the stage that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Union

import numpy as np


class SegmentCategory(str, Enum):
    """What a segmentation id stands for."""

    ROBOT = "robot"
    TASK_OBJECT = "task_object"
    BACKGROUND = "background"


@dataclass(frozen=True)
class Segment:
    """One row of a camera's segmentation id table."""

    id: int
    name: str
    category: SegmentCategory


@dataclass
class LazyFrames:
    """Frames decoded on demand: `loader(start, stop)` returns frames [start, stop) as an array.

    Holds no pixels itself, so an episode that carries only LazyFrames is cheap to shuffle.
    `loader` must be picklable (a module-level function, functools.partial of one, or a small
    class with __call__): Beam pickles elements, and a lambda or closure fails there.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    loader: Callable[[int, int], np.ndarray]
    description: str = ""

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def load(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else min(stop, len(self))
        frames = np.asarray(self.loader(start, stop))
        expected = (stop - start, *self.shape[1:])
        if frames.shape != expected:
            raise ValueError(
                f"lazy frames {self.description or '<unnamed>'}: loader returned shape "
                f"{frames.shape} for [{start}, {stop}), expected {expected}"
            )
        return frames

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self.load(start, stop)[::step]
        i = index + len(self) if index < 0 else index
        return self.load(i, i + 1)[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.load()
        return out.astype(dtype) if dtype is not None else out


FrameArray = Union[np.ndarray, LazyFrames]


def materialize(frames: FrameArray | None) -> np.ndarray | None:
    """Decode lazy frames (or pass an array through)."""
    if frames is None or isinstance(frames, np.ndarray):
        return frames
    return frames.load()


@dataclass
class CameraStream:
    """One camera of an episode. `intrinsics` K is for the stored resolution (pixels).

    `intrinsics` may be None only with `intrinsics_unknown=True` (a source without calibration);
    a depth stage that estimates K (MoGe) then fills it in. `T_base_cam` may be None only with
    `extrinsics_unknown=True`; such a camera gets depth but cannot give base-frame point clouds
    or SFT geometry until the user supplies extrinsics (those stages fail with that message).
    """

    name: str
    rgb: FrameArray
    intrinsics: np.ndarray | None
    T_base_cam: np.ndarray | None
    rgb_right: FrameArray | None = None
    baseline_m: float | None = None
    depth: FrameArray | None = None
    segmentation: FrameArray | None = None
    segments: tuple[Segment, ...] = ()
    intrinsics_unknown: bool = False
    extrinsics_unknown: bool = False
    depth_provenance: str = ""

    @property
    def height(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[2])

    def T_base_cam_at(self, t: int) -> np.ndarray:
        """Camera-to-base 4x4 at step t (per-episode extrinsics are the same at every step)."""
        if self.T_base_cam is None:
            raise ValueError(
                f"camera {self.name!r} has no extrinsics (T_base_cam"
                f"{', the dataset has no calibration' if self.extrinsics_unknown else ''}); "
                "base-frame point clouds and SFT geometry need camera-to-base extrinsics: pass "
                "them in the source options (e.g. `extrinsics`) or the job config")
        T = np.asarray(self.T_base_cam, dtype=np.float64)
        return T if T.ndim == 2 else T[t]

    def ids_of(self, category: SegmentCategory) -> np.ndarray:
        """Segmentation ids belonging to one category."""
        return np.array([s.id for s in self.segments if s.category == category], dtype=np.int64)


@dataclass
class RobotInfo:
    name: str
    arm_count: int = 1


@dataclass
class Steps:
    """Time-major per-step arrays; T = number of steps.

    timestamp (T,) s float64; ee_pose (T, arms, 7) xyz m + quat xyzw, TCP in the base frame;
    gripper (T, arms) 0 = open, 1 = closed; joint_positions (T, J) rad; action (T, D), its
    meaning documented by the source in `Episode.action_space`.
    """

    timestamp: np.ndarray
    ee_pose: np.ndarray
    gripper: np.ndarray
    joint_positions: np.ndarray
    action: np.ndarray

    def __len__(self) -> int:
        return int(np.shape(self.timestamp)[0])


@dataclass
class Episode:
    """The canonical episode: everything downstream of a source knows only this record."""

    dataset: str
    episode_id: str
    language_instruction: str
    robot: RobotInfo
    control_hz: float
    steps: Steps
    cameras: dict[str, CameraStream]
    action_space: str = ""
    conversions: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.episode_id}"


@dataclass(frozen=True)
class EpisodeRef:
    """A lightweight, picklable pointer to one episode: what crosses a shuffle.

    A source sets `index` to the episode's position in its sorted list; the job replaces it by
    the episode's index in the output's persisted shard plan (appf/pipelines/shard_plan.py),
    which fixes the shard the episode lands in on every runner and every re-run.
    """

    dataset: str
    episode_id: str
    index: int
    uri: str = ""
    options: tuple[tuple[str, Any], ...] = ()

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)
