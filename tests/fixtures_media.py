"""Fixture helpers shared by the real-source fixture writers: MP4 encoding with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_mp4(path: Path, frames: np.ndarray, fps: int = 15, codec: str = "libx264",
              options: dict[str, str] | None = None) -> None:
    """Encode RGB uint8 (T, H, W, 3) frames (H, W even) with PyAV's encoder."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, _ = frames.shape
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=Fraction(fps, 1))
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = dict(options if options is not None else {"crf": "4", "preset": "ultrafast"})
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
