"""Beam RunInference adapters for the annotator protocols.

One element is one episode (`EpisodeWork`); the handler batches that episode's frames
(`batch_frames`) through the annotator itself, so pixels never cross a shuffle. A failed
episode flows through unchanged as a `FailedEpisode`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from appf.annotators.apply import annotate_episode_depth, annotate_episode_masks
from appf.annotators.registry import make_depth_annotator, make_masker
from appf.pipelines.processed import FailedEpisode
from appf.schemas import Episode, EpisodeRef


@dataclass
class EpisodeWork:
    """An episode on its way through the annotation passes."""

    ref: EpisodeRef
    shard: int
    episode: Episode
    labels: dict[str, np.ndarray] | None = None

    def fail(self, stage: str, error: BaseException) -> FailedEpisode:
        return FailedEpisode(self.shard, self.ref.index, self.ref.dataset, self.ref.episode_id,
                             stage, type(error).__name__, str(error))


Element = EpisodeWork | FailedEpisode


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
            if isinstance(work, FailedEpisode):
                out.append(PredictionResult(work, work))
                continue
            try:
                out.append(PredictionResult(work, self._annotate(work, model)))
            except Exception as e:  # noqa: BLE001 - becomes a failure record of this stage
                out.append(PredictionResult(work, work.fail(self.stage, e)))
        return out

    def get_metrics_namespace(self) -> str:
        return f"appf_{self.stage}"

    def _annotate(self, work: EpisodeWork, model: Any) -> Element:
        raise NotImplementedError


class DepthHandler(_EpisodeHandler):
    """Runs a DepthAnnotator over every camera of an episode."""

    stage = "depth"

    def load_model(self):
        annotator = make_depth_annotator(self.backend)
        annotator.load()
        return annotator

    def _annotate(self, work: EpisodeWork, model) -> Element:
        return replace(work, episode=annotate_episode_depth(work.episode, model, self.batch_frames))


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
