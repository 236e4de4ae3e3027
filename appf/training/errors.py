"""The training module's error: what is wrong, where, and how to fix it."""

from __future__ import annotations

from appf.schemas import AppfError


class TrainingError(AppfError):
    """Training data, a checkpoint or a training option is wrong; the message says how to fix it."""
