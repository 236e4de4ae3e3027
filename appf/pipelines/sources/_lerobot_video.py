"""LeRobot video features: an episode's frames of its (v3.0: shared, many-episode) MP4, decoded with
PyAV (dp3-training.md §3). An episode starts at frame round(from_timestamp * fps) of its file (0 in
v2.1) and its frame i is the file's frame start + i. VideoSlice seeks to it (LeRobot writes file
frame k at pts k / fps) and checks every decoded frame's pts is the next point of that grid; where
it is not, it counts frames in decode order from frame 0 instead (slower for a late episode of a
large file, needs no timestamps). Every error is a SourceError naming the file, episode and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from appf.pipelines.sources._lerobot_io import DatasetFiles, EpisodeEntry
from appf.pipelines.sources._real_io import VideoFrames, video_info
from appf.schemas import LazyFrames, SourceError

SEEK_AHEAD = 64  # frames: decoding forward is cheaper than a seek below this distance


def video_header(path: Path, episode_id: str, field: str) -> tuple[int, int, int]:
    """(frame count, height, width) from the MP4 header (its sample table), without demuxing a
    packed file of many episodes; demuxes (video_info) only when the header has no count."""
    import av

    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n, h, w = int(s.frames), int(s.codec_context.height), int(s.codec_context.width)
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise SourceError(f"cannot read video: {e}", path=str(path), episode_id=episode_id, field=field) from e
    return (n, h, w) if n > 0 else video_info(path, episode_id, field)


class VideoSlice:
    """Picklable LazyFrames loader: frames [first + start, first + stop) of one MP4 (RGB uint8).

    A v3.0 file holds many episodes: rather than decoding from the file's frame 0, it seeks to the
    keyframe at or before the wanted frame and numbers the decoded frames by presentation time on
    the fps grid (LeRobot writes file frame i at pts i / fps; this is how LeRobot addresses them).
    A frame off the grid, a gap, or a file without timestamps falls back to counting in decode
    order from frame 0 (VideoFrames), which needs no timestamps. The decoder stays open between
    sequential batches; it is not pickled."""

    def __init__(self, path: Path, first: int, fps: float, episode_id: str, field: str):
        self.path, self.first, self.fps = Path(path), first, fps
        self.episode_id, self.field = episode_id, field
        self._container: Any = None
        self._frames: Any = None
        self._next = -1  # file index of the next frame the open decoder yields

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_container": None, "_frames": None, "_next": -1}

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._next = None, None, -1

    def __call__(self, start: int, stop: int) -> np.ndarray:
        a, b = self.first + start, self.first + stop
        try:
            return self._decode(a, b)
        except _OffGrid:
            self.close()
            return VideoFrames(self.path, self.episode_id, self.field).frames(a, b)

    def _open_at(self, a: int) -> None:
        import av

        self.close()
        self._container = av.open(str(self.path))
        s = self._container.streams.video[0]
        s.thread_type = "AUTO"
        if a > 0:
            self._container.seek(int(a / self.fps / s.time_base), stream=s, backward=True, any_frame=False)
        self._frames = self._container.decode(s)
        self._next = -1

    def _decode(self, a: int, b: int) -> np.ndarray:
        import av

        # reuse the open decoder for the next sequential batch; seek for anything else
        if self._frames is None or not (self._next == -1 or 0 <= self._next <= a < self._next + SEEK_AHEAD):
            self._open_at(a)
        out: list[np.ndarray] = []
        try:
            while len(out) < b - a:
                frame = next(self._frames)
                if frame.time is None:
                    raise _OffGrid
                i = round(frame.time * self.fps)
                if abs(frame.time * self.fps - i) > 0.1 or (self._next != -1 and i != self._next):
                    raise _OffGrid
                self._next = i + 1
                if i >= a:
                    out.append(frame.to_ndarray(format="rgb24"))
        except StopIteration:
            self.close()
            raise SourceError(f"video ends before frame {b - 1}", path=str(self.path),
                              episode_id=self.episode_id, field=self.field) from None
        except av.error.FFmpegError as e:
            self.close()
            raise SourceError(f"video decode failed near frame {a + len(out)}: {e}", path=str(self.path),
                              episode_id=self.episode_id, field=self.field) from e
        return np.stack(out)


class _OffGrid(Exception):
    """A decoded frame's timestamp is not the next point of the fps grid."""


def lazy_episode_video(files: DatasetFiles, entry: EpisodeEntry, key: str, fps: float,
                       episode_id: str) -> LazyFrames:
    """The episode's frames of video feature `key`; checks the file holds them all."""
    rel, from_s = entry.video(key)
    path = files.path(rel, episode_id, key)
    count, h, w = video_header(path, episode_id, key)
    first = int(round(from_s * fps))
    if first + entry.length > count:
        raise SourceError(f"frame index beyond the video: the episode needs frames {first}.."
                          f"{first + entry.length - 1} (from_timestamp {from_s} s at {fps} fps), the "
                          f"file has {count}", path=str(path), episode_id=episode_id, field=key)
    return LazyFrames(shape=(entry.length, h, w, 3), dtype=np.dtype(np.uint8),
                      loader=VideoSlice(path, first, fps, episode_id, key),
                      description=f"{path}:{key}")
