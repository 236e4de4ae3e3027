"""The annotation steps of one episode as plain functions on `EpisodeWork`: read, depth, masks.

A step never raises for bad data: it returns the work failed in its stage (the episode then
flows on to its shard's failures table). The fused Beam step calls them in a row; the
RunInference handlers call the annotation steps on batches of episodes."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any, Callable

from appf.annotators.apply import annotate_episode_depth, annotate_episode_masks
from appf.annotators.protocols import DepthAnnotator, Masker
from appf.annotators.registry import make_depth_annotator, make_masker
from appf.pipelines.work import EpisodeWork
from appf.schemas import EpisodeRef, check_episode

_LOADED: dict[tuple[str, str], Any] = {}
_LOAD_LOCK = threading.Lock()


def _loaded(kind: str, backend: str, make: Callable[[str], Any]) -> Any:
    with _LOAD_LOCK:
        if (kind, backend) not in _LOADED:
            annotator = make(backend)
            annotator.load()
            _LOADED[(kind, backend)] = annotator
        return _LOADED[(kind, backend)]


def loaded_depth_annotator(backend: str) -> DepthAnnotator:
    """The process's loaded depth annotator for `backend` (loaded once per process: some
    runners, Dask among them, set up a DoFn once per bundle)."""
    return _loaded("depth", backend, make_depth_annotator)


def loaded_masker(backend: str) -> Masker:
    """The process's loaded masker for `backend` (loaded once per process)."""
    return _loaded("masks", backend, make_masker)


def read_step(source: Any, ref: EpisodeRef, shard: int) -> EpisodeWork:
    """Read and validate one episode; a read error becomes a failure of stage `read`."""
    work = EpisodeWork(ref, shard, None)
    try:
        return replace(work, episode=check_episode(source.read(ref)))
    except Exception as e:  # noqa: BLE001 - recorded, the job goes on
        return work.fail("read", e)


def depth_step(work: EpisodeWork, annotator: DepthAnnotator, batch_frames: int,
               provenance: str | None = None) -> EpisodeWork:
    """Depth for every camera of the episode; an error becomes a failure of stage `depth`."""
    if work.failure is not None:
        return work
    try:
        return replace(work, episode=annotate_episode_depth(
            work.episode, annotator, batch_frames, provenance))
    except Exception as e:  # noqa: BLE001
        return work.fail("depth", e)


def masks_step(work: EpisodeWork, masker: Masker) -> EpisodeWork:
    """Labels for every camera of the episode; an error becomes a failure of stage `masks`."""
    if work.failure is not None:
        return work
    try:
        return replace(work, labels=annotate_episode_masks(work.episode, masker))
    except Exception as e:  # noqa: BLE001
        return work.fail("masks", e)
