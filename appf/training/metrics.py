"""Training metrics: one JSON object per line in ``RUN_DIR/metrics.jsonl`` and TensorBoard scalars
under ``RUN_DIR/tensorboard``. Only the main process writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsLogger:
    """`resume_step`: the step a resumed run restarts from; TensorBoard events logged after it by
    the interrupted run are purged, as `truncate_after` does for metrics.jsonl."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                     purge_step=resume_step + 1 if resume_step else None)

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (a resumed run rewrites them; no duplicates)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [m for m in read_metrics(self.path.parent) if int(m.get("step", 0)) <= step]
        self.path.write_text("".join(json.dumps(m) + "\n" for m in keep))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
