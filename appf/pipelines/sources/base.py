"""The source plug-in contract: list lightweight refs, read one episode at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from appf.schemas import Episode, EpisodeRef


@dataclass(frozen=True)
class SourceInfo:
    """What a source provides, for `appf sources` and for choosing default backends."""

    name: str
    description: str
    stereo: bool = False
    sensor_depth: bool = False
    ground_truth_depth: bool = False
    segmentation: bool = False
    calibration: bool = True
    arms: str = "1"
    default_depth: str = "ground_truth"
    default_masks: str = "ground_truth"
    # DP3-style workspace box in the base frame, ((xmin, ymin, zmin), (xmax, ymax, zmax)) metres,
    # used when the job config gives none.
    default_crop: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


class Source(Protocol):
    info: SourceInfo
    # Options that only choose which episodes list_refs() returns (not how one is read): a
    # re-run with other values extends the job's shard plan instead of being refused.
    selection_options: tuple[str, ...] = ()

    def __init__(self, **options: Any) -> None: ...

    def list_refs(self) -> list[EpisodeRef]:
        """Every episode of the input, sorted by episode id, with `index` = position (the job
        replaces it by the episode's index in the persisted shard plan)."""

    def read(self, ref: EpisodeRef) -> Episode:
        """One episode in canonical form (pixels may be LazyFrames)."""
