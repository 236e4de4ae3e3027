"""Controlled corruption of ground-truth mask sequences (for `appf eval masks --inject` and the
tracking tests): drop-outs (empty mask), flicker (part of the object lost and a spurious blob
added), and shifts (the mask moved by `shift_px`). Each corrupted frame gets exactly one kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appf.transforms.mask_tracking import shift_mask

__all__ = ["Corruption", "corrupt_masks"]

KINDS = ("dropout", "flicker", "shift")


@dataclass(frozen=True)
class Corruption:
    """Fractions of frames to corrupt with each kind; `shift_px` the shift length in pixels."""

    dropout: float = 0.0
    flicker: float = 0.0
    shift: float = 0.0
    shift_px: float = 20.0

    @classmethod
    def parse(cls, text: str) -> "Corruption":
        """'dropout=0.2,flicker=0.1,shift=0.1,shift_px=15' (any subset)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            if key not in (*KINDS, "shift_px") or not value:
                raise ValueError(f"corruption {part!r}: expected KIND=NUMBER with KIND one of "
                                 f"{(*KINDS, 'shift_px')}")
            values[key] = float(value)
        c = cls(**values)
        if c.dropout + c.flicker + c.shift > 1 or min(c.dropout, c.flicker, c.shift) < 0:
            raise ValueError(f"corruption fractions must be >= 0 and sum to <= 1, got {text!r}")
        return c


def _flicker(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = mask.shape
    out = mask.copy()
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows):  # lose the top or bottom half of the object
        mid = (rows[0] + rows[-1]) // 2
        if rng.random() < 0.5:
            out[:mid] = False
        else:
            out[mid:] = False
    bh, bw = max(2, h // 5), max(2, w // 5)
    y, x = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    out[y:y + bh, x:x + bw] = True  # a spurious blob
    return out


def corrupt_masks(gt: np.ndarray, corruption: Corruption,
                  seed: int = 0) -> tuple[np.ndarray, dict[int, str]]:
    """A copy of `gt` (T, H, W) bool with corrupted frames, and {frame: kind} of what was done."""
    gt = np.asarray(gt, dtype=bool)
    rng = np.random.default_rng(seed)
    T = len(gt)
    counts = [int(round(f * T)) for f in (corruption.dropout, corruption.flicker, corruption.shift)]
    frames = rng.permutation(T)
    out, done = gt.copy(), {}
    start = 0
    for kind, n in zip(KINDS, counts):
        for t in frames[start:start + n]:
            t = int(t)
            if kind == "dropout":
                out[t] = False
            elif kind == "flicker":
                out[t] = _flicker(gt[t], rng)
            else:
                angle = rng.uniform(0, 2 * np.pi)
                out[t] = shift_mask(gt[t], corruption.shift_px * np.sin(angle),
                                    corruption.shift_px * np.cos(angle))
            done[t] = kind
        start += n
    return out, done
