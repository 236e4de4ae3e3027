"""Runner-agnostic progress: a driver thread counts the staging objects and commit markers that
the workers write under the output location (local directory or object store)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from appf.storage import Location, layout, read_markers
from appf.storage.layout import COMMITS_DIR


def staged_counts(out: str | Path | Location) -> tuple[int, int]:
    """(episodes, frames) processed so far: staged, failed, or already in committed shards."""
    loc = out if isinstance(out, Location) else Location(out)
    episodes = frames = 0
    commits = read_markers(loc)
    for key in loc.list(layout.STAGING_DIR):
        parsed = layout.parse_staged_key(key)
        if parsed is None or parsed[0] in commits:
            continue  # a temporary, or counted through its commit marker
        episodes += 1
        frames += parsed[2]
    for c in commits.values():
        episodes += c.episodes + c.failures
        frames += c.frames
    return episodes, frames


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressMonitor:
    """Prints `episodes a/b, frames f, rate, ETA` every `every_s` seconds until stopped."""

    def __init__(self, out: str | Path | Location, planned: int,
                 already_done: tuple[int, int] = (0, 0), every_s: float = 2.0,
                 stream: TextIO | None = None):
        self.out, self.planned, self.every_s = out, planned, every_s
        self.base_episodes, self.base_frames = already_done
        self.stream = stream or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.start_time = time.monotonic()

    def line(self) -> str:
        episodes, frames = staged_counts(self.out)
        done_eps = episodes - self.base_episodes
        done_frames = frames - self.base_frames
        elapsed = max(time.monotonic() - self.start_time, 1e-9)
        rate_eps = done_eps / elapsed
        remaining = self.planned - done_eps
        eta = remaining / rate_eps if rate_eps > 0 else float("inf")
        return (f"[appf] episodes {done_eps}/{self.planned}  frames {done_frames}  "
                f"{done_frames / elapsed:.1f} frames/s  {rate_eps:.2f} episodes/s  "
                f"elapsed {format_eta(elapsed)}  ETA {format_eta(eta if remaining > 0 else 0)}")

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            print(self.line(), file=self.stream, flush=True)

    def __enter__(self) -> "ProgressMonitor":
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


__all__ = ["COMMITS_DIR", "ProgressMonitor", "staged_counts"]
