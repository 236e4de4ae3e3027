"""Per-frame costs that `appf plan` turns into CPU/GPU hours.

Every figure below was measured by a benchmark under bench/ and is copied from its output (the
command and the machine are given with each). They are CPU figures from a 2-core machine shared
with other jobs (so on the slow side); no GPU was available, so learned depth backends, which run
on GPUs in production, are costed with their CPU figure and counted as GPU hours: treat those
hours as a (loose) upper bound until a GPU figure replaces them. Backends without a figure
(foundation_stereo, promptda ViT-L, moge2_vits) are listed by `appf plan` as not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

_DEPTH_BENCH = ("bench/bench_depth.py --frames 4 --learned-frames 2, 640x480, 2 shared CPU "
                "cores, torch 2.13.0 CPU, 2026-12-07")


@dataclass(frozen=True)
class FrameCost:
    seconds_per_frame: float  # at `pixels` per camera frame
    device: str  # "cpu" or "gpu": which kind of hours the cost adds to
    measured: str  # where the figure comes from
    pixels: int = 640 * 480

    def seconds_at(self, pixels: float) -> float:
        """The cost at another resolution, scaled by the pixel count (every stage here is
        roughly linear in pixels)."""
        return self.seconds_per_frame * pixels / self.pixels


# Depth backends, seconds per camera frame (direct calls, the minimum of two runs).
DEPTH_COSTS: dict[str, FrameCost] = {
    "ground_truth": FrameCost(0.0, "cpu", "pass-through: the source's depth, no compute"),
    "sgbm": FrameCost(1.98, "cpu", _DEPTH_BENCH),
    "sensor_fill": FrameCost(0.30, "cpu", _DEPTH_BENCH),
    # learned: GPU work in production, costed here with the CPU figure (upper bound)
    "promptda_vits": FrameCost(9.89, "gpu", "CPU figure, no GPU measured: " + _DEPTH_BENCH
                               + " (ViT-S, random weights)"),
    "moge2": FrameCost(795.55, "gpu", "CPU figure, no GPU measured: bench/bench_depth.py "
                       "--moge-frames 1, 640x480, ViT-L, random weights, same machine"),
}


def depth_cost(backend: str) -> FrameCost | None:
    """The measured cost of a depth backend, or None when none was measured."""
    return DEPTH_COSTS.get(backend)


def job_costs() -> dict[str, FrameCost]:
    """Costs every frame pays whatever the depth backend, by stage."""
    return dict(_JOB_COSTS)


_JOB_COSTS: dict[str, FrameCost] = {
    # per camera frame: filters, crop, image-space pre-reduction, FPS to 1024 points
    "point clouds": FrameCost(0.00323, "cpu", "bench/bench_pointcloud.py --frames 10, 640x480, "
                              "single thread, load 0.1, 2026-12-07, fused numba filter pass "
                              "(5.60 ms in the same run for the code before it, c74e8a9)"),
}
# Not counted: decoding the source (per dataset, see bench/bench_sources.py), SFT records and
# the shard writes (small next to the stages above).
