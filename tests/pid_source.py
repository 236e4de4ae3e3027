"""A test-only source: the synthetic source, recording which process read each episode (one
empty file per read under `pid_dir`), to see how a runner spreads the work."""

from __future__ import annotations

import os
from pathlib import Path

from appf.pipelines.sources.synthetic import SyntheticSource
from appf.schemas import EpisodeRef


class PidSource(SyntheticSource):
    def __init__(self, pid_dir: str = "", **options):
        super().__init__(**options)
        self.pid_dir = pid_dir

    def read(self, ref: EpisodeRef):
        (Path(self.pid_dir) / f"{ref.index}-{os.getpid()}").touch()
        return super().read(ref)
