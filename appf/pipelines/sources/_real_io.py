"""Shared readers for the real-world sources: index-aligned video decoding, image stacks,
HDF5 field access with errors that name file/episode/field, and pose-format conversions.

Only unit and axis conversions live here (DESIGN §1: a source never does other geometry).
Frames are always addressed by their index in the decode order, never by container timestamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from appf.schemas import LazyFrames, SourceError

# ----------------------------------------------------------------------------------------------
# Video (PyAV)


def video_info(path: Path, episode_id: str, field: str) -> tuple[int, int, int]:
    """(frame count, height px, width px) of the first video stream, by demuxing packets (no
    decode, no container timestamps). Raises SourceError for a missing or unreadable file."""
    import av

    if not path.is_file():
        raise SourceError("video file missing", path=str(path), episode_id=episode_id, field=field)
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            h, w = int(s.codec_context.height), int(s.codec_context.width)
            n = sum(1 for p in c.demux(s) if p.size > 0)
    except (av.error.FFmpegError, IndexError, OSError) as e:
        raise SourceError(f"cannot read video: {e}", path=str(path), episode_id=episode_id,
                          field=field) from e
    return n, h, w


def decode_video_range(path: Path, start: int, stop: int, episode_id: str = "",
                       field: str = "") -> np.ndarray:
    """Frames [start, stop) as RGB uint8 (N, H, W, 3), counted in decode order from frame 0
    (index alignment: frame i <-> row i). PyAV gives RGB directly (no BGR flip)."""
    import av

    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for i, frame in enumerate(c.decode(s)):
                if i >= stop:
                    break
                if i >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as e:
        raise SourceError(f"video decode failed at frame {start + len(out)}: {e}", path=str(path),
                          episode_id=episode_id, field=field) from e
    if len(out) != stop - start:
        raise SourceError(f"video has only {start + len(out)} decodable frames, need {stop}",
                          path=str(path), episode_id=episode_id, field=field)
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


class VideoFrames:
    """Picklable loader: frames [start, stop) of one video, counted in decode order. Keeps the
    decoder open between calls, so sequential batches decode each frame once (a backward
    request reopens the file and decodes from frame 0 again: index alignment, no timestamp
    seeks). The last range is cached so the two eyes of a stereo batch share one decode.
    Open decoders and caches are not pickled."""

    def __init__(self, path: Path, episode_id: str, field: str):
        self.path, self.episode_id, self.field = Path(path), episode_id, field
        self._cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._container: Any = None
        self._frames: Any = None
        self._next = 0

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": None, "_container": None, "_frames": None, "_next": 0}

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._next = None, None, 0

    def _decode(self, start: int, stop: int) -> np.ndarray:
        import av

        if self._frames is None or start < self._next:
            self.close()
            if not self.path.is_file():
                raise SourceError("video file missing", path=str(self.path),
                                  episode_id=self.episode_id, field=self.field)
            self._container = av.open(str(self.path))
            s = self._container.streams.video[0]
            s.thread_type = "AUTO"
            self._frames = self._container.decode(s)
        out: list[np.ndarray] = []
        try:
            while self._next < stop:
                frame = next(self._frames)
                if self._next >= start:
                    out.append(frame.to_ndarray(format="rgb24"))
                self._next += 1
        except StopIteration:
            n = self._next
            self.close()
            raise SourceError(f"video has only {n} decodable frames, need {stop}", path=str(self.path),
                              episode_id=self.episode_id, field=self.field) from None
        except av.error.FFmpegError as e:
            n = self._next
            self.close()
            raise SourceError(f"video decode failed at frame {n}: {e}", path=str(self.path),
                              episode_id=self.episode_id, field=self.field) from e
        return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)

    def frames(self, start: int, stop: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != (start, stop):
            self._cache = ((start, stop), self._decode(start, stop))
        return self._cache[1]


class ColumnBand:
    """Picklable LazyFrames loader: columns [x0, x1) of a VideoFrames' frames."""

    def __init__(self, video: VideoFrames, x0: int | None = None, x1: int | None = None):
        self.video, self.x0, self.x1 = video, x0, x1

    def __call__(self, start: int, stop: int) -> np.ndarray:
        f = self.video.frames(start, stop)
        return f if self.x0 is None else np.ascontiguousarray(f[:, :, self.x0:self.x1])


def lazy_video(path: Path, n: int, h: int, w: int, episode_id: str, field: str) -> LazyFrames:
    """LazyFrames over the first `n` frames of a video (RGB uint8)."""
    return LazyFrames(shape=(n, h, w, 3), dtype=np.dtype(np.uint8),
                      loader=ColumnBand(VideoFrames(path, episode_id, field)),
                      description=f"{path}:{field}")


def lazy_stereo_video(path: Path, n: int, h: int, w: int, episode_id: str, field: str
                      ) -> tuple[LazyFrames, LazyFrames]:
    """(left, right) LazyFrames of a side-by-side stereo video of full width `w` (left eye =
    columns [:w/2]); both share one decoder cache."""
    v = VideoFrames(path, episode_id, field)
    e = w // 2
    return tuple(LazyFrames(shape=(n, h, e, 3), dtype=np.dtype(np.uint8),  # type: ignore[return-value]
                            loader=ColumnBand(v, side * e, (side + 1) * e),
                            description=f"{path}:{field} {'right' if side else 'left'} eye")
                 for side in (0, 1))


# ----------------------------------------------------------------------------------------------
# Image stacks (PNG / JPEG, one file per frame)


class ImageStack:
    """Picklable loader over one image file per frame: RGB -> uint8 (N, H, W, 3); with
    `depth_mm`, integer millimetre PNGs -> float32 metres (N, H, W) (0 stays 0 = invalid)."""

    def __init__(self, paths: Sequence[Path], hw: tuple[int, int], episode_id: str, field: str,
                 depth_mm: bool = False):
        self.paths, self.hw, self.episode_id, self.field = list(paths), hw, episode_id, field
        self.depth_mm = depth_mm

    def _one(self, p: Path) -> np.ndarray:
        from PIL import Image

        try:
            with Image.open(p) as im:
                a = np.asarray(im) if self.depth_mm else np.asarray(im.convert("RGB"))
        except OSError as e:
            raise SourceError(f"cannot decode image: {e}", path=str(p), episode_id=self.episode_id,
                              field=self.field) from e
        if self.depth_mm and (a.ndim != 2 or not np.issubdtype(a.dtype, np.integer)
                              or a.dtype.itemsize < 2):
            # 8-bit (PIL mode "L") depth cannot hold millimetres (max 0.255 m): its units are
            # unknown (a few BridgeData trajectories, formats-real.md §3.2), so refuse it.
            raise SourceError(f"depth PNG must be single-channel 16/32-bit integer millimetres, "
                              f"found {a.dtype} {a.shape}", path=str(p),
                              episode_id=self.episode_id, field=self.field)
        if a.shape[:2] != self.hw:
            raise SourceError(f"image size {a.shape[:2]} differs from the first frame's {self.hw}",
                              path=str(p), episode_id=self.episode_id, field=self.field)
        return a.astype(np.float32) / 1000.0 if self.depth_mm else a

    def __call__(self, start: int, stop: int) -> np.ndarray:
        return np.stack([self._one(p) for p in self.paths[start:stop]])


def lazy_images(paths: Sequence[Path], episode_id: str, field: str, *, depth_mm: bool = False
                ) -> LazyFrames:
    """LazyFrames over one image file per frame (see ImageStack)."""
    from PIL import Image

    paths = list(paths)
    if not paths:
        raise SourceError("no image files", episode_id=episode_id, field=field)
    try:
        with Image.open(paths[0]) as im:
            w, h = im.size
    except OSError as e:
        raise SourceError(f"cannot decode image: {e}", path=str(paths[0]), episode_id=episode_id,
                          field=field) from e
    shape = (len(paths), h, w) if depth_mm else (len(paths), h, w, 3)
    dtype = np.dtype(np.float32) if depth_mm else np.dtype(np.uint8)
    return LazyFrames(shape=shape, dtype=dtype,
                      loader=ImageStack(paths, (h, w), episode_id, field, depth_mm),
                      description=f"{paths[0].parent}:{field}")


def numbered_files(folder: Path, prefix: str, suffix: str) -> list[Path]:
    """Files `<prefix><int><suffix>` in `folder`, sorted by the integer (not lexically)."""
    found = []
    for p in folder.glob(f"{prefix}*{suffix}"):
        stem = p.name[len(prefix): len(p.name) - len(suffix)]
        if stem.isdigit():
            found.append((int(stem), p))
    return [p for _, p in sorted(found)]


# ----------------------------------------------------------------------------------------------
# HDF5


def h5_array(f: Any, key: str, path: Path, episode_id: str, *, rows: int | None = None,
             trailing: tuple[int, ...] | None = None, allow_empty: bool = False) -> np.ndarray:
    """Dataset `key` of an open h5py file as a numpy array, checked: present, not empty
    (the `(0,)` placeholder datasets), `rows` leading rows, `trailing` shape."""
    if key not in f:
        raise SourceError("required HDF5 dataset missing", path=str(path), episode_id=episode_id,
                          field=key)
    a = np.asarray(f[key][()])
    if a.size == 0 and not allow_empty:
        raise SourceError(f"HDF5 dataset is empty (shape {a.shape})", path=str(path),
                          episode_id=episode_id, field=key)
    if rows is not None and a.shape[:1] != (rows,):
        raise SourceError(f"expected {rows} rows, found shape {a.shape}", path=str(path),
                          episode_id=episode_id, field=key)
    if trailing is not None and a.shape[1:] != trailing:
        raise SourceError(f"expected shape (N, {', '.join(map(str, trailing))}), found {a.shape}",
                          path=str(path), episode_id=episode_id, field=key)
    return a


# ----------------------------------------------------------------------------------------------
# Pose formats -> canonical (xyz metres + quaternion xyzw; 4x4 camera-to-base)


def euler_xyz_to_quat_xyzw(euler_rad: np.ndarray) -> np.ndarray:
    """(..., 3) scipy lowercase "xyz" (extrinsic x, y, z: R = Rz Ry Rx) radians -> (..., 4) xyzw,
    sign-continuous along the first axis."""
    e = np.asarray(euler_rad, dtype=np.float64)
    q = Rotation.from_euler("xyz", e.reshape(-1, 3)).as_quat().reshape(*e.shape[:-1], 4)
    return continuous_quats(q)


def continuous_quats(q: np.ndarray) -> np.ndarray:
    """Normalise quaternions and flip signs so consecutive rows (axis 0) agree (q ~ -q)."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    if q.ndim >= 2:
        for t in range(1, q.shape[0]):
            flip = np.sum(q[t] * q[t - 1], axis=-1) < 0
            q[t] = np.where(np.asarray(flip)[..., None], -q[t], q[t])
    return q


def xyz_euler_to_pose7(v6: np.ndarray) -> np.ndarray:
    """(T, 6) [x, y, z (m), rx, ry, rz (rad, scipy "xyz")] -> (T, 7) xyz + quaternion xyzw."""
    v6 = np.asarray(v6, dtype=np.float64)
    return np.concatenate([v6[:, :3], euler_xyz_to_quat_xyzw(v6[:, 3:6])], axis=1)


def xyz_euler_to_matrix(v6: np.ndarray) -> np.ndarray:
    """(..., 6) [x, y, z, rx, ry, rz] (scipy "xyz") -> (..., 4, 4) rigid transforms."""
    v6 = np.asarray(v6, dtype=np.float64)
    flat = v6.reshape(-1, 6)
    M = np.tile(np.eye(4), (len(flat), 1, 1))
    M[:, :3, :3] = Rotation.from_euler("xyz", flat[:, 3:6]).as_matrix()
    M[:, :3, 3] = flat[:, :3]
    return M.reshape(*v6.shape[:-1], 4, 4)


def rt_to_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """3x3 rotation + (3,) translation (metres) -> 4x4."""
    M = np.eye(4)
    M[:3, :3] = np.asarray(R, dtype=np.float64)
    M[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return M


def pinhole_K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def relative_timestamps(t_s: np.ndarray | None, n: int, hz: float) -> tuple[np.ndarray, str]:
    """Seconds from the first step; falls back to index / hz when missing or not monotonic.
    Returns (timestamps, note)."""
    if t_s is not None and len(t_s) == n and n and np.isfinite(t_s).all() \
            and np.all(np.diff(t_s) >= 0):
        return np.asarray(t_s, np.float64) - float(t_s[0]), "from recorded clock"
    return np.arange(n, dtype=np.float64) / hz, f"index / {hz} Hz (recorded clock missing or not monotonic)"
