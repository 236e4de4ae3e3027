"""`appf plan CONFIG`: what a job would do (sources, episodes, shards, frames, CPU/GPU hours)
without running it or writing anything."""

from __future__ import annotations

from dataclasses import dataclass

from appf.launch.frame_costs import FrameCost, depth_cost, job_costs
from appf.pipelines.config import JobConfig
from appf.pipelines.job import resolve_backends
from appf.pipelines.shard_plan import update_plan, read_plan
from appf.pipelines.sinks.commits import read_commits
from appf.pipelines.sources import make_source
from appf.storage import Location


@dataclass
class JobPlan:
    source: str
    depth_backend: str
    mask_backend: str
    episodes_found: int
    planned_episodes: int  # the output's plan after this run (earlier runs' episodes included)
    new_episodes: int
    shards: int
    committed_shards: int
    episodes_to_run: int
    shards_to_run: int
    sampled_episodes: int
    frames_per_episode: float  # mean over the sample
    cameras_per_frame: float  # cameras whose depth is annotated, mean over the sample
    pixels_per_camera_frame: float  # mean over the sample

    @property
    def frames_to_run(self) -> int:
        return round(self.episodes_to_run * self.frames_per_episode)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _sample_sizes(source, refs, sample: int, cameras: list[str] | None) -> tuple[float, ...]:
    """(frames per episode, cameras per frame, pixels per camera frame), means over the first
    `sample` episodes."""
    steps, cams, pixels = [], [], []
    for ref in refs[:sample]:
        ep = source.read(ref)
        used = [c for n, c in ep.cameras.items() if cameras is None or n in cameras]
        steps.append(len(ep.steps))
        cams.append(len(used) or 1)
        pixels += [c.height * c.width for c in used]
    return _mean(steps), _mean(cams), _mean(pixels)


def plan_job(cfg: JobConfig, sample: int = 2) -> JobPlan:
    """Enumerate the input and apply the output's shard plan (if any) without writing."""
    source = make_source(cfg.source, cfg.source_options)
    depth, masks = resolve_backends(cfg, source.info)
    out = Location(cfg.out)
    committed = set(read_commits(out))
    update = update_plan(read_plan(out), source.list_refs(), cfg.episodes_per_shard,
                         committed, out.url)
    todo = [r for r in update.refs if cfg.shard_of(r.index) not in committed]
    frames, cams, pixels = _sample_sizes(source, todo or update.refs, sample, cfg.cameras)
    return JobPlan(
        source=cfg.source, depth_backend=depth, mask_backend=masks,
        episodes_found=len(update.refs), planned_episodes=len(update.plan.index_of),
        new_episodes=len(update.added), shards=len(update.plan.shards()),
        committed_shards=len(committed), episodes_to_run=len(todo),
        shards_to_run=len({cfg.shard_of(r.index) for r in todo}),
        sampled_episodes=min(sample, len(todo or update.refs)),
        frames_per_episode=frames, cameras_per_frame=cams, pixels_per_camera_frame=pixels)


def _hours(frames: float, cost: FrameCost, pixels: float) -> float:
    return frames * cost.seconds_at(pixels) / 3600


def plan_text(cfg: JobConfig, plan: JobPlan) -> str:
    lines = [
        f"appf plan: source {plan.source} {cfg.source_options} -> {cfg.out}",
        f"  episodes found: {plan.episodes_found} ({plan.new_episodes} not yet planned in "
        f"{cfg.out}); planned in the output after this run: {plan.planned_episodes}",
        f"  shards: {plan.shards} of up to {cfg.episodes_per_shard} episodes, "
        f"{plan.committed_shards} committed; to run: {plan.shards_to_run} shard(s), "
        f"{plan.episodes_to_run} episode(s)",
        f"  frames to run (estimated from {plan.sampled_episodes} sampled episode(s), "
        f"{plan.frames_per_episode:.0f} frames x {plan.cameras_per_frame:.1f} camera(s) each): "
        f"{plan.frames_to_run}",
        f"  depth {plan.depth_backend}, masks {plan.mask_backend}, runner {cfg.runner} x "
        f"{cfg.workers} worker(s)",
    ]
    camera_frames = plan.frames_to_run * plan.cameras_per_frame
    d = depth_cost(plan.depth_backend)
    costs = [(f"depth ({plan.depth_backend})", camera_frames, d)] if d else []
    costs += [(name, camera_frames, c) for name, c in job_costs().items()]
    px = plan.pixels_per_camera_frame
    cpu = sum(_hours(n, c, px) for _, n, c in costs if c.device == "cpu")
    gpu = sum(_hours(n, c, px) for _, n, c in costs if c.device == "gpu")
    for name, n, c in costs:
        lines.append(f"    {name}: {c.seconds_at(px) * 1e3:.1f} ms/frame on {c.device} at "
                     f"{px:.0f} px ({c.seconds_per_frame * 1e3:.1f} measured at {c.pixels} px) "
                     f"-> {_hours(n, c, px):.3f} h  [{c.measured}]")
    if d is None:
        lines.append(f"    depth ({plan.depth_backend}): no measured per-frame cost; not counted")
    lines.append(f"  estimated: {cpu:.3f} CPU hours, {gpu:.3f} GPU hours (costs per frame "
                 "measured by bench/, see appf/launch/frame_costs.py)")
    return "\n".join(lines)
