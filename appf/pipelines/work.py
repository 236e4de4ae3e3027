"""An episode in flight through the annotation passes, and its Beam coder.

No RunInference (and so no torch) here: model-free jobs import only this module."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace

import apache_beam as beam
import numpy as np

from appf.pipelines.processed import FailedEpisode
from appf.schemas import Episode, EpisodeRef


@dataclass
class EpisodeWork:
    """An episode on its way through the annotation passes; once a stage fails, `episode` and
    `labels` are dropped and `failure` says why (the element still flows to its shard writer)."""

    ref: EpisodeRef
    shard: int
    episode: Episode | None
    labels: dict[str, np.ndarray] | None = None
    failure: FailedEpisode | None = None

    def fail(self, stage: str, error: BaseException) -> "EpisodeWork":
        failure = FailedEpisode(self.shard, self.ref.index, self.ref.dataset, self.ref.episode_id,
                                stage, type(error).__name__, str(error))
        return replace(self, episode=None, labels=None, failure=failure)

    def nbytes(self) -> int:
        """Pixel and label bytes held (a size estimate that needs no encoding)."""
        n = sum(a.nbytes for a in (self.labels or {}).values())
        for cam in self.episode.cameras.values() if self.episode else ():
            for a in (cam.rgb, cam.rgb_right, cam.depth, cam.segmentation):
                if isinstance(a, np.ndarray):
                    n += a.nbytes
        return n + 256


class EpisodeWorkCoder(beam.coders.Coder):
    """Pickles an EpisodeWork (protocol 5) but estimates its size from array sizes: Beam samples
    element sizes by encoding them, which for whole episodes of pixels cost half the job time."""

    def encode(self, value: EpisodeWork) -> bytes:
        return pickle.dumps(value, protocol=5)

    def decode(self, encoded: bytes) -> EpisodeWork:
        return pickle.loads(encoded)

    def is_deterministic(self) -> bool:
        return False

    def estimate_size(self, value: EpisodeWork) -> int:
        return value.nbytes()


beam.coders.registry.register_coder(EpisodeWork, EpisodeWorkCoder)
