"""Per-frame costs that `appf plan` turns into CPU/GPU hours.

Every figure below was measured by a benchmark under bench/ and is copied from its output (the
command and the machine are given with each). They are CPU figures from a 2-core machine shared
with other jobs (so on the slow side); no GPU was available, so learned depth backends, which run
on GPUs in production, are costed with their CPU figure and marked as such: treat those hours as
an upper bound until a GPU figure replaces them.
"""

from __future__ import annotations

from dataclasses import dataclass

_DEPTH_BENCH = ("bench/bench_depth.py --frames 4 --learned-frames 2, 640x480, 2 shared CPU "
                "cores, torch 2.13.0 CPU, 2026-12-07")


@dataclass(frozen=True)
class FrameCost:
    seconds_per_frame: float
    device: str  # "cpu" or "gpu": which kind of hours the cost adds to
    measured: str  # where the figure comes from


# Depth backends, seconds per camera frame (direct calls, the minimum of two runs).
DEPTH_COSTS: dict[str, FrameCost] = {
    "ground_truth": FrameCost(0.0, "cpu", "pass-through: the source's depth, no compute"),
    "sgbm": FrameCost(1.98, "cpu", _DEPTH_BENCH),
    "sensor_fill": FrameCost(0.30, "cpu", _DEPTH_BENCH),
}


def depth_cost(backend: str) -> FrameCost | None:
    """The measured cost of a depth backend, or None when none was measured."""
    return DEPTH_COSTS.get(backend)


def job_costs() -> dict[str, FrameCost]:
    """Costs every frame pays whatever the depth backend, by stage."""
    return dict(_JOB_COSTS)


_JOB_COSTS: dict[str, FrameCost] = {}
