"""Beam RunInference adapters for the annotator protocols (imported only when a learned backend
runs: Beam's RunInference module imports torch).

One element is one episode (`EpisodeWork`); RunInference hands the handler a batch of up to
`episodes_per_batch` episodes, and the depth handler cuts all their frames into model batches of
`batch_frames` (frames of different episodes share a batch), so pixels never cross a shuffle and
a GPU sees full batches. A failed episode flows through unchanged, carrying its `FailedEpisode`.

The handlers return the annotated `EpisodeWork` itself, not a PredictionResult: apply
`annotation_pass(handler)`, which types RunInference's output, so Beam estimates element sizes
with EpisodeWorkCoder (array sizes) instead of pickling whole episodes (untyped elements get
Beam's pickling coder, and the worker samples output sizes by encoding them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable, Sequence

from apache_beam.ml.inference.base import ModelHandler, RunInference

from appf.annotators.apply import depth_provenance
from appf.annotators.apply_across import annotate_episodes_depth
from appf.annotators.registry import make_depth_annotator, make_masker
from appf.pipelines.episode_steps import masks_step
from appf.pipelines.work import EpisodeWork

Element = EpisodeWork


class _EpisodeHandler(ModelHandler[Element, Element, Any]):
    stage = ""

    def __init__(self, backend: str, batch_frames: int = 8, model_copies: int | None = None,
                 episodes_per_batch: int = 1):
        kwargs: dict[str, Any] = {"min_batch_size": 1,
                                  "max_batch_size": max(1, episodes_per_batch)}
        if model_copies:
            kwargs.update(large_model=True, model_copies=model_copies)
        super().__init__(**kwargs)
        self.backend = backend
        self.batch_frames = batch_frames

    def run_inference(self, batch: Sequence[Element], model: Any,
                      inference_args: dict[str, Any] | None = None) -> Iterable[Element]:
        """One annotated (or failed) EpisodeWork per input, in order."""
        return self._annotate(list(batch), model)

    def get_num_bytes(self, batch: Sequence[Element]) -> int:
        """Pixel bytes of the batch (the default pickles every batch just to measure it)."""
        return sum(w.nbytes() for w in batch)

    def get_metrics_namespace(self) -> str:
        return f"appf_{self.stage}"

    def _annotate(self, works: list[Element], model: Any) -> list[Element]:
        raise NotImplementedError


class DepthHandler(_EpisodeHandler):
    """Runs a DepthAnnotator over every camera of a batch of episodes."""

    stage = "depth"

    def __init__(self, backend: str, batch_frames: int = 8, model_copies: int | None = None,
                 episodes_per_batch: int = 1):
        super().__init__(backend, batch_frames, model_copies, episodes_per_batch)
        # A shared model copy (model_copies) is a proxy that forwards methods, not attributes:
        # then the provenance is read from an unloaded instance (the pinned weights id and
        # revision; a local weights path chosen at load time is not visible through the proxy).
        self.provenance = depth_provenance(make_depth_annotator(backend)) if model_copies else None

    def load_model(self):
        annotator = make_depth_annotator(self.backend)
        annotator.load()
        return annotator

    def _annotate(self, works: list[Element], model) -> list[Element]:
        todo = [w for w in works if w.failure is None]
        done = annotate_episodes_depth([w.episode for w in todo], model, self.batch_frames,
                                       self.provenance)
        by_id = {id(w): (w.fail(self.stage, r) if isinstance(r, Exception)
                         else replace(w, episode=r)) for w, r in zip(todo, done)}
        return [by_id.get(id(w), w) for w in works]


class MaskHandler(_EpisodeHandler):
    """Runs a Masker over every camera of each episode of a batch (a masker sees one camera's
    frames in time order: trackers rely on it)."""

    stage = "masks"

    def load_model(self):
        masker = make_masker(self.backend)
        masker.load()
        return masker

    def _annotate(self, works: list[Element], model) -> list[Element]:
        return [masks_step(w, model) for w in works]


def annotation_pass(handler: _EpisodeHandler) -> RunInference:
    """RunInference over `handler`, its output typed EpisodeWork (see the module doc)."""
    return RunInference(handler).with_output_types(EpisodeWork)
