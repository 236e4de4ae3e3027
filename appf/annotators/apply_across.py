"""Depth for several episodes at once: frames of different episodes share a model batch, so a
GPU sees full batches even when episodes are short or their length is not a multiple of the
batch size (no Beam here; the RunInference depth handler calls this)."""

from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np

from appf.annotators.apply import annotate_episode_depth, depth_provenance
from appf.annotators.protocols import DepthAnnotator, DepthBatch
from appf.schemas import CameraStream, Episode

# (episode position, camera name, first frame, end frame): a run of one camera's frames
FrameRun = tuple[int, str, int, int]


def batch_key(cam: CameraStream) -> tuple | None:
    """Cameras whose frames may share one model batch (same size, same known K, same inputs);
    None for a camera without intrinsics: its K is estimated per episode, so it batches alone."""
    if cam.intrinsics is None:
        return None
    K = np.asarray(cam.intrinsics, dtype=np.float64)
    return (cam.height, cam.width, K.tobytes(), cam.rgb_right is not None, cam.baseline_m,
            cam.depth is not None)


def cross_batches(members: Sequence[tuple[int, str]], lengths: dict[tuple[int, str], int],
                  batch_frames: int) -> Iterator[list[FrameRun]]:
    """The frames of `members` (episode position, camera), in order, cut into batches of
    `batch_frames` frames; a batch may span the end of one episode and the start of the next."""
    batch: list[FrameRun] = []
    room = max(1, batch_frames)
    for i, name in members:
        start, T = 0, lengths[(i, name)]
        while start < T:
            end = min(T, start + room)
            batch.append((i, name, start, end))
            room -= end - start
            start = end
            if room == 0:
                yield batch
                batch, room = [], max(1, batch_frames)
    if batch:
        yield batch


def _stack(episodes: Sequence[Episode], segments: list[FrameRun], field: str) -> np.ndarray | None:
    parts = [getattr(episodes[i].cameras[n], field) for i, n, _, _ in segments]
    if parts[0] is None:
        return None
    return np.concatenate([np.asarray(p[a:b]) for p, (_, _, a, b) in zip(parts, segments)])


def _depth_batch(episodes: Sequence[Episode], segments: list[FrameRun]) -> DepthBatch:
    i0, n0, _, _ = segments[0]
    cam = episodes[i0].cameras[n0]
    return DepthBatch(
        rgb=_stack(episodes, segments, "rgb"), K=cam.intrinsics,
        rgb_right=_stack(episodes, segments, "rgb_right"), baseline_m=cam.baseline_m,
        sensor_depth=_stack(episodes, segments, "depth"),
        where="; ".join(f"{episodes[i].key} camera {n!r} frames {a}..{b - 1}"
                        for i, n, a, b in segments))


def annotate_episodes_depth(episodes: Sequence[Episode], annotator: DepthAnnotator,
                            batch_frames: int = 8, provenance: str | None = None
                            ) -> list[Episode | Exception]:
    """`annotate_episode_depth` for every episode, with frames of compatible cameras of
    different episodes batched together. Returns, per episode, the annotated episode or the
    error it raised: a batch that fails is re-run episode by episode, so an error is charged
    only to the episode that caused it."""
    provenance = provenance or depth_provenance(annotator)
    groups: dict[tuple, list[tuple[int, str]]] = {}
    alone: set[int] = set()
    for i, ep in enumerate(episodes):
        for name, cam in ep.cameras.items():
            key = batch_key(cam)
            if key is None:
                alone.add(i)
            else:
                groups.setdefault(key, []).append((i, name))
    lengths = {(i, n): ep.num_steps for i, ep in enumerate(episodes) for n in ep.cameras}
    depth = {m: np.zeros((T, episodes[m[0]].cameras[m[1]].height,
                          episodes[m[0]].cameras[m[1]].width), np.float32)
             for m, T in lengths.items()}
    K_out: dict[tuple[int, str], np.ndarray] = {}
    for members in groups.values():
        for segments in cross_batches(members, lengths, batch_frames):
            if any(i in alone for i, *_ in segments):
                continue
            try:
                result = annotator.annotate(_depth_batch(episodes, segments))
            except Exception:  # noqa: BLE001 - re-run alone below to find the culprit
                alone.update(i for i, *_ in segments)
                continue
            offset = 0
            for i, n, a, b in segments:
                depth[(i, n)][a:b] = result.depth_m[offset:offset + b - a]
                K_out[(i, n)] = result.K
                offset += b - a
    return [_one_alone(ep, annotator, batch_frames, provenance) if i in alone
            else _assembled(ep, i, depth, K_out, provenance) for i, ep in enumerate(episodes)]


def _one_alone(ep: Episode, annotator: DepthAnnotator, batch_frames: int,
               provenance: str) -> Episode | Exception:
    try:
        return annotate_episode_depth(ep, annotator, batch_frames, provenance)
    except Exception as e:  # noqa: BLE001 - returned to the caller, who records it
        return e


def _assembled(ep: Episode, i: int, depth: dict, K_out: dict, provenance: str) -> Episode:
    cameras = {n: dataclasses.replace(cam, depth=depth[(i, n)],
                                      intrinsics=K_out.get((i, n), cam.intrinsics),
                                      intrinsics_unknown=False, depth_provenance=provenance)
               for n, cam in ep.cameras.items()}
    return dataclasses.replace(ep, cameras=cameras)
