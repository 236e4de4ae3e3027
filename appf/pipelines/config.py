"""The job configuration: one typed record, loadable from YAML/JSON, hashed into every output."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appf.schemas import ConfigError
from appf.schemas.config_io import dataclass_from_dict, load_mapping

MASK_MODES = ("none", "no_robot", "task_objects", "foreground")
RUNNERS = ("local", "dask", "dataflow", "flink", "spark")

# Fields that change how a job runs, not what it writes: left out of the config hash.
_EXECUTION_FIELDS = ("out", "runner", "workers", "dask_address", "progress_every_s", "model_copies",
                     "episodes_per_batch", "runner_options", "image")


@dataclass
class JobConfig:
    """Everything a re-annotation job needs. Units: metres; crop is base-frame xyz min/max."""

    source: str = "synthetic"
    source_options: dict[str, Any] = field(default_factory=dict)
    out: str = "out"
    episodes_per_shard: int = 16
    n_points: int = 1024
    crop: list[list[float]] | None = None  # [[xmin, ymin, zmin], [xmax, ymax, zmax]]; None = source default
    near_m: float = 0.05
    far_m: float = 5.0
    flying_rel_threshold: float = 0.03
    flying_abs_threshold_m: float = 0.01
    isolated_window: int = 5
    isolated_min_neighbors: int = 6
    fps_method: str = "fast"
    mask_mode: str = "none"  # none | no_robot | task_objects | foreground (robot + task objects)
    store_masks: bool = False  # write each camera's mask labels into the shard (masks/<camera>)
    cameras: list[str] | None = None  # None = every camera with depth after the depth pass
    sft_camera: str | None = None  # None = the first camera
    depth: str = "auto"  # auto = the source's default backend
    masks: str = "auto"
    batch_frames: int = 8
    model_copies: int | None = None  # RunInference model copies per machine (None = one per process)
    episodes_per_batch: int = 4  # learned backends: episodes per RunInference batch (frames shared)
    zarr_format: int = 3
    chunk_frames: int = 100
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    n_waypoints: int = 8
    runner: str = "local"
    workers: int = 1
    dask_address: str | None = None
    runner_options: dict[str, Any] = field(default_factory=dict)  # per profile: launch/runner_profiles
    image: str | None = None  # worker image of the dataflow / flink / spark profiles
    progress_every_s: float = 2.0

    def __post_init__(self) -> None:
        problems = []
        if self.episodes_per_shard < 1:
            problems.append("episodes_per_shard must be >= 1")
        if self.n_points < 1:
            problems.append("n_points must be >= 1")
        if self.zarr_format not in (2, 3):
            problems.append(f"zarr_format must be 2 or 3, got {self.zarr_format}")
        if self.mask_mode not in MASK_MODES:
            problems.append(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        if self.runner not in RUNNERS:
            problems.append(f"runner must be one of {RUNNERS}, got {self.runner!r}")
        if self.image_format not in ("jpeg", "png"):
            problems.append(f"image_format must be jpeg or png, got {self.image_format!r}")
        if self.fps_method not in ("fast", "exact"):
            problems.append(f"fps_method must be fast or exact, got {self.fps_method!r}")
        if self.crop is not None:
            c = self.crop
            if len(c) != 2 or any(len(r) != 3 for r in c) or any(a >= b for a, b in zip(*c)):
                problems.append(f"crop must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] with min < max, got {c}")
        if self.episodes_per_batch < 1:
            problems.append("episodes_per_batch must be >= 1")
        if self.workers < 1:
            problems.append("workers must be >= 1")
        if problems:
            raise ConfigError("invalid job config: " + "; ".join(problems))

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "JobConfig":
        """Load YAML or JSON; `overrides` (e.g. from the command line) win over the file."""
        return cls.from_dict(load_mapping(path, "job config", ConfigError, overrides))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobConfig":
        return dataclass_from_dict(cls, data, "config", ConfigError)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def output_dict(self) -> dict[str, Any]:
        """The part of the config that determines the output (hashed)."""
        return {k: v for k, v in self.to_dict().items() if k not in _EXECUTION_FIELDS}

    def config_hash(self) -> str:
        """Hash of what determines each episode's output. Source options that only choose which
        episodes are listed (the source's `selection_options`, e.g. synthetic `episodes`) are left
        out: a different episode list extends the job through the shard plan (shard_plan.py)."""
        hashed = self.output_dict()
        selection = _selection_options(self.source)
        hashed["source_options"] = {k: v for k, v in self.source_options.items()
                                    if k not in selection}
        blob = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def shard_of(self, plan_index: int) -> int:
        """The shard of an episode from its plan index (`EpisodeRef.index` after planning)."""
        return plan_index // self.episodes_per_shard


def _selection_options(source: str) -> tuple[str, ...]:
    from appf.pipelines.sources import source_class

    try:
        return tuple(getattr(source_class(source), "selection_options", ()))
    except ConfigError:
        return ()  # an unknown source fails later, with the registry's message
