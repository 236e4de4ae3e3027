"""Gripper keyframes: open/close events detected with hysteresis.

Convention (DESIGN.md §2): ``gripper`` is (T, arms) float, normalised, **0 = open, 1 = closed**.
Steps are integer frame indices in ``[0, T)``; no timestamps are needed here.

Event rule (per arm, :func:`gripper_events`)
--------------------------------------------
* The initial state is ``"closed"`` if ``g[0] >= 0.5`` else ``"open"``. Step 0 only sets the
  initial state; it never produces an event.
* Scanning steps ``t = 1 .. T-1`` in order: while open, the first step with
  ``g[t] >= close_threshold`` emits ``GripperEvent(t, arm, "close")`` and the state becomes closed;
  while closed, the first step with ``g[t] <= open_threshold`` emits
  ``GripperEvent(t, arm, "open")`` and the state becomes open.
* Values strictly between the thresholds never change the state, so noise ("chatter") around one
  threshold produces at most one event per real transition. Requires
  ``0 <= open_threshold < close_threshold <= 1``.
* Any non-finite value (NaN, +-inf) raises ``ValueError`` naming the step and arm.

Keyframe rule (:func:`keyframes`)
---------------------------------
``steps`` = sorted unique union over all arms of the event steps, plus ``T - 1`` when
``include_last`` is true (and ``T > 0``). Several arms changing at the same step give one
keyframe step. This is the PerAct/RVT "gripper change + last frame" rule without the "stopped"
heuristic; the keyframe is the first frame *at which* the new state is observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

__all__ = [
    "GripperEvent",
    "Keyframes",
    "gripper_events",
    "keyframes",
    "keyframe_mask",
]

EventKind = Literal["close", "open"]


@dataclass(frozen=True)
class GripperEvent:
    """One gripper state change: ``step`` (frame index), ``arm`` (index), ``kind``."""

    step: int
    arm: int
    kind: EventKind


@dataclass(frozen=True)
class Keyframes:
    """Keyframes of one episode.

    ``steps``: int64 (M,), sorted unique keyframe steps (events of all arms, plus T-1 if asked).
    ``events``: all gripper events, sorted by (step, arm).
    ``num_steps``: T, the episode length the keyframes were computed for.
    """

    steps: np.ndarray
    events: list[GripperEvent] = field(default_factory=list)
    num_steps: int = 0

    def arms_changed_at(self, step: int) -> tuple[int, ...]:
        """Sorted arm indices whose gripper changed at ``step`` (empty tuple if none)."""
        return tuple(sorted({e.arm for e in self.events if e.step == int(step)}))

    def changed_arms(self) -> list[tuple[int, ...]]:
        """For each entry of ``steps`` (same order), the arms whose gripper changed there.

        The last frame added by ``include_last`` gives ``()`` unless an event also happened there.
        """
        by_step: dict[int, set[int]] = {}
        for e in self.events:
            by_step.setdefault(e.step, set()).add(e.arm)
        return [tuple(sorted(by_step.get(int(s), ()))) for s in self.steps]

    def events_at(self, step: int) -> list[GripperEvent]:
        """The events (any arm) at ``step``, sorted by arm."""
        return [e for e in self.events if e.step == int(step)]


def _check_thresholds(close_threshold: float, open_threshold: float) -> None:
    if not (0.0 <= open_threshold < close_threshold <= 1.0):
        raise ValueError(
            "need 0 <= open_threshold < close_threshold <= 1, got "
            f"open_threshold={open_threshold}, close_threshold={close_threshold}"
        )


def gripper_events(
    gripper: np.ndarray | Sequence[float],
    close_threshold: float = 0.6,
    open_threshold: float = 0.4,
    arm: int = 0,
) -> list[GripperEvent]:
    """Open/close events of one arm's gripper signal (T,) in [0, 1] (0 open, 1 closed).

    Hysteresis rule in the module docstring. ``arm`` is only copied into the events.
    Raises ``ValueError`` for a non-1-D input, bad thresholds, or a non-finite value (names the step).
    """
    _check_thresholds(close_threshold, open_threshold)
    g = np.asarray(gripper, dtype=np.float64)
    if g.ndim != 1:
        raise ValueError(f"gripper must be 1-D (T,), got shape {g.shape}")
    bad = np.flatnonzero(~np.isfinite(g))
    if bad.size:
        raise ValueError(
            f"gripper signal of arm {arm} is not finite at step {int(bad[0])} "
            f"(value {g[bad[0]]}); {bad.size} non-finite value(s) in total"
        )
    events: list[GripperEvent] = []
    if g.size == 0:
        return events
    closed = bool(g[0] >= 0.5)
    for t in range(1, g.size):
        v = g[t]
        if not closed and v >= close_threshold:
            closed = True
            events.append(GripperEvent(t, arm, "close"))
        elif closed and v <= open_threshold:
            closed = False
            events.append(GripperEvent(t, arm, "open"))
    return events


def keyframes(
    gripper: np.ndarray,
    close_threshold: float = 0.6,
    open_threshold: float = 0.4,
    include_last: bool = True,
) -> Keyframes:
    """Keyframes of an episode from its gripper signal (T, arms) or (T,) (one arm).

    See the module docstring for the exact rule. Non-finite values raise ``ValueError``.
    """
    g = np.asarray(gripper, dtype=np.float64)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2:
        raise ValueError(f"gripper must be (T, arms) or (T,), got shape {g.shape}")
    T, arms = g.shape
    events: list[GripperEvent] = []
    for a in range(arms):
        events.extend(gripper_events(g[:, a], close_threshold, open_threshold, arm=a))
    events.sort(key=lambda e: (e.step, e.arm))
    steps = {e.step for e in events}
    if include_last and T > 0:
        steps.add(T - 1)
    return Keyframes(
        steps=np.array(sorted(steps), dtype=np.int64), events=events, num_steps=int(T)
    )


def keyframe_mask(T: int, keyframes: Keyframes | np.ndarray | Sequence[int]) -> np.ndarray:
    """Boolean (T,) mask, True at keyframe steps. Steps outside [0, T) raise ``ValueError``."""
    steps = keyframes.steps if isinstance(keyframes, Keyframes) else keyframes
    s = np.asarray(steps, dtype=np.int64).reshape(-1)
    if T < 0:
        raise ValueError(f"T must be >= 0, got {T}")
    if s.size and (s.min() < 0 or s.max() >= T):
        raise ValueError(f"keyframe steps must lie in [0, {T}), got min {s.min()} max {s.max()}")
    mask = np.zeros(int(T), dtype=bool)
    mask[s] = True
    return mask
