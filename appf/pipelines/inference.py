"""Beam RunInference adapters for the annotator protocols.

One element is one episode (`EpisodeWork`); the handler batches that episode's frames
(`batch_frames`) through the annotator itself, so pixels never cross a shuffle. A failed
episode flows through unchanged, carrying its `FailedEpisode`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import pickle

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from appf.annotators.apply import annotate_episode_depth, annotate_episode_masks, depth_provenance
from appf.annotators.registry import make_depth_annotator, make_masker
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

Element = EpisodeWork


class _EpisodeHandler(ModelHandler[Element, Element, Any]):
    stage = ""

    def __init__(self, backend: str, batch_frames: int = 8, model_copies: int | None = None):
        kwargs: dict[str, Any] = {"min_batch_size": 1, "max_batch_size": 1}
        if model_copies:
            kwargs.update(large_model=True, model_copies=model_copies)
        super().__init__(**kwargs)
        self.backend = backend
        self.batch_frames = batch_frames

    def run_inference(self, batch: Sequence[Element], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        out = []
        for work in batch:
            if work.failure is not None:
                out.append(PredictionResult(work, work))
                continue
            try:
                out.append(PredictionResult(work, self._annotate(work, model)))
            except Exception as e:  # noqa: BLE001 - becomes a failure record of this stage
                out.append(PredictionResult(work, work.fail(self.stage, e)))
        return out

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        """Pixel bytes of the batch (the default pickles every batch just to measure it)."""
        return sum(w.nbytes() for w in batch)

    def get_metrics_namespace(self) -> str:
        return f"appf_{self.stage}"

    def _annotate(self, work: EpisodeWork, model: Any) -> Element:
        raise NotImplementedError


class DepthHandler(_EpisodeHandler):
    """Runs a DepthAnnotator over every camera of an episode."""

    stage = "depth"

    def __init__(self, backend: str, batch_frames: int = 8, model_copies: int | None = None):
        super().__init__(backend, batch_frames, model_copies)
        # A shared model copy (model_copies) is a proxy that forwards methods, not attributes:
        # then the provenance is read from an unloaded instance (the pinned weights id and
        # revision; a local weights path chosen at load time is not visible through the proxy).
        self.provenance = depth_provenance(make_depth_annotator(backend)) if model_copies else None

    def load_model(self):
        annotator = make_depth_annotator(self.backend)
        annotator.load()
        return annotator

    def _annotate(self, work: EpisodeWork, model) -> Element:
        return replace(work, episode=annotate_episode_depth(
            work.episode, model, self.batch_frames, self.provenance))


class MaskHandler(_EpisodeHandler):
    """Runs a Masker over every camera of an episode."""

    stage = "masks"

    def load_model(self):
        masker = make_masker(self.backend)
        masker.load()
        return masker

    def _annotate(self, work: EpisodeWork, model) -> Element:
        return replace(work, labels=annotate_episode_masks(work.episode, model))


def inference_result(result: PredictionResult) -> Element:
    return result.inference
